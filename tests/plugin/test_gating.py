"""Regression gating across model versions, as a CI job would run it, with and without xdist."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REAL_ROWS_JSONL
from tests.fake_ollama import FakeOllama, imitating_reply, plain_answer
from tests.plugin.conftest import Suite


def _args(fake: FakeOllama, *extra: str) -> list[str]:
    return [
        f"--ollama-host={fake.url}",
        f"--model={fake.model}",
        f"--dataset={REAL_ROWS_JSONL}",
        "--samples=all",
        *extra,
    ]


@pytest.fixture
def baseline(suite: Suite) -> str:
    """A baseline saved from 'version 1' of the model, which imitates every record."""
    with FakeOllama(model="fake:v1", reply=imitating_reply) as v1:
        result = suite.run(*_args(v1, "--save-baseline=baseline.json"))
    assert result.ret == 0
    return "baseline.json"


@pytest.mark.parametrize("xdist", [False, True], ids=["no-xdist", "n2"])
def test_a_real_change_fails_the_regression_gate(suite: Suite, baseline: str, xdist: bool) -> None:
    with FakeOllama(model="fake:v2", reply=plain_answer) as v2:
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

    assert result.ret == 1
    result.stdout.re_match_lines([r".*FAIL.*rewrites_prompt.*"])
    report = suite.report()
    rewrites = report["comparison"]["behaviors"]["rewrites_prompt"]
    assert rewrites["pass_to_fail"]
    assert len(rewrites["pass_to_fail"]) == 32
    assert rewrites["mcnemar_p"] < 1e-6
    assert [g["passed"] for g in report["gates"]] == [False]
    assert "rewrites\\_prompt" in (suite.pytester.path / "r.md").read_text()  # Markdown-escaped


def test_an_identical_rerun_passes_the_gate(suite: Suite, baseline: str) -> None:
    with FakeOllama(model="fake:v1", reply=imitating_reply) as v1:
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

    assert result.ret == 0, result.stdout.str()
    report = suite.report()
    assert all(g["passed"] for g in report["gates"])
    assert report["comparison"]["behaviors"]["rewrites_prompt"]["mcnemar_p"] == 1.0


def test_a_changed_sample_selection_is_reported(suite: Suite, baseline: str) -> None:
    with FakeOllama(model="fake:v1", reply=imitating_reply) as v1:
        args = _args(v1, f"--baseline={baseline}", "--report-json=r.json")
        args[args.index("--samples=all")] = "--samples=10"
        result = suite.run(*args)

    assert result.ret == 0
    result.stdout.re_match_lines([r".*(selection|sample).*differ.*|.*only in the baseline.*"])
    comparison = suite.report()["comparison"]
    assert comparison["common_samples"] == 10
    assert len(comparison["only_in_baseline"]) == 22


def test_an_absolute_gate_fails_with_the_evidence(suite: Suite) -> None:
    with FakeOllama(reply=plain_answer) as fake:
        result = suite.run(*_args(fake, "--samples=5", "--gate=copies_braces>=0.30"))

    assert result.ret == 1
    result.stdout.re_match_lines(
        [
            r".*copies_braces.*0\.0%.*0\.3.*|.*copies_braces>=0\.30.*FAIL.*|.*FAIL.*copies_braces>=0\.30.*"
        ]
    )


def test_bad_gate_is_a_usage_error(suite: Suite) -> None:
    result = suite.run("--gate=copies_braces>=1.5")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.re_match_lines(
        [r".*--gate 'copies_braces>=1\.5': the threshold must be between 0 and 1.*"]
    )


def test_max_regression_needs_a_baseline(suite: Suite) -> None:
    result = suite.run("--max-regression=preserves_keys:0.05")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.re_match_lines([r".*--max-regression needs a baseline.*"])


def test_a_broken_baseline_is_a_usage_error(suite: Suite) -> None:
    (suite.pytester.path / "bad.json").write_text("{not json")
    result = suite.run("--baseline=bad.json")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.re_match_lines([r".*--baseline: .*bad\.json.*"])


def test_gates_from_the_ini_file(suite: Suite) -> None:
    with FakeOllama(reply=plain_answer) as fake:
        suite.pytester.makeini(
            "[pytest]\nmimicry_gate =\n    copies_braces<=0.5\n    truncates<=0.5\n"
        )
        result = suite.run(*_args(fake, "--samples=5", "--report-json=r.json"))

    assert result.ret == 0
    assert [g["gate"] for g in suite.report()["gates"]] == ["copies_braces<=0.5", "truncates<=0.5"]


def test_repeats_ask_each_sample_with_new_seeds_and_cluster_the_interval(suite: Suite) -> None:
    with FakeOllama(reply=imitating_reply) as fake:
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
        seeds = sorted({b["options"]["seed"] for b in fake.chat_bodies})

    assert result.ret == 0, result.stdout.str()
    assert fake.requests["/api/chat"] == 12
    assert seeds == [42, 43, 44]
    report = suite.report()
    assert len(report["samples"]) == 12
    row = report["behaviors"]["rewrites_prompt"]
    assert row["n"] == 12
    assert row["clusters"] == 4
    assert row["ci_method"] == "cluster-robust"
    assert report["gates"][0]["passed"] is True
    assert json.dumps(report)  # plain JSON throughout
