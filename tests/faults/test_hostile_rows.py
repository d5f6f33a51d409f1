"""Hostile dataset rows: missing, extra, null, non-string and enormous columns, type clashes
between rows, blank lines, lines that are not records, invalid UTF-8.

Each drawn JSONL file goes the way a run takes it: :func:`mimicry.dataset.load_rows`, the run
plan's reading of ids and prompt sizes, then per row the plugin's per-sample path
(``record_problem``, the prompt template, ``judged_sample`` or ``error_sample``), the report and
its JSON text. The only acceptable outcomes are a :class:`DatasetError` with a one-line message
or a recorded sample (a verdict, or ``status: "error"`` with the reason).

pyarrow's JSON reader, under ``datasets``, can kill the process on hostile files (SIGSEGV), so the
path runs in a worker process: a crash is a failing example that hypothesis shrinks, not a dead
test session. Run with ``--hypothesis-show-statistics`` to see how many inputs were tried and how
they ended (``hypothesis.event`` labels); the test itself prints nothing.
"""

from __future__ import annotations

import itertools
import json
import logging
import multiprocessing
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, assume, event, given, settings
from hypothesis import strategies as st

from mimicry.testing import FaultyOllama
from tests.conftest import REPO_ROOT
from tests.core.strategies import COLUMNS
from tests.faults.conftest import assert_no_traceback
from tests.plugin.conftest import Suite

#: The fixed budget: inputs per run of the test (each is one JSONL file of 1 to 4 lines).
MAX_EXAMPLES = 100
#: Rows of a loaded file that go through the per-sample path.
ROWS_JUDGED = 3
NUM_CTX = 2048
#: A worker that takes longer than this on one file is hung (a 4 MB file takes well under 1 s).
WORKER_TIMEOUT_S = 60

BASE_ROW: dict[str, Any] = {
    "id": 30192,
    "model_a": "gpt-4-1106-preview",
    "model_b": "gpt-4-0613",
    "prompt": '["Is it morally right to try to have a certain percentage of females?"]',
    "response_a": '["The question of whether it is morally right ..."]',
    "response_b": '["As an AI, I don\'t have personal beliefs ..."]',
    "winner_model_a": 1,
    "winner_model_b": 0,
    "winner_tie": 0,
}

