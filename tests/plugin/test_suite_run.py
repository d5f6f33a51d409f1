"""The eval suite run as users run it: against a real HTTP server, with and without xdist."""

from __future__ import annotations

import pytest

from mimicry.exitcodes import ExitStatus
from mimicry.testing import FakeModel, FakeOllama, Reply, imitating_reply, plain_answer
from tests.conftest import REAL_ROWS_JSONL
from tests.plugin.conftest import (
    BUILT_IN,
    N_SAMPLES,
    SHORT_SAMPLE_IDS,
    Suite,
    comparable,
    dataset_args,
)


def capped(request: object) -> Reply:
    """The imitating reply, as if it had run into num_predict."""
    return Reply(imitating_reply(request), done_reason="length")  # type: ignore[arg-type]


@pytest.mark.parametrize("xdist", [False, True], ids=["no-xdist", "n2"])
def test_one_model_call_per_sample_and_a_complete_report(
    suite: Suite, fake_ollama: FakeOllama, xdist: bool
) -> None:
    result = suite.run(*dataset_args(fake_ollama, "--report-json=r.json"), xdist=xdist)

    assert result.ret == ExitStatus.OK, result.stdout.str()
    assert fake_ollama.count("/api/chat") == N_SAMPLES
    result.stdout.re_match_lines([r"behavior\s+n\s+shown\s+rate\s+95% CI\s+null\s+errors"])
    result.stdout.re_match_lines([rf"copies_braces\s+{N_SAMPLES}\s+{N_SAMPLES}\s+100\.0%"])
    report = suite.report()
    assert report["schema_version"] == 2
    assert report["run"]["backend"] == "ollama"
    assert report["run"]["model_digest"] == fake_ollama.model.digest
    assert report["run"]["complete"] is True
    assert report["run"]["detectors_version"] >= 2
    assert sorted(report["run"]["dataset"]["sample_ids"]) == sorted(SHORT_SAMPLE_IDS.split(","))
    assert list(report["behaviors"]) == list(BUILT_IN)
    assert report["behaviors"]["rewrites_prompt"]["rate"] == 1.0
    assert report["behaviors"]["preserves_keys"]["rate"] == 0.0
    assert all(s["measures"]["id_changed"] is True for s in report["samples"])
    assert set(report["records"]) == set(SHORT_SAMPLE_IDS.split(","))


def test_same_report_with_and_without_xdist(suite: Suite, fake_ollama: FakeOllama) -> None:
    suite.run(*dataset_args(fake_ollama, "--report-json=one.json", "--response-cache-mode=off"))
    suite.run(
        *dataset_args(fake_ollama, "--report-json=two.json", "--response-cache-mode=off"),
        xdist=True,
    )

    assert comparable(suite.report("one.json")) == comparable(suite.report("two.json"))
    assert fake_ollama.count("/api/chat") == 2 * N_SAMPLES


def test_second_identical_run_asks_the_model_nothing(suite: Suite, fake_ollama: FakeOllama) -> None:
    suite.run(*dataset_args(fake_ollama, "--report-json=first.json"), xdist=True)
    calls = fake_ollama.count("/api/chat")
    second = suite.run(*dataset_args(fake_ollama, "--report-json=second.json"), xdist=True)

    assert second.ret == ExitStatus.OK
    assert calls == N_SAMPLES
    assert fake_ollama.count("/api/chat") == calls
    assert all(s["cached"] for s in suite.report("second.json")["samples"])
    assert comparable(suite.report("first.json")) == comparable(suite.report("second.json"))


def test_a_rows_reply_is_reused_whatever_else_is_selected(
    suite: Suite, fake_ollama: FakeOllama
) -> None:
    suite.run(*dataset_args(fake_ollama, "--report-json=all.json"))
    first_window = fake_ollama.chat_bodies[0]["options"]["num_ctx"]
    suite.run(*dataset_args(fake_ollama, "--report-json=one.json", ids="887722"))

    assert fake_ollama.count("/api/chat") == N_SAMPLES  # nothing asked again
    assert suite.report("one.json")["samples"][0]["cached"] is True
    assert suite.report("one.json")["run"]["options"]["num_ctx"] <= first_window
    # one window per run: a real Ollama reloads the model when num_ctx changes
    assert {body["options"]["num_ctx"] for body in fake_ollama.chat_bodies} == {first_window}


def test_a_changed_option_is_a_cache_miss(suite: Suite, fake_ollama: FakeOllama) -> None:
    suite.run(*dataset_args(fake_ollama))
    suite.run(*dataset_args(fake_ollama, "--seed=7"))

    assert fake_ollama.count("/api/chat") == 2 * N_SAMPLES


def test_replay_never_calls_the_model_and_a_miss_is_an_error(
    suite: Suite, fake_ollama: FakeOllama
) -> None:
    result = suite.run(
        *dataset_args(fake_ollama, "--response-cache-mode=replay", "--report-json=r.json")
    )

    assert fake_ollama.count("/api/chat") == 0
    # the default error budget is 0: the first sample without a reply ends the run
    assert result.ret == ExitStatus.ERROR_BUDGET_EXCEEDED
    result.stdout.re_match_lines(
        [r".*stopping early: 1 sample\(s\) had no reply, over the error budget of 0 sample\(s\).*"]
    )
    result.stdout.re_match_lines([r".*no stored reply for this sample.*replay never asks.*"])
    report = suite.report()
    assert report["run"]["complete"] is False
    assert report["run"]["exit_status"] == ExitStatus.ERROR_BUDGET_EXCEEDED
    assert [s["status"] for s in report["samples"]] == ["error"]


