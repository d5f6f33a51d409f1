"""``python -m mimicry compare|report``: output and exit status, run as CI runs it (subprocess)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mimicry.cli import EXIT_GATE_FAILED, EXIT_OK, EXIT_USAGE, EXIT_WRITE_FAILED, main
from tests.core.test_compare import make_report, make_sample, report_from_flags


def _write(path: Path, report: dict[str, Any]) -> Path:
    with path.open("w", encoding="utf-8", errors="surrogatepass") as fh:
        json.dump(report, fh, ensure_ascii=True)
    return path


def _mimicry(
    *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "mimicry", *map(str, args)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        check=False,
    )


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    """A baseline and a current report where preserves_keys dropped significantly."""
    base = report_from_flags(
        {"preserves_keys": [True] * 20 + [False] * 20, "copies_braces": [True] * 40}
    )
    cur = report_from_flags(
        {
            "preserves_keys": [False] * 10 + [True] * 10 + [True] + [False] * 19,
            "copies_braces": [True] * 40,
        },
        model="qwen2.5:0.5b",
    )
    return _write(tmp_path / "baseline.json", base), _write(tmp_path / "current.json", cur)


def test_compare_identical_runs_passes_its_gates(runs: tuple[Path, Path]) -> None:
    base, _ = runs

    result = _mimicry(
        "compare",
        base,
        base,
        "--max-regression",
        "preserves_keys:0.05",
        "--gate",
        "copies_braces>=0.9",
    )

    assert result.returncode == EXIT_OK, result.stderr
    assert "comparison: baseline qwen2:0.5b" in result.stdout
    assert "gates: 2 passed, 0 failed" in result.stdout
    assert result.stderr == ""


def test_compare_fails_on_a_significant_regression_with_the_evidence(
    runs: tuple[Path, Path],
) -> None:
    base, cur = runs

    result = _mimicry("compare", base, cur, "--max-regression", "preserves_keys:0.05")

    assert result.returncode == EXIT_GATE_FAILED, result.stderr
    out = result.stdout
    assert "note: different models: 'qwen2:0.5b' in the baseline, 'qwen2.5:0.5b' now" in out
    assert "gates: 0 passed, 1 failed" in out
    failed = next(line for line in out.splitlines() if "FAILED" in line)
    assert failed.startswith(
        "  FAILED preserves_keys:0.05: preserves_keys fell from 50.0% to 27.5%"
    )
    assert "McNemar exact p = 0.0117" in failed
    assert "flipped pass->fail: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in failed


def test_compare_passes_a_failing_move_when_alpha_is_stricter(runs: tuple[Path, Path]) -> None:
    base, cur = runs

    result = _mimicry(
        "compare", base, cur, "--max-regression", "preserves_keys:0.05", "--alpha", "0.01"
    )

    assert result.returncode == EXIT_OK
    assert "not significant (p >= alpha 0.01)" in result.stdout


def test_report_writes_markdown_html_and_the_step_summary(
    runs: tuple[Path, Path], tmp_path: Path
) -> None:
    _, cur = runs
    summary = tmp_path / "step-summary.md"
    summary.write_text("before\n", encoding="utf-8")

    result = _mimicry(
        "report",
        cur,
        "--gate",
        "preserves_keys<=0.2",
        "--md",
        tmp_path / "out" / "summary.md",
        "--html",
        tmp_path / "out" / "report.html",
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )

    assert result.returncode == EXIT_GATE_FAILED, result.stderr
    assert (
        "FAILED preserves_keys<=0.2: rate 27.5% is above the threshold 20.0% by 7.5 points"
        in result.stdout
    )
    markdown = (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    assert "### Behaviors" in markdown
    assert summary.read_text(encoding="utf-8") == "before\n" + markdown
    assert (tmp_path / "out" / "report.html").read_text(encoding="utf-8").count("<svg") == 2


USAGE_ERRORS = [
    (
        ("report", "{cur}", "--gate", "copies_braces>=1.5"),
        "--gate 'copies_braces>=1.5': the threshold must be between 0 and 1",
    ),
    (
        ("compare", "{cur}", "{cur}", "--max-regression", "preserves-keys:0.05"),
        "'preserves-keys' is not a behavior name",
    ),
    (("compare", "{cur}", "{cur}", "--max-regression", "truncates:0.05:sideways"), "'sideways'"),
    (("compare", "{cur}", "{cur}", "--alpha", "2"), "--alpha '2'"),
    (("report", "{missing}"), "cannot read report"),
    (("report", "{bad}"), "is not valid JSON"),
    (("compare", "{cur}"), "the following arguments are required: current"),
    (("report", "{cur}", "--max-regression", "truncates:0.1"), "unrecognized arguments"),
    ((), "the following arguments are required: command"),
]


def _usage_args(args: tuple[str, ...], cur: Path, tmp_path: Path) -> list[str]:
    bad = tmp_path / "bad.json"
    bad.write_text("{oops", encoding="utf-8")
    paths = {"cur": str(cur), "missing": str(tmp_path / "missing.json"), "bad": str(bad)}
    return [a.format(**paths) for a in args]


@pytest.mark.parametrize(("args", "message"), [USAGE_ERRORS[0], USAGE_ERRORS[3], USAGE_ERRORS[-1]])
def test_usage_errors_exit_4_with_one_line(
    runs: tuple[Path, Path], tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = _mimicry(*_usage_args(args, runs[1], tmp_path))

    assert result.returncode == EXIT_USAGE
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("mimicry: error: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_help_exits_0() -> None:
    result = _mimicry("compare", "--help")

    assert result.returncode == 0
    assert "--max-regression" in result.stdout


# -- in process: the same rules, faster -----------------------------------------------------------


def _main(*args: str | Path, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main([str(a) for a in args], stdout=out, stderr=err, environ=environ or {})
    return status, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(("args", "message"), USAGE_ERRORS)
def test_every_usage_error_is_one_line_and_exit_4(
    runs: tuple[Path, Path], tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    status, out, err = _main(*_usage_args(args, runs[1], tmp_path))

    assert status == EXIT_USAGE
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("mimicry: error: ")
    assert message in err


#: The behaviors of the reports made by ``report_from_flags`` (every built-in one).
MEASURED = "copies_braces, preserves_keys, rewrites_prompt, truncates, changes_id"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("report", "{cur}", "--gate", "copies_brace>=0.5"),
            "  FAILED copies_brace>=0.5: 'copies_brace' was not measured in this run "
            f"(measured: {MEASURED}); did you mean 'copies_braces'?",
        ),
        (
            ("compare", "{cur}", "{cur}", "--max-regression", "preserve_keys:0.05"),
            "  FAILED preserve_keys:0.05: 'preserve_keys' was not measured in both runs "
            f"(measured: {MEASURED}); did you mean 'preserves_keys'?",
        ),
    ],
)
def test_a_gate_on_an_unmeasured_behavior_fails_and_suggests_the_name(
    runs: tuple[Path, Path], tmp_path: Path, args: tuple[str, ...], line: str
) -> None:
    # behavior names are open (a user's own tests add behaviors): a name is checked against the
    # behaviors the report measured, when the gate is evaluated, not when it is parsed
    status, out, err = _main(*_usage_args(args, runs[1], tmp_path))

    assert status == EXIT_GATE_FAILED
    assert err == ""
    assert line in out.splitlines()
    assert "gates: 0 passed, 1 failed" in out


def test_a_run_with_failed_samples_but_passing_gates_exits_0(tmp_path: Path) -> None:
    report = _write(tmp_path / "r.json", report_from_flags({"truncates": [False, False, True]}))

    status, out, _ = _main("report", report, "--gate", "truncates<=0.5")

    assert status == EXIT_OK
    assert "truncates" in out
    assert "33.3%" in out


def test_a_regression_gate_on_the_selection_change_is_reported(tmp_path: Path) -> None:
    base = _write(
        tmp_path / "b.json", make_report([make_sample(i, True, index=i) for i in range(5)])
    )
    cur = _write(
        tmp_path / "c.json", make_report([make_sample(i, True, index=i) for i in range(3, 8)])
    )

    status, out, _ = _main("compare", base, cur, "--max-regression", "truncates:0.1")

    assert status == EXIT_OK
    assert "WARNING: the runs judged different samples: 2 in both, 3 only in the baseline" in out


def test_an_unwritable_output_exits_73(runs: tuple[Path, Path], tmp_path: Path) -> None:
    _, cur = runs
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")

    status, _, err = _main("report", cur, "--md", blocker / "summary.md")

    assert status == EXIT_WRITE_FAILED
    assert err.startswith("mimicry: error: could not write a report:")


def test_hostile_model_names_do_not_reach_the_terminal_raw(tmp_path: Path) -> None:
    report = _write(
        tmp_path / "r.json", make_report([make_sample(1, True)], model="m\x1b[2J\udc80")
    )

    result = _mimicry("compare", report, report)

    assert result.returncode == EXIT_OK, result.stderr
    assert "\x1b" not in result.stdout
    assert "m\\x1b[2J\\udc80" in result.stdout


def test_the_command_imports_neither_pytest_nor_ollama_nor_matplotlib_until_needed() -> None:
    code = (
        "import sys\n"
        "import mimicry.cli, mimicry.core.compare, mimicry.core.gates\n"
        "import mimicry.reports.markdown, mimicry.reports.html\n"
        "names = ('pytest', '_pytest', 'ollama', 'matplotlib')\n"
        "bad = sorted(m for m in names if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert out.stdout.strip() == ""
