"""The eval suite run as users run it: against a real HTTP server, with and without xdist."""

from __future__ import annotations

import pytest

from tests.conftest import REAL_ROWS_JSONL
from tests.fake_ollama import FakeOllama, plain_answer
from tests.plugin.conftest import SHORT_SAMPLE_IDS, Suite, comparable, dataset_args

N_SAMPLES = len(SHORT_SAMPLE_IDS.split(","))


@pytest.mark.parametrize("xdist", [False, True], ids=["no-xdist", "n2"])
def test_one_model_call_per_sample_and_a_complete_report(
    suite: Suite, fake_ollama: FakeOllama, xdist: bool
) -> None:
    result = suite.run(*dataset_args(fake_ollama, "--report-json=r.json"), xdist=xdist)

    assert result.ret == 0, result.stdout.str()
    assert fake_ollama.requests["/api/chat"] == N_SAMPLES
    # the imitating fake stops inside response_a: no closing brace, later keys missing
    result.assert_outcomes(passed=2 * N_SAMPLES, failed=2 * N_SAMPLES)
    result.stdout.re_match_lines([r"behavior\s+n\s+passed\s+rate\s+95% CI\s+null\s+errors"])
    result.stdout.re_match_lines([rf"copies_braces\s+{N_SAMPLES}\s+0\s+0\.0%"])
    report = suite.report()
    assert report["schema_version"] == 1
    assert report["run"]["backend"] == "ollama"
    assert report["run"]["model_digest"] == fake_ollama.digest
    assert report["run"]["complete"] is True
    assert sorted(map(str, report["run"]["dataset"]["sample_ids"])) == sorted(
        SHORT_SAMPLE_IDS.split(",")
    )
    assert report["behaviors"]["rewrites_prompt"]["rate"] == 1.0
    assert report["behaviors"]["truncates"]["passed"] == N_SAMPLES
    assert all(s["metrics"]["id_changed"] is True for s in report["samples"])


def test_same_report_with_and_without_xdist(suite: Suite, fake_ollama: FakeOllama) -> None:
    suite.run(*dataset_args(fake_ollama, "--report-json=one.json", "--response-cache-mode=off"))
    suite.run(
        *dataset_args(fake_ollama, "--report-json=two.json", "--response-cache-mode=off"),
        xdist=True,
    )

    assert comparable(suite.report("one.json")) == comparable(suite.report("two.json"))
    assert fake_ollama.requests["/api/chat"] == 2 * N_SAMPLES


def test_second_identical_run_asks_the_model_nothing(suite: Suite, fake_ollama: FakeOllama) -> None:
    suite.run(*dataset_args(fake_ollama, "--report-json=first.json"), xdist=True)
    calls = fake_ollama.requests["/api/chat"]
    second = suite.run(*dataset_args(fake_ollama, "--report-json=second.json"), xdist=True)

    assert second.ret == 0
    assert calls == N_SAMPLES
    assert fake_ollama.requests["/api/chat"] == calls
    assert all(s["cached"] for s in suite.report("second.json")["samples"])
    assert comparable(suite.report("first.json")) == comparable(suite.report("second.json"))


def test_a_changed_option_is_a_cache_miss(suite: Suite, fake_ollama: FakeOllama) -> None:
    suite.run(*dataset_args(fake_ollama))
    suite.run(*dataset_args(fake_ollama, "--seed=7"))

    assert fake_ollama.requests["/api/chat"] == 2 * N_SAMPLES


def test_replay_never_calls_the_model_and_a_miss_is_an_error(
    suite: Suite, fake_ollama: FakeOllama
) -> None:
    result = suite.run(
        *dataset_args(fake_ollama, "--response-cache-mode=replay", "--report-json=r.json")
    )

    assert fake_ollama.requests["/api/chat"] == 0
    # the default error budget is 0: the first sample without a reply ends the run
    assert result.ret == 3
    result.stdout.re_match_lines(
        [r".*stopping early: 1 sample\(s\) had no reply, over the error budget of 0 sample\(s\).*"]
    )
    result.stdout.re_match_lines(
        [r".*no stored reply for this sample.*replay never asks the model.*"]
    )
    report = suite.report()
    assert report["run"]["complete"] is False
    assert report["run"]["exit_status"] == 3
    assert [s["status"] for s in report["samples"]] == ["error"]


def test_a_broken_server_stops_the_run_after_ten_errors_in_a_row(
    suite: Suite, fake_ollama: FakeOllama
) -> None:
    all_ids = "--samples=all"
    args = [
        f"--ollama-host={fake_ollama.url}",
        f"--model={fake_ollama.model}",
        f"--dataset={REAL_ROWS_JSONL}",
    ]
    result = suite.run(
        *args, all_ids, "--response-cache-mode=replay", "--max-errors=100%", "--report-json=r.json"
    )

    assert result.ret == 3
    result.stdout.re_match_lines([r".*stopping early: the last 10 samples all had no reply.*"])
    assert len(suite.report()["samples"]) == 10


