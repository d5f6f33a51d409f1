"""Prefetching (--concurrency) and several servers change how fast replies come, never what is
judged: the same verdicts per sample as a plain serial run."""

from __future__ import annotations

import pytest

from tests.conftest import REAL_ROWS_JSONL
from tests.fake_ollama import FakeOllama
from tests.plugin.conftest import Suite, comparable


def _args(*hosts: FakeOllama, extra: tuple[str, ...] = ()) -> list[str]:
    return [
        *(f"--ollama-host={h.url}" for h in hosts),
        f"--model={hosts[0].model}",
        f"--dataset={REAL_ROWS_JSONL}",
        "--samples=12",
        "--report-json=r.json",
        *extra,
    ]


@pytest.fixture
def serial_report(suite: Suite) -> dict[str, object]:
    with FakeOllama() as fake:
        suite.run(*_args(fake, extra=("--response-cache-mode=off",)))
    return comparable(suite.report())


def test_concurrency_keeps_requests_in_flight_with_the_same_verdicts(
    suite: Suite, serial_report: dict[str, object]
) -> None:
    with FakeOllama(delay_s=0.2) as fake:
        result = suite.run(*_args(fake, extra=("--response-cache-mode=off", "--concurrency=4")))

    assert result.ret == 0
    assert fake.requests["/api/chat"] == 12  # still one request per sample
    assert fake.max_in_flight >= 3
    assert comparable(suite.report()) == serial_report


def test_two_hosts_share_the_samples_with_the_same_verdicts(
    suite: Suite, serial_report: dict[str, object]
) -> None:
    with FakeOllama() as one, FakeOllama() as two:
        result = suite.run(*_args(one, two, extra=("--response-cache-mode=off",)), xdist=True)

    assert result.ret == 0
    assert one.requests["/api/chat"] + two.requests["/api/chat"] == 12
    assert one.requests["/api/chat"] > 0
    assert two.requests["/api/chat"] > 0
    report = suite.report()
    assert report["run"]["hosts"] == [one.url, two.url]
    assert comparable(report) == serial_report


def test_hosts_serving_different_models_are_refused(suite: Suite) -> None:
    with FakeOllama() as one, FakeOllama(digest="0" * 64) as two:
        result = suite.run(*_args(one, two))

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.re_match_lines([r".*every host must serve the same model.*"])
    assert one.requests["/api/chat"] + two.requests["/api/chat"] == 0


def test_replay_from_the_cache_is_identical_across_modes(suite: Suite) -> None:
    with FakeOllama() as fake:
        suite.run(*_args(fake))
        reports = []
        for extra in (("-p", "no:xdist"), ("-n", "2"), ("--concurrency=4",)):
            dist = [] if extra[0] != "--concurrency=4" else ["-p", "no:xdist"]
            args = _args(fake, extra=("--response-cache-mode=replay", *extra))
            suite.pytester.runpytest("evals", *dist, *args)
            reports.append(comparable(suite.report()))
        asked = fake.requests["/api/chat"]

    assert asked == 12
    assert reports[0] == reports[1] == reports[2]


def test_explicit_xdist_gateways_get_the_plan_too(
    suite: Suite, serial_report: dict[str, object]
) -> None:
    with FakeOllama() as fake:
        args = _args(fake, extra=("--response-cache-mode=off",))
        result = suite.pytester.runpytest("evals", "--dist=load", "--tx=2*popen", *args)

    assert result.ret == 0, result.stdout.str()
    assert fake.requests["/api/chat"] == 12
    assert comparable(suite.report()) == serial_report
