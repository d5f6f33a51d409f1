"""Regression gating across model versions, as a CI job would run it, with and without xdist."""

from __future__ import annotations

import json

import pytest

from mimicry.exitcodes import ExitStatus
from mimicry.testing import CHAT, FakeModel, FakeOllama, plain_answer
from tests.conftest import REAL_ROWS_JSONL
from tests.plugin.conftest import Suite, pinned_imitations

N_ROWS = 32  # the shared sample's rows


def _args(fake: FakeOllama, *extra: str) -> list[str]:
    return [
        f"--ollama-host={fake.url}",
        f"--model={fake.model.name}",
        f"--dataset={REAL_ROWS_JSONL}",
        "--samples=all",
        *extra,
    ]


def version_1() -> FakeOllama:
    """'Version 1' of the model: it imitates every record."""
    return FakeOllama(FakeModel("fake:v1", reply=pinned_imitations()))


@pytest.fixture
def baseline(suite: Suite) -> str:
    """A baseline saved from version 1."""
    with version_1() as v1:
        result = suite.run(*_args(v1, "--save-baseline=baseline.json"))
    assert result.ret == ExitStatus.OK, result.stdout.str()
    assert suite.report("baseline.json")["behaviors"]["rewrites_prompt"]["rate"] == 1.0
    return "baseline.json"


@pytest.mark.parametrize("xdist", [False, True], ids=["no-xdist", "n2"])
def test_a_real_change_fails_the_regression_gate(suite: Suite, baseline: str, xdist: bool) -> None:
    # 'version 2' answers instead of imitating
    with FakeOllama(FakeModel("fake:v2", reply=plain_answer)) as v2:
        result = suite.run(
            *_args(
                v2,
                f"--baseline={baseline}",
                "--max-regression=rewrites_prompt:0.05",
                "--report-json=r.json",
                "--report-md=r.md",
            ),
            xdist=xdist,
        )

    assert result.ret == ExitStatus.GATE_FAILED
    result.stdout.re_match_lines(
        [r"gates: 0 passed, 1 failed", r"  FAILED rewrites_prompt:0\.05: rewrites_prompt fell .*"]
    )
    report = suite.report()
    assert report["run"]["exit_status"] == ExitStatus.GATE_FAILED
    rewrites = report["comparison"]["behaviors"]["rewrites_prompt"]
    assert len(rewrites["pass_to_fail"]) == N_ROWS
    assert rewrites["mcnemar_p"] < 1e-6
    assert [(g["gate"], g["passed"]) for g in report["gates"]] == [("rewrites_prompt:0.05", False)]
    assert "rewrites\\_prompt" in (suite.pytester.path / "r.md").read_text()  # Markdown-escaped


def test_an_identical_rerun_passes_the_gate(suite: Suite, baseline: str) -> None:
    with version_1() as v1:
        result = suite.run(
            *_args(
                v1,
                f"--baseline={baseline}",
                "--max-regression=rewrites_prompt:0.05:any",
                "--gate=truncates>=0.9",
                "--report-json=r.json",
                "--response-cache-mode=off",
            )
        )
        asked = v1.count(CHAT)

    assert result.ret == ExitStatus.OK, result.stdout.str()
    assert asked == N_ROWS  # really asked again, not read from the baseline run's cache
    result.stdout.re_match_lines([r"gates: 2 passed, 0 failed"])
    report = suite.report()
    assert [g["passed"] for g in report["gates"]] == [True, True]
    assert report["comparison"]["behaviors"]["rewrites_prompt"]["mcnemar_p"] == 1.0


def test_a_changed_sample_selection_is_reported(suite: Suite, baseline: str) -> None:
    with version_1() as v1:
        args = _args(v1, f"--baseline={baseline}", "--report-json=r.json")
        args[args.index("--samples=all")] = "--samples=10"
        result = suite.run(*args)

    assert result.ret == ExitStatus.OK, result.stdout.str()
    result.stdout.re_match_lines([r".*10 in both, 22 only in the baseline.*"])
    comparison = suite.report()["comparison"]
    assert comparison["common_samples"] == 10
    assert len(comparison["only_in_baseline"]) == N_ROWS - 10