def test_errors_within_the_budget_exit_zero(suite: Suite, fake_ollama: FakeOllama) -> None:
    result = suite.run(
        *dataset_args(fake_ollama, "--response-cache-mode=replay", f"--max-errors={N_SAMPLES}")
    )

    assert result.ret == 0


def test_plain_answers_are_measured_failures_and_exit_zero(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    with FakeOllama(reply=plain_answer) as fake:
        result = suite.run(*dataset_args(fake, "--report-json=r.json"))

    assert result.ret == 0
    result.assert_outcomes(failed=4 * N_SAMPLES)
    # one informative line per failure, no traceback and no FAILURES section
    result.stdout.re_match_lines(
        [
            r"FAILED evals/test_copies_braces.py::test_copies_braces\[887722\] - "
            r"copies_braces not shown: "
            r"reply starts with 'Here is an answer.*"
        ]
    )
    assert len([line for line in result.outlines if "887722" in line]) == 4
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("*= FAILURES =*")
    assert suite.report()["behaviors"]["truncates"]["rate"] == 0.0


def test_a_reply_cut_at_num_predict_has_no_truncates_verdict(suite: Suite) -> None:
    with FakeOllama(done_reason="length") as fake:
        result = suite.run(*dataset_args(fake, "--report-json=r.json"))

    result.assert_outcomes(passed=N_SAMPLES, failed=2 * N_SAMPLES, skipped=N_SAMPLES)
    report = suite.report()
    assert report["behaviors"]["truncates"] == {
        "n": 0,
        "passed": 0,
        "rate": None,
        "ci95": None,
        "null": N_SAMPLES,
        "errors": 0,
    }
    assert all("output_capped" in s["flags"] for s in report["samples"])


def test_a_prompt_over_num_ctx_gets_no_verdicts(suite: Suite, fake_ollama: FakeOllama) -> None:
    result = suite.run(*dataset_args(fake_ollama, "--num-ctx=64", "--report-json=r.json"))

    result.assert_outcomes(skipped=4 * N_SAMPLES)
    report = suite.report()
    assert report["run"]["options"]["num_ctx"] == 64
    assert all(s["flags"] == ["input_truncated"] for s in report["samples"])
    assert all(v is None for s in report["samples"] for v in s["behaviors"].values())


def test_num_ctx_is_sized_to_the_samples_within_the_model(suite: Suite) -> None:
    with FakeOllama(context_length=2048) as fake:
        suite.run(*dataset_args(fake, "--report-json=r.json", ids="887722"))
        small = fake.chat_bodies[-1]["options"]["num_ctx"]
        suite.run(*dataset_args(fake, "--report-json=r.json", "--samples=all", ids="887722"))

    assert small == 2048  # 340 chars + 1024 reply tokens fit in 2048
    assert fake.chat_bodies[-1]["options"]["num_ctx"] == 2048  # capped at the model's length


def test_seeded_selection_is_reproducible(suite: Suite, fake_ollama: FakeOllama) -> None:
    args = [
        f"--ollama-host={fake_ollama.url}",
        f"--model={fake_ollama.model}",
        f"--dataset={REAL_ROWS_JSONL}",
    ]
    suite.run(
        *args, "--samples=3", "--sample-seed=5", "--report-json=a.json", "--collect-only", "-q"
    )
    suite.run(*args, "--samples=3", "--sample-seed=5", "--report-json=a.json")
    first = suite.report("a.json")["run"]["dataset"]["sample_ids"]
    suite.run(*args, "--samples=3", "--sample-seed=5", "--report-json=b.json")

    assert len(first) == 3
    assert suite.report("b.json")["run"]["dataset"]["sample_ids"] == first


def test_junit_xml_carries_each_samples_verdict_and_metrics(
    suite: Suite, fake_ollama: FakeOllama
) -> None:
    import xml.etree.ElementTree as ET

    result = suite.run(*dataset_args(fake_ollama, "--junitxml=junit.xml"), xdist=True)

    assert result.ret == 0
    root = ET.parse(suite.pytester.path / "junit.xml").getroot()
    cases = {
        f"{c.get('name')}": {p.get("name"): p.get("value") for p in c.iter("property")}
        for c in root.iter("testcase")
    }
    props = cases["test_rewrites_prompt[887722]"]
    assert props["mimicry.verdict"] == "true"
    assert props["mimicry.behavior"] == "rewrites_prompt"
    assert props["mimicry.metric.id_changed"] == "true"
    assert props["mimicry.reply_excerpt"].startswith("{'id': 887723")
    assert cases["test_copies_braces[887722]"]["mimicry.verdict"] == "false"
    assert "mimicry" not in props  # the transport dict is not dumped into the XML
    assert len(cases) == 4 * N_SAMPLES


def test_without_pytests_cache_each_sample_is_still_asked_once(
    suite: Suite, fake_ollama: FakeOllama
) -> None:
    result = suite.run(*dataset_args(fake_ollama, "-p", "no:cacheprovider"), xdist=True)

    assert result.ret == 0
    assert fake_ollama.requests["/api/chat"] == N_SAMPLES
    assert not (suite.pytester.path / ".pytest_cache").exists()
