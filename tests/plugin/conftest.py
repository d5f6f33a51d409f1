"""Running the real eval suite (evals/ and conftest.py of this repo) under pytester."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import datasets  # noqa: F401 - see below
import pytest
import scipy.stats  # noqa: F401 - see below

from tests.conftest import REAL_ROWS_JSONL, REPO_ROOT
from tests.fake_ollama import FakeOllama

# pytester's in-process runs unload the modules they imported, and some cannot be imported twice
# in one process (pyarrow extension types that datasets registers; numpy's C modules, which
# scipy.stats brings): both are imported here, once, before any in-process run.

# A few short real rows keep these tests fast; the ids are those of the shared sample.
SHORT_SAMPLE_IDS = "887722,1594211,1404102,933555,587904"


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    """A fake Ollama server on a free loopback port, answering with imitating replies."""
    with FakeOllama() as server:
        yield server


class Suite:
    """The repo's eval suite laid out in a pytester directory, run like a user would."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        shutil.copytree(REPO_ROOT / "evals", pytester.path / "evals")
        # The repo's conftest, made to find the repo's `fixtures` package from the pytester
        # directory (there, xdist workers inherit the sys.path of the process running pytester,
        # which need not hold the repo root).
        conftest = (REPO_ROOT / "conftest.py").read_text()
        (pytester.path / "conftest.py").write_text(
            f"import sys\n\nsys.path.insert(0, {str(REPO_ROOT)!r})\n{conftest}"
        )
        pytester.makeini("[pytest]\n")

    def run(self, *args: str, xdist: bool = False) -> pytest.RunResult:
        dist = ["-n", "2"] if xdist else ["-p", "no:xdist"]
        return self.pytester.runpytest("evals", *dist, "-p", "no:randomly", *args)

    def report(self, name: str = "r.json") -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.pytester.path / name).read_text())
        return data


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Suite:
    """The eval suite in a fresh directory; xdist workers find ``fixtures`` via PYTHONPATH."""
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    return Suite(pytester)


def dataset_args(fake: FakeOllama, *extra: str, ids: str = SHORT_SAMPLE_IDS) -> list[str]:
    return [
        f"--ollama-host={fake.url}",
        f"--model={fake.model}",
        f"--dataset={REAL_ROWS_JSONL}",
        f"--sample-ids={ids}",
        *extra,
    ]


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    """The parts of a report that must not depend on xdist, timing or the cache."""
    samples = [{k: v for k, v in s.items() if k not in {"cached"}} for s in report["samples"]]
    return {
        "behaviors": report["behaviors"],
        "key_preservation": report["key_preservation"],
        "samples": samples,
        "options": report["run"]["options"],
        "sample_ids": report["run"]["dataset"]["sample_ids"],
    }
