"""Hostile dataset rows: missing, extra, null, non-string and enormous columns, type clashes
between rows, blank lines, lines that are not records, invalid UTF-8.

Each drawn JSONL file goes the way a run takes it: the run plan (:func:`mimicry.run.plan.plan_run`:
the dataset chosen, its row store built by :func:`mimicry.dataset.open_rows`, the ids read, the
samples selected, the prompt sizes read), then per row the run's per-sample path
(:class:`mimicry.run.EvalRun`: ``record_problem``, the prompt template, the reply through the
response cache, the sample result), each built-in behavior's verdict as its eval test gives it,
the report (:meth:`EvalRun.finish`), the terminal table and the JSON report file. Only the model
is replaced, by a client that answers without a server. The only acceptable outcomes are a usage
error with a one-line message or a recorded sample (verdicts, or ``status: "error"`` with the
reason).

pyarrow's JSON reader, under ``datasets``, can kill the process on hostile files (SIGSEGV); the
run reads files in a child process for that reason, and this path runs in a worker process on
top: a crash is a failing example that hypothesis shrinks, not a dead test session. Run with
``--hypothesis-show-statistics`` to see how many inputs were tried and how they ended
(``hypothesis.event`` labels); the test itself prints nothing.
"""

from __future__ import annotations

import itertools
import json
import logging
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, assume, event, example, given, settings
from hypothesis import strategies as st

from mimicry.core.report import Outcome
from mimicry.testing import FaultyOllama
from tests.conftest import REPO_ROOT
from tests.core.strategies import COLUMNS
from tests.faults.conftest import assert_no_traceback
from tests.plugin.conftest import Suite

#: The budget: inputs per run of the test (each is one JSONL file of 1 to 4 lines).
MAX_EXAMPLES = 100
QUICK_EXAMPLES = 8
#: Rows of a loaded file that go through the per-sample path.
ROWS_JUDGED = 3

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


