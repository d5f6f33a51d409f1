"""Faults injected into a run of the real eval suite: each ends as a measurement or one clear
message, never a traceback, and never loses a reply the model already gave.

Every test runs the suite under pytester against :class:`mimicry.testing.FaultyOllama`, scripted
request by request, with small ``--request-timeout``/``--retries`` so that faults cost little
time.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sqlite3
from pathlib import Path

import pytest

from mimicry.core.behaviors import BUILTIN_BEHAVIORS
from mimicry.exitcodes import ExitStatus
from mimicry.testing import (
    Answer,
    BadBody,
    CloseMidBody,
    Die,
    FaultyOllama,
    Hang,
    ModelMissing,
    Status,
    Trickle,
)
from tests.faults.conftest import (
    CACHE_FILE,
    MORE_SAMPLE_IDS,
    assert_no_traceback,
    by_id,
    cache_dir,
    cached_rows,
    run_args,
)
from tests.plugin.conftest import SHORT_SAMPLE_IDS, Suite

SHORT_IDS = [int(i) for i in SHORT_SAMPLE_IDS.split(",")]
N = len(SHORT_IDS)
#: What these runs measure: the built-in behaviors (the judged one needs --judge-model).
BEHAVIOR_NAMES = BUILTIN_BEHAVIORS


# -- the server dies mid-run ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "xdist"),
    [("0", False), ("0", True), ("100%", False)],
    ids=["stop-early", "stop-early-n2", "all-errors"],
)
def test_server_killed_mid_run_loses_no_reply_and_the_rerun_asks_only_the_rest(
    suite: Suite, fault_server: FaultyOllama, budget: str, xdist: bool
) -> None:
    # two replies, then the server dies: it drops the third request and refuses every later one
    fault_server.script(Answer(), Answer(), Die(), then=Die())
    result = suite.run(*run_args(fault_server, suite, f"--max-errors={budget}"), xdist=xdist)

    assert_no_traceback(result)
    assert not fault_server.running
    received = fault_server.replies_sent
    assert received >= 2
    report = suite.report()
    errors = [s for s in report["samples"] if s["status"] == "error"]
    assert errors
    for sample in errors:
        assert "cannot connect" in sample["error"], sample["error"]
        assert "Connection refused" in sample["error"], sample["error"]
    ok = [s for s in report["samples"] if s["status"] == "ok"]
    assert len(ok) <= received
    assert report["run"]["errors"] == len(errors)
    if budget == "0":
        # the first sample without a reply ends the run: the rest is not asked at all
        assert result.ret == ExitStatus.ERROR_BUDGET_EXCEEDED
        assert report["run"]["exit_status"] == ExitStatus.ERROR_BUDGET_EXCEEDED
        assert report["run"]["complete"] is False
        assert "stopping early" in report["run"]["incomplete_reason"]
        result.stdout.re_match_lines(
            [r"INCOMPLETE RUN: \d of 5 planned samples judged \(stopping early: .*"]
        )
    else:
        # a budget that allows it: every sample after the crash is an error with the reason
        assert result.ret == ExitStatus.OK
        assert len(errors) == N - received
        assert len(report["samples"]) == N
    # every reply the server sent before it died is in the cache
    assert cached_rows(suite) == received

    fault_server.clear_script().start()  # the same address, healthy again
    asked_before = fault_server.count()
    rerun = suite.run(*run_args(fault_server, suite))

    assert rerun.ret == ExitStatus.OK, rerun.stdout.str()
    assert fault_server.count() - asked_before == N - received
    again = suite.report()
    assert again["run"]["complete"] is True
    assert sum(s["cached"] for s in again["samples"]) == received
    assert all(s["status"] == "ok" for s in again["samples"])
    assert cached_rows(suite) == N


def test_a_server_that_hangs_at_start_is_one_message_and_exit_69(
    suite: Suite, fault_server: FaultyOllama
) -> None:
    # it accepts connections but never answers: the preflight's timeout fires, twice
    fault_server.script(path="/api/version", then=Hang(30))
    result = suite.run(*run_args(fault_server, suite, timeout=0.5))

    assert result.ret == ExitStatus.SERVER_UNUSABLE
    assert result.stdout.lines == []
    assert len(result.stderr.lines) == 1
    result.stderr.re_match_lines(
        [
            rf"mimicry: no Ollama server answers at '{fault_server.url}' \(timeout: no complete "
            r"reply within 0\.5s, 2 attempt\(s\)\): start it with `ollama serve`.*"
        ]
    )
    assert fault_server.count("/api/version") == 2
    assert fault_server.count() == 0


# -- hangs and slow bodies ----------------------------------------------------------------------


def test_hangs_time_out_are_retried_and_the_run_moves_on(
    suite: Suite, fault_server: FaultyOllama
) -> None:
    hangs_once, always_hangs, slow = SHORT_IDS[:3]
    fault_server.script(Hang(30), sample_id=hangs_once)  # then the default: an answer
    fault_server.script(Hang(30), Hang(30), sample_id=always_hangs)
    fault_server.script(Trickle(pieces=4, gap_s=0.1), sample_id=slow)
    result = suite.run(
        *run_args(
            fault_server, suite, "--max-errors=1", ids=SHORT_SAMPLE_IDS, timeout=1.0, retries=1
        )
    )

    assert_no_traceback(result)
    assert result.ret == ExitStatus.OK
    samples = by_id(suite.report())
    assert samples[hangs_once]["status"] == "ok"
    assert len(fault_server.chat_log(hangs_once)) == 2
    failed = samples[always_hangs]
    assert failed["status"] == "error"
    assert "timeout: no complete reply within 1s" in failed["error"]
    assert "2 attempt(s)" in failed["error"]
    assert len(fault_server.chat_log(always_hangs)) == 2  # --retries 1: two attempts, no more
    assert samples[slow]["status"] == "ok"
    assert samples[slow]["reply"].startswith("{'id':")
    # the run went on after the hung sample: every sample was judged
    assert sorted(samples) == sorted(SHORT_IDS)
    assert all(samples[i]["status"] == "ok" for i in SHORT_IDS if i != always_hangs)


def test_a_reply_trickling_past_the_timeout_is_a_timeout(
    suite: Suite, fault_server: FaultyOllama
) -> None:
    trickling, fine = SHORT_IDS[:2]
    # each piece arrives well within the timeout (0.2 s apart), the whole reply would take
    # 1.4 s: the request's deadline (1 s) ends each attempt, closing its connection, and the
    # retry policy applies as to any timeout
    fault_server.script(sample_id=trickling, then=Trickle(pieces=8, gap_s=0.2))
    result = suite.run(
        *run_args(fault_server, suite, "--max-errors=1", ids=f"{trickling},{fine}", timeout=1.0)
    )

    assert_no_traceback(result)
    assert result.ret == ExitStatus.OK
    samples = by_id(suite.report())
    failed = samples[trickling]
    assert failed["status"] == "error"
    assert "timeout: no complete reply within 1s" in failed["error"]
    assert "2 attempt(s)" in failed["error"]  # --retries 1
    assert len(fault_server.chat_log(trickling)) == 2
    assert samples[fine]["status"] == "ok"


# -- HTTP errors and the retry policy -----------------------------------------------------------


def test_5xx_bursts_are_retried_with_backoff_and_4xx_never(
    suite: Suite, fault_server: FaultyOllama
) -> None:
    busy, crashing, exhausted, rejected, fine = SHORT_IDS
    fault_server.script(
        Status(503, retry_after="1"), Status(503, retry_after="1"), Answer(), sample_id=busy
    )
    fault_server.script(Status(500), Status(500), Answer(), sample_id=crashing)
    fault_server.script(*[Status(503, retry_after="0")] * 4, sample_id=exhausted)
    fault_server.script(Status(400, error="invalid options"), Answer(), sample_id=rejected)
    result = suite.run(*run_args(fault_server, suite, "--max-errors=2", retries=2))

    assert_no_traceback(result)
    assert result.ret == ExitStatus.OK
    samples = by_id(suite.report())
    # a 503 burst with Retry-After: the client waits as told, then gets the reply
    assert samples[busy]["status"] == "ok"
    asked = fault_server.chat_log(busy)
    assert len(asked) == 3
    gaps = [later.at - earlier.at for earlier, later in zip(asked, asked[1:], strict=False)]
    assert all(gap >= 0.95 for gap in gaps), gaps  # Retry-After: 1 (backoff alone is <= 0.5s)
    # 500s without Retry-After: backoff, then the reply
    assert samples[crashing]["status"] == "ok"
    assert len(fault_server.chat_log(crashing)) == 3
    # a burst longer than the retries: exactly 1 + --retries attempts, then an error
    assert samples[exhausted]["status"] == "error"
    assert "HTTP 503" in samples[exhausted]["error"]
    assert "3 attempt(s)" in samples[exhausted]["error"]
    assert len(fault_server.chat_log(exhausted)) == 3
    # a 4xx is this request's fault: asked once
    assert samples[rejected]["status"] == "error"
    assert "HTTP 400: 'invalid options'" in samples[rejected]["error"]
    assert len(fault_server.chat_log(rejected)) == 1
    assert samples[fine]["status"] == "ok"
    assert len(fault_server.chat_log(fine)) == 1
    assert suite.report()["run"]["errors"] == 2


# -- bodies that are not Ollama's ----------------------------------------------------------------

TRUNCATED_JSON = (
    b'{"model": "fault-model:1b", "message": {"role": "assistant", "content": "{\'id\': 8'
)
MALFORMED = {
    "truncated-json": BadBody(TRUNCATED_JSON),
    "html": BadBody(b"<html><body>502 Bad Gateway</body></html>", content_type="text/html"),
    "invalid-utf8": BadBody(b'{"message": {"content": "\xff\xfe\xfd"}}'),
    "json-without-message": BadBody(b'{"model": "fault-model:1b", "done": true}'),
}


def test_malformed_and_cut_bodies_are_error_verdicts_not_crashes(
    suite: Suite, fault_server: FaultyOllama
) -> None:
    ids = [int(i) for i in f"{SHORT_SAMPLE_IDS},{MORE_SAMPLE_IDS}".split(",")]
    malformed = dict(zip(MALFORMED, ids, strict=False))
    cut_once, cut_always, fine = ids[len(MALFORMED) : len(MALFORMED) + 3]
    for name, sample in malformed.items():
        fault_server.script(MALFORMED[name], sample_id=sample)
    fault_server.script(CloseMidBody(), sample_id=cut_once)
    fault_server.script(CloseMidBody(), CloseMidBody(keep=0.9), sample_id=cut_always)
    result = suite.run(
        *run_args(fault_server, suite, "--max-errors=100%", ids=",".join(map(str, ids)))
    )

    assert_no_traceback(result)
    assert result.ret == ExitStatus.OK
    samples = by_id(suite.report())
    for name, sample in malformed.items():
        assert samples[sample]["status"] == "error", name
        assert "malformed response body" in samples[sample]["error"], (name, samples[sample])
        # the server would send the same body again: not retried
        assert len(fault_server.chat_log(sample)) == 1, name
    # a connection closed mid-body is retried (the next try may well get through)
    assert samples[cut_once]["status"] == "ok"
    assert len(fault_server.chat_log(cut_once)) == 2
    assert samples[cut_always]["status"] == "error"
    assert "the connection closed before the full reply arrived" in samples[cut_always]["error"]
    assert len(fault_server.chat_log(cut_always)) == 2
    assert samples[fine]["status"] == "ok"
    # each error is one line in the summary, under the sample's id
    result.stdout.re_match_lines(
        [rf"ERROR evals/test_copies_braces.py::test_copies_braces\[{cut_always}\] - .*"]
    )


def test_json_that_is_not_an_object_is_an_error_verdict_not_a_crash(
    suite: Suite, fault_server: FaultyOllama
) -> None:
    bodies = {SHORT_IDS[0]: b"[]", SHORT_IDS[1]: b"null", SHORT_IDS[2]: b'"a string"'}
    for sample, body in bodies.items():
        fault_server.script(BadBody(body), sample_id=sample)
    ids = ",".join(map(str, bodies))
    result = suite.run(*run_args(fault_server, suite, "--max-errors=100%", ids=ids))

    assert_no_traceback(result)
    assert result.ret == ExitStatus.OK
    samples = by_id(suite.report())
    for sample, body in bodies.items():
        assert samples[sample]["status"] == "error", body
        assert "malformed response body" in samples[sample]["error"], body


# -- the model disappears -----------------------------------------------------------------------


def test_model_removed_mid_run_is_a_clear_error_naming_ollama_pull(
    suite: Suite, fault_server: FaultyOllama
) -> None:
    fault_server.script(Answer(), then=ModelMissing())
    result = suite.run(*run_args(fault_server, suite))

    assert_no_traceback(result)
    # the default --max-errors 0: the first sample without a reply is over the error budget
    assert result.ret == ExitStatus.ERROR_BUDGET_EXCEEDED
    pull = f"ollama pull {fault_server.model.name}"
    result.stdout.re_match_lines([rf".*stopping early: .*{pull}.*"])
    report = suite.report()
    errors = [s for s in report["samples"] if s["status"] == "error"]
    assert len(errors) == 1
    assert "is not on the server" in errors[0]["error"]
    assert pull in errors[0]["error"]
    assert fault_server.count() == 2  # a 404 is not retried, and the run stopped there
    assert report["run"]["complete"] is False
    assert report["run"]["exit_status"] == ExitStatus.ERROR_BUDGET_EXCEEDED


# -- the error budget ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "failing", "described"),
    [("1", 2, r"1 sample\(s\)"), ("10%", 1, r"10\.0% of samples")],
    ids=["count", "share"],
)
def test_errors_over_the_budget_end_the_run_with_status_75(
    suite: Suite, fault_server: FaultyOllama, budget: str, failing: int, described: str
) -> None:
    fault_server.script(*[Status(400, error="no")] * failing)  # the first samples, not retried
    result = suite.run(*run_args(fault_server, suite, f"--max-errors={budget}"))

    assert_no_traceback(result)
    assert result.ret == ExitStatus.ERROR_BUDGET_EXCEEDED
    result.stdout.re_match_lines(
        [
            rf".*mimicry: stopping early: {failing} sample\(s\) had no reply, over the error "
            rf"budget of {described}.*"
        ]
    )
    assert fault_server.count() == failing  # stopped at once: nothing more was asked
    report = suite.report()
    assert report["run"]["complete"] is False
    assert report["run"]["exit_status"] == ExitStatus.ERROR_BUDGET_EXCEEDED
    assert report["run"]["errors"] == failing


@pytest.mark.parametrize("budget", ["1", "20%"], ids=["count", "share"])
def test_errors_within_the_budget_exit_0_and_are_counted(
    suite: Suite, fault_server: FaultyOllama, budget: str
) -> None:
    fault_server.script(Status(400, error="no"))
    result = suite.run(*run_args(fault_server, suite, f"--max-errors={budget}"))

    assert_no_traceback(result)
    assert result.ret == ExitStatus.OK
    assert fault_server.count() == N
    report = suite.report()
    # within budget the run succeeds, but a sample without a reply leaves the measurement
    # incomplete, and the report says so
    assert report["run"]["complete"] is False
    assert report["run"]["incomplete_reason"] == f"1 of {N} samples had no reply"
    assert report["run"]["errors"] == 1
    assert list(report["behaviors"]) == list(BEHAVIOR_NAMES)
    assert all(report["behaviors"][name]["errors"] == 1 for name in BEHAVIOR_NAMES)
    result.stdout.re_match_lines([r".*mimicry: 1 sample\(s\) had no reply \(within the error.*"])


# -- the response cache -------------------------------------------------------------------------


def _corrupt(path: Path, how: str) -> None:
    if how == "garbage":
        path.write_bytes(b"this is not an SQLite database\n" * 300)
    elif how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:  # one damaged entry in a sound file
        conn = sqlite3.connect(path)
        try:
            key = conn.execute("SELECT key FROM replies ORDER BY key LIMIT 1").fetchone()[0]
            conn.execute("UPDATE replies SET value = ? WHERE key = ?", ('{"content": 7}', key))
            conn.commit()
        finally:
            conn.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


ASKED_AGAIN = "a reply asked for again"


@pytest.mark.parametrize("how", ["garbage", "truncated", "damaged-entry"])
def test_a_corrupted_cache_is_set_aside_and_replies_asked_again(
    suite: Suite, fault_server: FaultyOllama, how: str
) -> None:
    ids = SHORT_SAMPLE_IDS
    first = suite.run(*run_args(fault_server, suite, ids=ids))
    assert first.ret == ExitStatus.OK
    assert cached_rows(suite) == N
    db = cache_dir(suite) / CACHE_FILE
    _corrupt(db, how)
    # the server now answers differently: a reply served from a broken cache would show
    fault_server.put_model(dataclasses.replace(fault_server.model, reply=lambda _: ASKED_AGAIN))
    asked_before = fault_server.count()
    # (no -W filter: the outer test turns warnings into errors, so a warning that escaped the
    # run's own output, e.g. from its prefetching thread, would fail this test)
    second = suite.run(*run_args(fault_server, suite, ids=ids))

    assert_no_traceback(second)
    assert second.ret == ExitStatus.OK
    samples = suite.report()["samples"]
    fresh = [s for s in samples if not s["cached"]]
    # asked again: the new answer; still cached: the first run's answer, never another's
    assert all(s["reply"] == ASKED_AGAIN for s in fresh)
    assert all(s["reply"].startswith("{'id':") for s in samples if s["cached"])
    asked = fault_server.count() - asked_before
    if how == "damaged-entry":
        assert asked == 1
        assert len(fresh) == 1
        said = r"mimicry: a damaged reply in the response cache was dropped .*"
    else:
        assert asked == N
        assert len(fresh) == N
        said = r"mimicry: the response cache .* was unreadable .* moved to .*"
        assert list(db.parent.glob(f"{CACHE_FILE}.corrupt-*"))
    # said once, in the run's summary
    assert len([line for line in second.outlines if re.match(said, line)]) == 1, second.outlines
    assert cached_rows(suite) == N


def test_a_damaged_reply_an_xdist_worker_finds_is_said_by_the_controller(
    suite: Suite, fault_server: FaultyOllama
) -> None:
    first = suite.run(*run_args(fault_server, suite))
    assert first.ret == ExitStatus.OK
    _corrupt(cache_dir(suite) / CACHE_FILE, "damaged-entry")
    asked_before = fault_server.count()
    # replay: the controller prefetches nothing, so only the workers read the cache
    second = suite.run(
        *run_args(fault_server, suite, "--response-cache-mode=replay", "--max-errors=1"),
        xdist=True,
    )

    assert_no_traceback(second)
    assert second.ret == ExitStatus.OK
    assert fault_server.count() == asked_before
    said = r"mimicry: a damaged reply in the response cache was dropped .*"
    assert len([line for line in second.outlines if re.match(said, line)]) == 1, second.outlines
    # dropped, never served: that sample has no reply in replay mode
    errors = [s for s in suite.report()["samples"] if s["status"] == "error"]
    assert len(errors) == 1
    assert "no stored reply for this sample" in errors[0]["error"]
    assert cached_rows(suite) == N - 1


def test_replies_are_bound_to_the_model_digest(suite: Suite, fault_server: FaultyOllama) -> None:
    old = fault_server.model
    suite.run(*run_args(fault_server, suite))
    assert fault_server.count() == N

    # `ollama pull` brought a new build under the same tag
    fault_server.put_model(dataclasses.replace(old, digest="f" * 64))
    changed = suite.run(*run_args(fault_server, suite))
    assert changed.ret == ExitStatus.OK
    assert fault_server.count() == 2 * N
    report = suite.report()
    assert report["run"]["model_digest"] == "f" * 64
    assert not any(s["cached"] for s in report["samples"])

    # and back: the first build's replies are still there, under its digest
    fault_server.put_model(old)
    suite.run(*run_args(fault_server, suite))
    assert fault_server.count() == 2 * N
    assert all(s["cached"] for s in suite.report()["samples"])


# -- credentials --------------------------------------------------------------------------------

API_KEY = "mimicry-fault-test-key-7f3a9c41e2"


@pytest.mark.parametrize("xdist", [False, True], ids=["no-xdist", "n2"])
def test_the_api_key_is_sent_on_every_request_and_written_nowhere(
    suite: Suite, fault_server: FaultyOllama, monkeypatch: pytest.MonkeyPatch, xdist: bool
) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", API_KEY)
    echoed = SHORT_IDS[1]
    # a proxy that echoes the credential it rejects: the echo must not reach any output either.
    # (Errors are not cached: under xdist each worker judging the sample asks for it again.)
    rejected = Status(401, error=f"invalid credential Bearer {API_KEY}")
    fault_server.script(*[rejected] * 4, sample_id=echoed)
    result = suite.run(*run_args(fault_server, suite, "--max-errors=1"), xdist=xdist)

    assert_no_traceback(result)
    assert result.ret == ExitStatus.OK, result.stdout.str()
    paths = {s.path for s in fault_server.log}
    assert paths == {"/api/version", "/api/tags", "/api/show", "/api/chat"}
    assert all(s.authorization == f"Bearer {API_KEY}" for s in fault_server.log)
    samples = by_id(suite.report())
    assert samples[echoed]["status"] == "error"
    assert "HTTP 401" in samples[echoed]["error"]
    # nowhere: terminal output, report, cache, anything the run left in its directory
    assert API_KEY not in result.stdout.str() + result.stderr.str()
    leaks = []
    for root, _dirs, files in os.walk(suite.pytester.path):
        for name in files:
            path = Path(root, name)
            if API_KEY.encode() in path.read_bytes():
                leaks.append(path)
    assert leaks == []
    assert cached_rows(suite) == N - 1


@pytest.mark.parametrize("xdist", [False, True], ids=["no-xdist", "n2"])
def test_a_failed_sample_is_asked_once_per_run_and_all_its_tests_agree(
    suite: Suite, fault_server: FaultyOllama, xdist: bool
) -> None:
    failing = SHORT_IDS[0]
    fault_server.script(Status(400, error="bad request"), sample_id=failing)
    result = suite.run(*run_args(fault_server, suite, "--max-errors=1"), xdist=xdist)

    assert_no_traceback(result)
    assert result.ret == ExitStatus.OK
    assert len(fault_server.chat_log(sample_id=failing)) == 1  # 5 tests, 1 request
    # the failing sample's tests are errors, each with the one reason; the other samples are
    # measured (not shown is a measurement, reported as passed, in its own category)
    for name in BEHAVIOR_NAMES:
        result.stdout.re_match_lines(
            [
                rf"ERROR evals/test_{name}\.py::test_{name}\[{failing}\] - Failed: sample "
                rf"{failing}: POST /api/chat .*"
            ]
        )
    result.stdout.re_match_lines(
        [rf"=+ (\d+ deselected, )?5 errors, {4 * (N - 1)} shown, {N - 1} not shown in .*"]
    )
    report = suite.report()
    assert by_id(report)[failing]["status"] == "error"
    assert "HTTP 400: 'bad request'" in by_id(report)[failing]["error"]
    assert all(report["behaviors"][name]["errors"] == 1 for name in BEHAVIOR_NAMES)
    assert sum(report["behaviors"][name]["n"] for name in BEHAVIOR_NAMES) == 5 * (N - 1)
