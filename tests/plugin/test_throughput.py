"""Prefetching (--concurrency) and several servers change how the replies are asked for, never
what is judged: the same verdicts per sample as a plain serial run, each sample asked once.

Nothing here is timed (how fast a run goes is measured in benchmarks/): the tests check what the
fake server saw, how many requests it had at once and how many in all.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from mimicry.exitcodes import ExitStatus
from mimicry.testing import CHAT, ChatRequest, FakeModel, FakeOllama, Reply, Stats
from tests.conftest import REAL_ROWS_JSONL
from tests.plugin.conftest import Suite, comparable, pinned_imitations

N_SAMPLES = 12
CONCURRENCY = 3
#: Safety net of the in-flight barrier below: a run that keeps K requests in flight passes it
#: within milliseconds; one that does not stalls this long once, then the test fails.
STALL_S = 30.0


def _args(*hosts: FakeOllama, extra: tuple[str, ...] = ()) -> list[str]:
    return [
        *(f"--ollama-host={h.url}" for h in hosts),
        f"--model={hosts[0].model.name}",
        f"--dataset={REAL_ROWS_JSONL}",
        f"--samples={N_SAMPLES}",
        "--report-json=r.json",
        *extra,
    ]


def imitating_fake() -> FakeOllama:
    """A fake whose model imitates the records (see ``pinned_imitations``)."""
    return FakeOllama(FakeModel(reply=pinned_imitations()))


class InFlightBarrier:
    """A reply function that answers only once ``k`` requests are in flight at the server, or
    all those the run has left (``total`` minus the replies sent): a run that keeps fewer in
    flight at any point stalls, and the stall is recorded. It answers with
    :func:`~tests.plugin.conftest.pinned_imitations`."""

    def __init__(self, k: int, total: int, stall_s: float = STALL_S) -> None:
        self.k = k
        self.total = total
        self.stall_s = stall_s
        self.reply = pinned_imitations()
        self.fake: FakeOllama | None = None
        self.stalls: list[str] = []
        self._lock = threading.Lock()

    def _enough(self, stats: Stats) -> bool:
        return stats.in_flight >= min(self.k, self.total - stats.replies)

    def __call__(self, request: ChatRequest) -> str | Reply:
        assert self.fake is not None, "set the barrier's fake before the run"
        with self._lock:
            stalled = bool(self.stalls)
        if not stalled:  # after one stall, answer at once: the test fails anyway
            try:
                self.fake.wait_until(self._enough, self.stall_s)
            except TimeoutError as exc:
                with self._lock:
                    self.stalls.append(str(exc))
        return self.reply(request)


@pytest.fixture
def serial_report(suite: Suite) -> dict[str, Any]:
    """The report of a run that asks one sample at a time."""
    with imitating_fake() as fake:
        result = suite.run(*_args(fake, extra=("--response-cache-mode=off", "--concurrency=1")))
    assert result.ret == ExitStatus.OK, result.stdout.str()
    assert fake.max_in_flight == 1
    return comparable(suite.report())


@pytest.mark.parametrize("xdist", [False, True], ids=["no-xdist", "n2"])
def test_concurrency_keeps_k_requests_in_flight_for_the_whole_run(
    suite: Suite, serial_report: dict[str, Any], xdist: bool
) -> None:
    barrier = InFlightBarrier(CONCURRENCY, N_SAMPLES)
    with FakeOllama(FakeModel(reply=barrier)) as fake:  # no slot limit: it takes any number
        barrier.fake = fake
        result = suite.run(
            *_args(fake, extra=("--response-cache-mode=off", f"--concurrency={CONCURRENCY}")),
            xdist=xdist,
        )

    assert result.ret == ExitStatus.OK, result.stdout.str()
    assert barrier.stalls == []  # never fewer than K in flight while K samples were left
    assert fake.max_in_flight == CONCURRENCY  # and never more
    assert fake.count(CHAT) == N_SAMPLES  # each sample asked once
    report = suite.report()
    assert report["run"]["concurrency"] == CONCURRENCY
    assert comparable(report) == serial_report


def test_the_barrier_catches_a_run_that_keeps_fewer_in_flight(suite: Suite) -> None:
    # the check above can fail: a serial run never has two requests in flight, so the first
    # request stalls whatever the timeout (short here: it only bounds the wait)
    barrier = InFlightBarrier(2, N_SAMPLES, stall_s=1.0)
    with FakeOllama(FakeModel(reply=barrier)) as fake:
        barrier.fake = fake
        suite.run(*_args(fake, extra=("--response-cache-mode=off", "--concurrency=1")))

    assert len(barrier.stalls) == 1
    assert fake.max_in_flight == 1


def test_two_hosts_share_the_samples_with_the_same_verdicts(
    suite: Suite, serial_report: dict[str, Any]
) -> None:
    with imitating_fake() as one, imitating_fake() as two:
        result = suite.run(*_args(one, two, extra=("--response-cache-mode=off",)), xdist=True)

    assert result.ret == ExitStatus.OK, result.stdout.str()
    report = suite.report()
    assert report["run"]["hosts"] == [one.url, two.url]
    # the sample at dataset index i goes to host i mod 2, asked once
    for host, parity in ((one, 0), (two, 1)):
        expected = sorted(int(s["id"]) for s in report["samples"] if s["index"] % 2 == parity)
        assert expected, "the selection has samples of both parities"
        assert sorted(served.sample_id or 0 for served in host.chat_log()) == expected
    assert comparable(report) == serial_report


def test_hosts_serving_different_models_are_refused(suite: Suite) -> None:
    with FakeOllama() as one, FakeOllama(FakeModel(digest="0" * 64)) as two:
        result = suite.run(*_args(one, two))

    assert result.ret == ExitStatus.USAGE_ERROR
    result.stderr.re_match_lines([r".*every host must serve the same model.*"])
    assert one.count(CHAT) + two.count(CHAT) == 0


def test_replay_from_the_cache_is_identical_across_modes(suite: Suite) -> None:
    modes = {
        "no-xdist": ["-p", "no:xdist"],
        "n2": ["-n", "2"],
        "concurrency": ["-p", "no:xdist", "--concurrency=4"],
    }
    with imitating_fake() as fake:
        assert suite.run(*_args(fake)).ret == ExitStatus.OK
        reports = {}
        for mode, dist in modes.items():
            args = _args(fake, extra=("--response-cache-mode=replay",))
            result = suite.pytester.runpytest("evals", *dist, *args)
            assert result.ret == ExitStatus.OK, (mode, result.stdout.str())
            reports[mode] = comparable(suite.report())

    assert fake.count(CHAT) == N_SAMPLES  # asked by the first run only
    assert reports["no-xdist"] == reports["n2"] == reports["concurrency"]


def test_explicit_xdist_gateways_get_the_plan_too(
    suite: Suite, serial_report: dict[str, Any]
) -> None:
    with imitating_fake() as fake:
        args = _args(fake, extra=("--response-cache-mode=off",))
        result = suite.pytester.runpytest("evals", "--dist=load", "--tx=2*popen", *args)

    assert result.ret == ExitStatus.OK, result.stdout.str()
    assert fake.count(CHAT) == N_SAMPLES
    assert comparable(suite.report()) == serial_report