def test_a_broken_server_stops_the_run_after_ten_errors_in_a_row(
    suite: Suite, fake_ollama: FakeOllama
) -> None:
    args = [
        f"--ollama-host={fake_ollama.url}",
        f"--model={fake_ollama.model.name}",
        f"--dataset={REAL_ROWS_JSONL}",
        "--samples=all",
    ]
    result = suite.run(
        *args, "--response-cache-mode=replay", "--max-errors=100%", "--report-json=r.json"
    )

    assert result.ret == ExitStatus.SERVER_UNUSABLE
    result.stdout.re_match_lines([r".*stopping early: the last 10 samples all had no reply.*"])
    assert len(suite.report()["samples"]) == 10


def test_errors_within_the_budget_exit_zero(suite: Suite, fake_ollama: FakeOllama) -> None:
    result = suite.run(
        *dataset_args(
            fake_ollama,
            "--response-cache-mode=replay",
            f"--max-errors={N_SAMPLES}",
            "--report-json=r.json",
        )
    )

    assert result.ret == ExitStatus.OK
    report = suite.report()
    assert report["run"]["complete"] is False
    assert all(row["errors"] == N_SAMPLES for row in report["behaviors"].values())


def test_plain_answers_are_measured_and_exit_zero(suite: Suite) -> None:
    with FakeOllama(FakeModel(reply=plain_answer)) as fake:
        result = suite.run(*dataset_args(fake, "--report-json=r.json"))

    assert result.ret == ExitStatus.OK
    result.stdout.re_match_lines([rf".* {5 * N_SAMPLES} not shown in .*"])
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("*FAILED*")
    report = suite.report()
    assert report["behaviors"]["truncates"]["rate"] == 0.0
    explanation = report["samples"][0]["explanations"]["copies_braces"]
    assert explanation.startswith("no imitation: the reply starts with")


def test_a_reply_cut_at_num_predict_has_no_truncates_verdict(suite: Suite) -> None:
    with FakeOllama(FakeModel(reply=capped)) as fake:
        result = suite.run(*dataset_args(fake, "--report-json=r.json"))

    result.stdout.re_match_lines([r".* not judged.*"])
    report = suite.report()
    assert report["behaviors"]["truncates"] == {
        "n": 0,
        "passed": 0,
        "rate": None,
        "ci95": None,
        "null": N_SAMPLES,
        "errors": 0,
    }
    assert report["behaviors"]["preserves_keys"]["null"] == N_SAMPLES
    assert all("output_capped" in s["flags"] for s in report["samples"])


def test_a_prompt_over_num_ctx_gets_no_verdicts(suite: Suite, fake_ollama: FakeOllama) -> None:
    result = suite.run(*dataset_args(fake_ollama, "--num-ctx=64", "--report-json=r.json"))

    result.stdout.re_match_lines([rf".* {5 * N_SAMPLES} not judged in .*"])
    report = suite.report()
    assert report["run"]["options"]["num_ctx"] == 64
    assert all(s["flags"] == ["input_truncated"] for s in report["samples"])
    assert all(v is None for s in report["samples"] for v in s["behaviors"].values())


def test_num_ctx_is_sized_to_the_samples_within_the_model(suite: Suite) -> None:
    with FakeOllama(FakeModel(context_length=2048)) as fake:
        suite.run(*dataset_args(fake, "--report-json=r.json", ids="887722"))
        small = fake.chat_bodies[-1]["options"]["num_ctx"]
        suite.run(*dataset_args(fake, "--report-json=r.json", "--samples=all", ids="887722"))

    assert small == 2048  # 340 chars + 1024 reply tokens fit in 2048
    assert fake.chat_bodies[-1]["options"]["num_ctx"] == 2048  # capped at the model's length


def test_seeded_selection_is_reproducible(suite: Suite, fake_ollama: FakeOllama) -> None:
    args = [
        f"--ollama-host={fake_ollama.url}",
        f"--model={fake_ollama.model.name}",
        f"--dataset={REAL_ROWS_JSONL}",
    ]
    suite.run(*args, "--samples=3", "--sample-seed=5", "--report-json=a.json")
    first = suite.report("a.json")["run"]["dataset"]["sample_ids"]
    suite.run(*args, "--samples=3", "--sample-seed=5", "--report-json=b.json")

    assert len(first) == 3
    assert suite.report("b.json")["run"]["dataset"]["sample_ids"] == first


def test_without_pytests_cache_each_sample_is_still_asked_once(
    suite: Suite, fake_ollama: FakeOllama
) -> None:
    result = suite.run(*dataset_args(fake_ollama, "-p", "no:cacheprovider"), xdist=True)

    assert result.ret == ExitStatus.OK
    assert fake_ollama.count("/api/chat") == N_SAMPLES
    assert not (suite.pytester.path / ".pytest_cache").exists()


def test_collect_only_plans_without_a_server(suite: Suite) -> None:
    result = suite.run(
        "--ollama-host=http://127.0.0.1:9",
        "--dataset=sample",
        "--samples=2",
        "--collect-only",
        "-q",
    )

    assert result.ret == ExitStatus.OK
    assert len([line for line in result.outlines if "::test_" in line]) == 2 * len(BUILT_IN)
