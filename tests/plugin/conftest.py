"""Running the real eval suite (this repo's evals/) under pytester, as users run it, against
the project's fake Ollama server (real HTTP, Ollama's wire format)."""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import scipy.stats  # noqa: F401 - see below

from mimicry.testing import (
    ChatRequest,
    FakeModel,
    FakeOllama,
    ReplyFn,
    imitating_reply,
    replies_by_id,
)
from tests.conftest import REAL_ROWS_JSONL, REPO_ROOT

# pytester's in-process runs unload the modules they imported, and numpy's C modules (which
# scipy.stats, used for McNemar's test, brings) cannot be imported twice in one process: it is
# imported here, once, before any in-process run.

# A few short real rows keep these tests fast; the ids are those of the shared sample.
SHORT_SAMPLE_IDS = "887722,1594211,1404102,933555,587904"
N_SAMPLES = len(SHORT_SAMPLE_IDS.split(","))
#: The built-in behaviors that run without a judge model.
BUILT_IN = ("copies_braces", "preserves_keys", "rewrites_prompt", "truncates", "changes_id")


@functools.cache
def _imitations() -> dict[int, str]:
    replies = {}
    with REAL_ROWS_JSONL.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                # the prompt the suite sends for the row (--prompt-template repr)
                request = ChatRequest("", [{"role": "user", "content": repr(row)}], {})
                replies[int(row["id"])] = imitating_reply(request)
    return replies


def pinned_imitations() -> ReplyFn:
    """:func:`imitating_reply` for the shared rows, computed before any run: the fake then
    answers by the id the prompt starts with, without parsing the record.

    (Where the fake does read a record, it reads it with tokenize, never ast, in its threads:
    see :func:`mimicry.testing.fake_ollama.read_literal` and python/cpython#106905, fixed in
    3.11.8, which this machine's 3.11.7 still has.)
    """
    return replies_by_id(_imitations(), default=imitating_reply)


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    """A fake Ollama server on a free loopback port, answering with imitating replies (pinned
    by sample id, see :func:`pinned_imitations`)."""
    with FakeOllama(FakeModel(reply=pinned_imitations())) as server:
        yield server


class Suite:
    """The repo's eval suite laid out in a pytester directory, run like a user would."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        shutil.copytree(REPO_ROOT / "evals", pytester.path / "evals")
        pytester.makeini("[pytest]\n")

    def add_behavior(self, name: str, source: str) -> None:
        """A user's own behavior test in the eval suite's directory."""
        (self.pytester.path / "evals" / f"test_{name}.py").write_text(source)

    def run(self, *args: str, xdist: bool = False, subprocess: bool = False) -> pytest.RunResult:
        """Run the suite: in this process (fast), or in a child process (``subprocess``: for
        what only a real process shows, such as its exit status with nothing printed before)."""
        dist = ["-n", "2"] if xdist else ["-p", "no:xdist"]
        if subprocess:
            return self.pytester.runpytest_subprocess("evals", *dist, *args, timeout=300)
        return self.pytester.runpytest("evals", *dist, *args)

    def report(self, name: str = "r.json") -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.pytester.path / name).read_text())
        return data


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Suite:
    """The eval suite in a fresh directory, with no Ollama settings from the environment."""
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    return Suite(pytester)


def dataset_args(
    fake: FakeOllama, *extra: str, ids: str = SHORT_SAMPLE_IDS, model: FakeModel | None = None
) -> list[str]:
    return [
        f"--ollama-host={fake.url}",
        f"--model={(model or fake.model).name}",
        f"--dataset={REAL_ROWS_JSONL}",
        f"--sample-ids={ids}",
        *extra,
    ]


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    """The parts of a report that must not depend on xdist, timing or the cache."""
    samples = [{k: v for k, v in s.items() if k != "cached"} for s in report["samples"]]
    return {
        "behaviors": report["behaviors"],
        "measures": report["measures"],
        "key_preservation": report["key_preservation"],
        "samples": samples,
        "records": report["records"],
        "options": report["run"]["options"],
        "sample_ids": report["run"]["dataset"]["sample_ids"],
    }