def test_an_absolute_gate_fails_with_the_evidence(suite: Suite) -> None:
    with FakeOllama(FakeModel(reply=plain_answer)) as fake:
        result = suite.run(*_args(fake, "--samples=5", "--gate=copies_braces>=0.30"))

    assert result.ret == ExitStatus.GATE_FAILED
    result.stdout.re_match_lines(
        [r"  FAILED copies_braces>=0\.30: rate 0\.0% is below the threshold 30\.0%.*0 of 5 .*"]
    )


def test_a_gate_on_a_behavior_the_run_did_not_measure_fails_and_suggests_the_name(
    suite: Suite,
) -> None:
    with FakeOllama(FakeModel(reply=pinned_imitations())) as fake:
        result = suite.run(
            *_args(
                fake,
                "--samples=2",
                "--gate=copies_brace>=0.5",
                "--gate=answers_prompt<=0.5",  # judge-based: deselected without --judge-model
                "--report-json=r.json",
            )
        )

    # a name is only known once the suite is collected: a misspelled one fails at evaluation
    assert result.ret == ExitStatus.GATE_FAILED
    result.stdout.re_match_lines(
        [
            r"  FAILED copies_brace>=0\.5: 'copies_brace' was not measured in this run "
            r"\(measured: .*\); did you mean 'copies_braces'\?",
            r"  FAILED answers_prompt<=0\.5: 'answers_prompt' was not measured in this run.*",
        ]
    )
    assert [g["passed"] for g in suite.report()["gates"]] == [False, False]


def test_bad_gate_is_a_usage_error(suite: Suite) -> None:
    result = suite.run("--gate=copies_braces>=1.5")

    assert result.ret == ExitStatus.USAGE_ERROR
    result.stderr.re_match_lines(
        [r".*--gate 'copies_braces>=1\.5': the threshold must be between 0 and 1.*"]
    )


def test_max_regression_needs_a_baseline(suite: Suite) -> None:
    result = suite.run("--max-regression=preserves_keys:0.05")

    assert result.ret == ExitStatus.USAGE_ERROR
    result.stderr.re_match_lines([r".*--max-regression needs a baseline.*"])


def test_a_broken_baseline_is_a_usage_error(suite: Suite) -> None:
    (suite.pytester.path / "bad.json").write_text("{not json")
    with FakeOllama() as fake:
        result = suite.run(*_args(fake, "--baseline=bad.json"))
        asked = fake.count(CHAT)

    assert result.ret == ExitStatus.USAGE_ERROR
    result.stderr.re_match_lines([r".*--baseline: .*bad\.json.*"])
    assert asked == 0


def test_gates_from_the_ini_file(suite: Suite) -> None:
    with FakeOllama(FakeModel(reply=plain_answer)) as fake:
        suite.pytester.makeini(
            "[pytest]\nmimicry_gate =\n    copies_braces<=0.5\n    truncates<=0.5\n"
        )
        result = suite.run(*_args(fake, "--samples=5", "--report-json=r.json"))

    assert result.ret == ExitStatus.OK, result.stdout.str()
    gates = suite.report()["gates"]
    assert [(g["gate"], g["passed"]) for g in gates] == [
        ("copies_braces<=0.5", True),
        ("truncates<=0.5", True),
    ]


def test_repeats_ask_each_sample_with_new_seeds_and_cluster_the_interval(suite: Suite) -> None:
    with FakeOllama(FakeModel(reply=pinned_imitations())) as fake:
        result = suite.run(
            *_args(
                fake,
                "--samples=4",
                "--repeat=3",
                "--report-json=r.json",
                "--gate=rewrites_prompt@0.8>=0.5",
            ),
            xdist=True,
        )
        seeds = sorted(b["options"]["seed"] for b in fake.chat_bodies)

    assert result.ret == ExitStatus.OK, result.stdout.str()
    assert seeds == [42] * 4 + [43] * 4 + [44] * 4  # each sample once per repeat
    report = suite.report()
    assert len(report["samples"]) == 12
    row = report["behaviors"]["rewrites_prompt"]
    assert row["n"] == 12
    assert row["clusters"] == 4
    assert row["ci_method"] == "cluster-robust"
    assert report["gates"][0]["passed"] is True
    assert json.dumps(report)  # plain JSON throughout
