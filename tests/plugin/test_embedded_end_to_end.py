"""The whole path on the real model: the eval suite, the embedded llama.cpp server, SmolLM2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mimicry.embedded import BUNDLED_MODEL_NAME, embedded_available
from tests.conftest import REAL_ROWS_JSONL
from tests.plugin.conftest import Suite

pytestmark = [
    pytest.mark.embedded,
    pytest.mark.skipif(
        embedded_available() is not None, reason=f"embedded model: {embedded_available()}"
    ),
]

# The three shortest real rows (340 to 727 characters) keep CI within a minute or two.
SHORT_IDS = "887722,1594211,1404102"


def _children_serving(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` and that run the embedded server."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"mimicry.serve" in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("xdist", [False, True], ids=["no-xdist", "n2"])
def test_evals_run_on_the_real_embedded_model(suite: Suite, xdist: bool) -> None:
    already = set(_children_serving(os.getpid()))  # e.g. another test module's server
    result = suite.run(
        "--backend=embedded",
        f"--dataset={REAL_ROWS_JSONL}",
        f"--sample-ids={SHORT_IDS}",
        "--num-predict=48",
        "--report-json=r.json",
        xdist=xdist,
    )

    assert result.ret == 0, result.stdout.str()
    result.stdout.re_match_lines(
        [rf"mimicry: {BUNDLED_MODEL_NAME} via embedded at http://127\.0\.0\.1:\d+, 3 samples.*"]
    )
    report = suite.report()
    run = report["run"]
    assert run["backend"] == "embedded"
    assert run["model"] == BUNDLED_MODEL_NAME
    assert len(run["model_digest"]) == 64
    assert run["complete"] is True
    assert any("not qwen2:0.5b's" in note for note in run["notes"])
    assert len(report["samples"]) == 3
    for sample in report["samples"]:
        assert sample["status"] == "ok"
        assert sample["eval_count"] > 0  # the reply came from the model
        assert sample["prompt_eval_count"] > 50
        assert sample["eval_duration"] > 0
        assert sample["reply"]
    judged_or_null = {name: row["n"] + row["null"] for name, row in report["behaviors"].items()}
    assert judged_or_null == dict.fromkeys(judged_or_null, 3)
    assert set(_children_serving(os.getpid())) <= already  # the run's server is gone


def test_the_server_is_gone_after_a_failing_gate(suite: Suite) -> None:
    already = set(_children_serving(os.getpid()))
    result = suite.run(
        "--backend=embedded",
        f"--dataset={REAL_ROWS_JSONL}",
        "--sample-ids=887722",
        "--num-predict=16",
        "--gate=copies_braces>=1",
    )

    assert result.ret == 1
    assert set(_children_serving(os.getpid())) <= already


def test_the_bundled_model_judges_answers_prompt(suite: Suite) -> None:
    result = suite.run(
        "--backend=embedded",
        f"--judge-model={BUNDLED_MODEL_NAME}",
        f"--dataset={REAL_ROWS_JSONL}",
        f"--sample-ids={SHORT_IDS}",
        "--num-predict=48",
        "--report-json=r.json",
        "-rA",
    )

    assert result.ret == 0, result.stdout.str()
    report = suite.report()
    run = report["run"]
    assert run["judge_model"] == BUNDLED_MODEL_NAME
    assert run["judge_model_info"]["digest"] == run["model_digest"]
    row = report["behaviors"]["answers_prompt"]
    assert row["n"] + row["null"] == 3
    assert row["errors"] == 0
    for sample in report["samples"]:
        explanation = sample["explanations"]["answers_prompt"]
        # the verdict is the judge's reading of its own reply, quoted in the explanation
        assert explanation.startswith(("the judge says the reply", "not judged: the judge said"))
