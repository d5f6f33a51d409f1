"""``python -m mimicry history``: three reports in any order, a table, an HTML chart, gates."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mimicry.cli import EXIT_GATE_FAILED, EXIT_OK, EXIT_USAGE, main
from tests.reports.factory import make_report, make_sample


def _write(path: Path, report: dict[str, Any]) -> Path:
    with path.open("w", encoding="utf-8", errors="surrogatepass") as fh:
        json.dump(report, fh, ensure_ascii=True)
    return path


def _run(model: str, started: str, keeps: int, **kwargs: Any) -> dict[str, Any]:
    """40 samples; the first ``keeps`` preserve the keys."""
    samples = [
        make_sample(i, {"preserves_keys": i < keeps, "copies_braces": True}, index=i)
        for i in range(40)
    ]
    return make_report(samples, model=model, started_at=started, **kwargs)


@pytest.fixture
def three(tmp_path: Path) -> list[Path]:
    """Three runs written out of order: qwen2 in January and February, qwen2.5 in March,
    where preserves_keys drops from 30 to 28 to 12 of 40."""
    return [
        _write(tmp_path / "march.json", _run("qwen2.5:0.5b", "2026-03-01T00:00:00+00:00", 12)),
        _write(tmp_path / "january.json", _run("qwen2:0.5b", "2026-01-01T00:00:00+00:00", 30)),
        _write(tmp_path / "february.json", _run("qwen2:0.5b", "2026-02-01T09:00:00+01:00", 28)),
    ]


def _main(*args: str | Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main([str(a) for a in args], stdout=out, stderr=err, environ={})
    return status, out.getvalue(), err.getvalue()


def test_history_orders_runs_by_start_time_and_prints_each_rate(
    three: list[Path], tmp_path: Path
) -> None:
    status, out, err = _main("history", *three, "--html", tmp_path / "history.html")

    assert status == EXIT_OK, err
    lines = out.splitlines()
    assert lines[0] == "history of 3 run(s), oldest first"
    assert re.match(r"1\s+qwen2:0.5b 2026-01-01\s+40\s+yes\s+.*january.json", lines[2])
    assert re.match(r"2\s+qwen2:0.5b 2026-02-01\s+40\s+yes\s+.*february.json", lines[3])
    assert re.match(r"3\s+qwen2.5:0.5b 2026-03-01\s+40\s+yes\s+.*march.json", lines[4])
    first = next(i for i, line in enumerate(lines) if line.startswith("preserves_keys"))
    keys = lines[first : first + 3]
    assert re.match(r"preserves_keys\s+1\s+40\s+75.0%\s+\[59.8%, 85.8%\]\s*$", keys[0])
    assert re.match(r"\s+2\s+40\s+70.0%\s+\[54.6%, 81.9%\]\s+-5.0$", keys[1])
    assert re.match(r"\s+3\s+40\s+30.0%\s+\[18.1%, 45.4%\]\s+-40.0$", keys[2])
    page = (tmp_path / "history.html").read_text(encoding="utf-8")
    assert page.count("<svg") == 1
    assert "<script" not in page
    assert "default-src 'none'" in page
    assert page.index("1. qwen2:0.5b 2026-01-01") < page.index("3. qwen2.5:0.5b 2026-03-01")


def test_history_gates_every_run_and_exits_on_the_newest(three: list[Path]) -> None:
    status, out, _ = _main(
        "history", *three, "--gate", "preserves_keys>=0.5", "--max-regression", "preserves_keys:0.1"
    )

    assert status == EXIT_GATE_FAILED
    assert re.search(r"preserves_keys>=0.5\s+passed\s+passed\s+FAILED", out)
    assert re.search(r"preserves_keys:0.1\s+-\s+passed\s+FAILED", out)
    assert "gates: 0 passed, 2 failed (newest run)" in out
    assert "FAILED preserves_keys:0.1: preserves_keys fell from 70.0% to 30.0%" in out


def test_history_passes_when_the_newest_run_meets_its_gates(three: list[Path]) -> None:
    status, out, _ = _main("history", *three[1:], "--gate", "preserves_keys>=0.5")

    assert status == EXIT_OK
    assert "gates: 1 passed, 0 failed (newest run)" in out


def test_history_marks_an_incomplete_run_and_every_behavior(tmp_path: Path) -> None:
    partial = _run(
        "qwen2:0.5b",
        "2026-04-01T00:00:00+00:00",
        1,
        complete=False,
        incomplete_reason="interrupted",
        planned=[str(i) for i in range(100)],
    )
    path = _write(tmp_path / "partial.json", partial)

    status, out, _ = _main("history", path)

    assert status == EXIT_OK
    assert "run 1 is INCOMPLETE: interrupted: 40 of 100 planned samples have a result" in out
    for name in ("copies_braces", "preserves_keys", "truncates", "changes_id"):
        assert re.search(rf"^{name}\s+1\s+40", out, flags=re.MULTILINE), name


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--gate", "preserves_keys>=2"), "the threshold must be between 0 and 1"),
        (("--alpha", "3"), "--alpha '3'"),
        (("{missing}",), "cannot read report"),
    ],
)
def test_history_usage_errors_are_one_line_and_exit_4(
    three: list[Path], tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    filled = [a.format(missing=tmp_path / "missing.json") for a in args]

    status, out, err = _main("history", three[0], *filled)

    assert status == EXIT_USAGE
    assert out == ""
    assert err.count("\n") == 1
    assert message in err


def test_history_runs_as_documented(three: list[Path], tmp_path: Path) -> None:
    """The README's command, in a subprocess as CI runs it."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mimicry",
            "history",
            *map(str, three),
            "--html",
            str(tmp_path / "h.html"),
            "--gate",
            "copies_braces>=0.9",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == EXIT_OK, result.stderr
    assert "history of 3 run(s)" in result.stdout
    assert (tmp_path / "h.html").is_file()