# text from every code point, lone surrogates and NULs included
TEXT = st.text(
    alphabet=st.one_of(st.characters(), st.characters(categories=["Cs"]), st.just("\x00")),
    max_size=30,
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),  # beyond int64 too
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)
# enormous columns, up to the 1 MB a reply may have
ENORMOUS = st.sampled_from([20_000, 400_000, 1_000_000]).flatmap(
    lambda n: st.sampled_from(
        [
            "x" * n,
            json.dumps(["word " * (n // 5)]),
            "{" * (n // 10),  # deep nesting, for anything that parses the prompt
        ]
    )
)


@st.composite
def hostile_rows(draw: st.DrawFn) -> dict[str, Any]:
    """A row shaped like the dataset's, each column kept, dropped, nulled, retyped or blown up,
    plus extra columns."""
    row = dict(BASE_ROW, id=draw(st.integers(min_value=0, max_value=10**7)))
    for column in COLUMNS:
        fate = draw(st.sampled_from(["keep", "keep", "keep", "drop", "null", "other", "huge"]))
        if fate == "drop":
            del row[column]
        elif fate == "null":
            row[column] = None
        elif fate == "other":
            row[column] = draw(JSON_VALUES)
        elif fate == "huge":
            row[column] = draw(ENORMOUS)
    extra = draw(st.dictionaries(TEXT, JSON_VALUES, max_size=2))
    row.update({k: v for k, v in extra.items() if k not in row})
    return row


ROW_LINES = hostile_rows().map(lambda r: json.dumps(r).encode())
NOT_RECORDS = st.sampled_from(
    [
        b"",
        b"not json",
        b"[1, 2, 3]",
        b'"just a string"',
        b"null",
        b'{"id": 1, "prompt": "cut off',
        b'{"id": 1, "prompt": "\xff\xfe invalid utf-8"}',
        b'{"id": 2, "id": 3, "prompt": "duplicate key"}',
    ]
)
LINES = st.lists(st.one_of(ROW_LINES, ROW_LINES, NOT_RECORDS), min_size=1, max_size=4)
REPLY_KINDS = st.sampled_from(["imitation", "cut-imitation", "empty", "text"])


# -- the path a run takes, in a worker process ---------------------------------------------------


def _init_worker() -> None:
    # datasets logs "Failed to load JSON ..." at error level; the test prints nothing
    logging.getLogger("datasets").disabled = True
    logging.getLogger("datasets.packaged_modules.json.json").disabled = True


def _reply(kind: str, record: dict[str, Any], text: str) -> dict[str, Any]:
    content = {
        "imitation": f"{record}",
        "cut-imitation": f"{record}"[: max(1, len(f"{record}") // 2)],
        "empty": "",
        "text": text,
    }[kind]
    return {
        "content": content,
        "done_reason": "stop",
        "prompt_eval_count": 10,
        "eval_count": 10,
        "total_duration": 1,
        "load_duration": 1,
        "prompt_eval_duration": 1,
        "eval_duration": 1,
    }


def _sample(index: int, record: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
    """What the plugin's ``judge_sample`` does with a row and its reply."""
    from mimicry.core.prompt import render_messages
    from mimicry.core.samples import error_sample, judged_sample, record_problem

    sample_id = str(record.get("id", index))
    problem = record_problem(record)
    if problem is not None:
        return error_sample(
            sample_id=sample_id, index=index, reason=f"dataset row: {problem}", prompt_chars=None
        )
    messages = render_messages(record)
    return judged_sample(
        sample_id=sample_id,
        index=index,
        record=record,
        reply=reply,
        num_ctx=NUM_CTX,
        cached=False,
        prompt_chars=sum(len(m["content"]) for m in messages),
    )


def check_file(path: str, hf_cache: str, reply_kind: str, reply_text: str) -> list[str]:
    """Take one file the way a run does; return what happened (labels); raise on anything else.

    Runs in the worker process (module-level, so that it can be pickled).
    """
    import datasets

    from mimicry.core.behaviors import BEHAVIORS
    from mimicry.core.report import RunResults, build_report, render_table
    from mimicry.dataset import (
        DatasetError,
        DatasetSpec,
        estimate_prompt_chars,
        load_rows,
        select_indices,
    )

    # each drawn file is a new dataset to `datasets`: keep its cache out of the user's home
    datasets.config.HF_DATASETS_CACHE = Path(hf_cache)
    try:
        ds = load_rows(DatasetSpec(path))
        ids = list(ds["id"])
        indices = select_indices(ids, samples=None, samples_given=False, seed=0, sample_ids=None)
        estimate_prompt_chars(ds, indices)
        select_indices(ids, samples=None, samples_given=False, seed=0, sample_ids=(str(ids[0]),))
    except DatasetError as exc:
        message = str(exc)
        assert message.startswith(("--dataset", "--sample-ids")), message
        assert "\n" not in message, message
        return ["file: DatasetError"]

    labels = ["file: loaded"]
    results = RunResults()
    for index in indices[:ROWS_JUDGED]:
        record = ds[index]
        sample = _sample(index, record, _reply(reply_kind, record, reply_text))
        labels.append(f"sample: {sample['status']}")
        assert sample["status"] in ("ok", "error")
        assert set(sample["behaviors"]) == set(BEHAVIORS)
        assert all(v in (True, False, None) for v in sample["behaviors"].values())
        if sample["status"] == "error":
            assert sample["error"].startswith("dataset row: "), sample["error"]
        for behavior in BEHAVIORS:
            results.add(
                {"behavior": behavior, "sample_id": sample["id"], "repeat": 0, "sample": sample}
            )
    report = build_report({"model": "m"}, results, ds.column_names)
    render_table(report)
    # what the plugin writes (ensure_ascii: lone surrogates become \\ud800 escapes)
    json.loads(json.dumps(report, ensure_ascii=True))
    return labels


# -- the test ------------------------------------------------------------------------------------


class _Workers:
    """One worker process, replaced when a file kills it."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    def run(self, *args: str) -> list[str]:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
            )
        future = self._pool.submit(check_file, *args)
        try:
            return future.result(timeout=WORKER_TIMEOUT_S)
        except BrokenProcessPool:
            self.close()
            raise AssertionError(
                "the process died reading this file (a native crash in pyarrow's JSON reader?)"
            ) from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


@pytest.fixture(scope="module")
def workers() -> Iterator[_Workers]:
    """A worker process for the drawn files (a crash there fails the example, not the session)."""
    pool = _Workers()
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for the drawn files and for ``datasets``' cache of them."""
    return tmp_path_factory.mktemp("hostile-rows")


_file_numbers = itertools.count()


def _first_line(lines: list[bytes]) -> bytes | None:
    return next((line.strip() for line in lines if line.strip()), None)


@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    # no explain phase: it reruns a failing example hundreds of times
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(lines=LINES, reply_kind=REPLY_KINDS, reply_text=TEXT)
def test_hostile_rows_get_a_clear_error_or_a_recorded_sample(
    workers: _Workers, workdir: Path, lines: list[bytes], reply_kind: str, reply_text: str
) -> None:
    # the two known crashes, pinned by test_a_file_pyarrow_crashes_on_is_a_dataset_error, are
    # kept out: each crash costs a new worker process, and the fuzzing should look for others
    assume(_first_line(lines) != b"null")
    assume(not (b"" in lines and any(len(line) > 300_000 for line in lines)))
    # a fresh name each time: datasets fingerprints files by path and mtime, not content
    path = workdir / f"rows-{next(_file_numbers)}.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    for label in workers.run(str(path), str(workdir / "hf-cache"), reply_kind, reply_text):
        event(label)
    path.unlink()


# -- files known to kill the reader --------------------------------------------------------------

BIG_ROW = b'{"id": 2, "prompt": "' + b"y" * 400_000 + b'", "w": {"k": 1}}'
CRASHING_FILES = {
    # apache/arrow#47409: a top-level null dereferences a null builder
    "leading-null": b'null\n{"id": 1, "prompt": "a"}\n',
    # a blank line stops datasets' mixed-type pre-scan, "w" changes type, and the big row
    # straddles pyarrow's blocks: the retry with a larger block size crashes
    "type-change-after-blank-line": b'{"id": 1, "prompt": "a", "w": "s"}\n\n' + BIG_ROW + b"\n",
}
_PROBE = """
import sys, datasets
datasets.config.HF_DATASETS_CACHE = sys.argv[2]
from mimicry.dataset import DatasetError, DatasetSpec, load_rows
try:
    ds = load_rows(DatasetSpec(sys.argv[1]))
    rows = [ds[i] for i in range(len(ds))]
except DatasetError as exc:
    print("DatasetError:", exc)
else:
    print("loaded", len(rows))
"""


@pytest.mark.parametrize("name", list(CRASHING_FILES))
def test_a_file_pyarrow_crashes_on_is_a_dataset_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(CRASHING_FILES[name])
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE, str(path), str(tmp_path / "hf-cache")],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )

    assert probe.returncode == 0, (
        f"loading the file killed the process (status {probe.returncode}): {probe.stderr[-500:]}"
    )
    assert probe.stdout.startswith(("DatasetError: --dataset ", "loaded ")), probe.stdout


# -- rows that load but cannot be read -----------------------------------------------------------

UNREADABLE_ROWS = {
    # pyarrow stores the bytes as they are; reading the row raises UnicodeDecodeError
    "invalid-utf8": b'{"id": 1, "prompt": "\xff\xfe"}\n',
    # a NUL in a nested key: datasets' row decoding raises KeyError
    "nul-in-nested-key": b'{"id": 1, "prompt": "a", "x": {"": {}, "0\\u0000": null}}\n',
    # "" and "\\u0000" become one field name: pyarrow raises ValueError
    "clashing-nested-keys": b'{"id": 1, "prompt": "a", "x": {"": null, "\\u0000": null}}\n',
}


@pytest.mark.parametrize("name", list(UNREADABLE_ROWS))
def test_rows_that_cannot_be_read_are_a_usage_error_not_a_traceback(
    suite: Suite, fault_server: FaultyOllama, name: str
) -> None:
    rows = suite.pytester.path / "rows.jsonl"
    rows.write_bytes(UNREADABLE_ROWS[name])
    result = suite.run(
        f"--ollama-host={fault_server.url}",
        f"--model={fault_server.model.name}",
        f"--dataset={rows}",
    )

    assert_no_traceback(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.re_match_lines([rf".*--dataset '{re.escape(str(rows))}': .*"])
    assert fault_server.count() == 0