class _Model:
    """The model, without a server (a :class:`mimicry.run.replies.ChatClient`): it answers each
    prompt with a reply of the drawn kind, with Ollama's accounting (a prompt of 10 tokens, never
    cut: every row is judged, the enormous ones too)."""

    def __init__(self, kind: str, text: str) -> None:
        self.kind = kind
        self.text = text

    def chat(self, model: str, messages: Any, options: Any) -> dict[str, Any]:
        prompt = messages[-1]["content"]  # the record's repr (the default template)
        content = {
            "imitation": prompt,
            "cut-imitation": prompt[: max(1, len(prompt) // 2)],
            "empty": "",
            "text": self.text,
        }[self.kind]
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


def _verdict(run: Any, index: int, behavior: str) -> tuple[Outcome, str, str | None]:
    """What the behavior's eval test reports on the sample: its outcome, message and detector
    (the ``reply`` fixture, then ``expect(detector(sample, reply))``, as the plugin reads them)."""
    from mimicry.core.behaviors import BUILTIN_DETECTORS
    from mimicry.run import SampleFailed

    try:
        reply = run.reply(index)
    except SampleFailed as exc:
        return "error", str(exc), None
    if reply.input_truncated:
        return "not judged", "the server cut the input to fit num_ctx", None
    verdict = BUILTIN_DETECTORS[behavior](run.row(index), reply)
    outcome: Outcome = {True: "shown", False: "not shown", None: "not judged"}[verdict.shown]
    return outcome, verdict.explanation, verdict.behavior


def check_file(path: str, folder: str, reply_kind: str, reply_text: str) -> list[str]:
    """Take one file the way a run does; return what happened (labels); raise on anything else.

    Runs in the worker process (module-level, so that it can be pickled). ``folder`` holds the
    run's caches (row store, ``datasets``' cache, replies) and its report.
    """
    from mimicry.core.behaviors import BUILTIN_BEHAVIORS
    from mimicry.core.report import render_table
    from mimicry.dataset import DatasetError, select_indices
    from mimicry.exitcodes import ExitStatus
    from mimicry.run import EvalRun
    from mimicry.run.plan import PlanError, plan_run
    from mimicry.settings import resolve

    class Run(EvalRun):
        def clients(self) -> list[Any]:
            return [_Model(reply_kind, reply_text)]

    work = Path(folder)
    # each drawn file is a new dataset: keep its row store and datasets' cache in the folder
    env = {
        **os.environ,
        "XDG_CACHE_HOME": str(work / "xdg"),
        "HF_DATASETS_CACHE": str(work / "hf-cache"),
    }
    report_path = work / "report.json"
    # a budget that lets every row through (a run stops at the first error by default)
    settings = resolve({"dataset": path, "report_json": str(report_path), "max_errors": "100%"}, {})
    try:
        planned = plan_run(
            settings, cache_dir=work / "replies", workers=1, environ=env, dry_run=True
        )
        ids = [str(value) for value in planned.rows.ids]
        select_indices(ids, samples=None, samples_given=False, seed=0, sample_ids=(ids[0],))
    except PlanError as exc:  # what the plugin turns into a usage error (exit status 4)
        usage = exc.exit_status is ExitStatus.USAGE_ERROR
        message = str(exc)
    except DatasetError as exc:
        usage, message = True, str(exc)
    else:
        message = None
    if message is not None:
        assert usage, message
        assert message.startswith(("--dataset", "--sample-ids")), message
        assert "\n" not in message, message
        return ["file: DatasetError"]

    labels = ["file: loaded"]
    plan = planned.plan
    run = Run(settings, plan, planned.rows, controller=True)
    try:
        for index in plan.indices[:ROWS_JUDGED]:
            sample = run.sample_result(index)  # as the sample's first test report carries it
            labels.append(f"sample: {sample['status']}")
            assert sample["status"] in ("ok", "error")
            if sample["status"] == "error":
                assert sample["error"].startswith("dataset row: "), sample["error"]
            for behavior in BUILTIN_BEHAVIORS:
                outcome, explanation, detector = _verdict(run, index, behavior)
                assert (outcome == "error") == (sample["status"] == "error"), explanation
                run.record(
                    index=index,
                    repeat=0,
                    behavior=behavior,
                    outcome=outcome,
                    message=explanation,
                    detector=detector,
                    sample=sample if behavior == BUILTIN_BEHAVIORS[0] else None,
                )
        finished = run.finish(interrupted=False, other_failures=0)
    finally:
        run.close()
        planned.rows.close()
    assert finished.problems == [], finished.problems
    assert finished.status is ExitStatus.OK, finished.report["run"]
    render_table(finished.report)
    # the report file as the run wrote it (ensure_ascii: lone surrogates become \\ud800 escapes)
    report = json.loads(report_path.read_text(encoding="ascii"))
    samples = report["samples"]
    assert len(samples) == len(plan.indices[:ROWS_JUDGED])
    for sample in samples:
        assert list(sample["behaviors"]) == list(BUILTIN_BEHAVIORS)
        assert all(v in (True, False, None) for v in sample["behaviors"].values())
        # a test error only where the sample had no reply: no detector raised
        errors = set() if sample["status"] == "ok" else set(BUILTIN_BEHAVIORS)
        assert set(sample["test_errors"]) == errors, sample["test_errors"]
    assert list(report["behaviors"]) == list(BUILTIN_BEHAVIORS)
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
            return future.result()
        except BrokenProcessPool:
            self.close()
            raise AssertionError(
                "the process died reading this file (a native crash in pyarrow's JSON reader?)"
            ) from None

    def close(self) -> None:
        """Stop the worker and wait for it (a dead one is reaped at once)."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def workers() -> Iterator[_Workers]:
    """A worker process for the drawn files (a crash there fails the example, not the session)."""
    pool = _Workers()
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for the drawn files and the caches of their runs (one subfolder each)."""
    return tmp_path_factory.mktemp("hostile-rows")


_file_numbers = itertools.count()


def _first_line(lines: list[bytes]) -> bytes | None:
    return next((line.strip() for line in lines if line.strip()), None)


def _check_hostile_rows(
    workers: _Workers, workdir: Path, lines: list[bytes], reply_kind: str, reply_text: str
) -> None:
    # the two known crashes, pinned by test_a_file_pyarrow_crashes_on_is_a_dataset_error, are
    # kept out: each costs a crashed child process, and the fuzzing should look for others
    assume(_first_line(lines) != b"null")
    assume(not (b"" in lines and any(len(line) > 300_000 for line in lines)))
    # a fresh folder each time: datasets fingerprints files by path and mtime, not content
    folder = workdir / f"run-{next(_file_numbers)}"
    folder.mkdir()
    path = folder / "rows.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    try:
        for label in workers.run(str(path), str(folder), reply_kind, reply_text):
            event(label)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _fuzz(max_examples: int) -> Callable[..., None]:
    """The hostile-rows fuzz test with a budget of ``max_examples`` files."""
    test = given(lines=LINES, reply_kind=REPLY_KINDS, reply_text=TEXT)(_check_hostile_rows)
    # a reply with a lone surrogate (a server can send one, escaped): it once broke the cache
    test = example(lines=[json.dumps(BASE_ROW).encode()], reply_kind="text", reply_text="a\ud800b")(
        test
    )
    # two rows with one id: one row's verdicts once landed on the other's reply in the report
    test = example(
        lines=[json.dumps(BASE_ROW).encode()] * 2, reply_kind="imitation", reply_text=""
    )(test)
    return settings(
        max_examples=max_examples,
        deadline=None,
        # no explain phase: it reruns a failing example hundreds of times
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )(test)


#: A quick taste in every run of the tests (each file costs a run of the suite, about 1.5 s) ...
test_hostile_rows_get_a_clear_error_or_a_recorded_sample = _fuzz(QUICK_EXAMPLES)
#: ... and the full budget in the slow group (CI).
test_hostile_rows_full_budget = pytest.mark.slow(_fuzz(MAX_EXAMPLES))


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
import sys
from mimicry.dataset import DatasetError, DatasetSpec, choose_dataset, load_rows, open_rows
try:
    if sys.argv[1] == "open_rows":  # a run's path: the row store every process reads
        ds = open_rows(choose_dataset(sys.argv[2]))
    else:
        ds = load_rows(DatasetSpec(sys.argv[2]))
    rows = [ds[i] for i in range(len(ds))]
except DatasetError as exc:
    print("DatasetError:", exc)
else:
    print("loaded", len(rows))
"""


@pytest.mark.parametrize("reader", ["open_rows", "load_rows"])
@pytest.mark.parametrize("name", list(CRASHING_FILES))
def test_a_file_pyarrow_crashes_on_is_a_dataset_error(
    tmp_path: Path, name: str, reader: str
) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(CRASHING_FILES[name])
    caches = {"HF_DATASETS_CACHE": str(tmp_path / "hf-cache"), "XDG_CACHE_HOME": str(tmp_path)}
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE, reader, str(path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, **caches},
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


def run_on_rows(suite: Suite, fault_server: FaultyOllama, rows: Path) -> pytest.RunResult:
    """A run of the suite on the rows in ``rows``, against ``fault_server``."""
    return suite.run(
        f"--ollama-host={fault_server.url}",
        f"--model={fault_server.model.name}",
        f"--dataset={rows}",
    )


@pytest.mark.parametrize("name", list(UNREADABLE_ROWS))
def test_rows_that_cannot_be_read_are_a_usage_error_not_a_traceback(
    suite: Suite, fault_server: FaultyOllama, name: str
) -> None:
    rows = suite.pytester.path / "rows.jsonl"
    rows.write_bytes(UNREADABLE_ROWS[name])
    result = run_on_rows(suite, fault_server, rows)

    assert_no_traceback(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.re_match_lines([rf".*--dataset '{re.escape(str(rows))}': .*"])
    assert fault_server.count() == 0


def test_rows_with_the_same_id_are_a_usage_error(suite: Suite, fault_server: FaultyOllama) -> None:
    rows = suite.pytester.path / "rows.jsonl"
    other = dict(BASE_ROW, prompt='["Another question"]')
    rows.write_text(f"{json.dumps(BASE_ROW)}\n{json.dumps(other)}\n")
    result = run_on_rows(suite, fault_server, rows)

    assert_no_traceback(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.re_match_lines(
        [rf".*--dataset '{re.escape(str(rows))}': rows 0 and 1 have the same id '30192'.*"]
    )
    assert fault_server.count() == 0
