"""``python -m mimicry``: reports and comparisons of stored runs, and the detectors' calibration,
without rerunning a model.

- ``python -m mimicry compare BASELINE.json CURRENT.json [--gate G]... [--max-regression R]...
  [--alpha A] [--md PATH] [--html PATH]``
- ``python -m mimicry report CURRENT.json [--gate G]... [--md PATH] [--html PATH]``
- ``python -m mimicry calibrate LABELS.jsonl... [--dataset ID_OR_PATH] [--min-agreement A]
  [--json PATH]``
- ``python -m mimicry history REPORT.json... [--gate G]... [--max-regression R]... [--alpha A]
  [--html PATH]``

``compare`` and ``report`` print the same terminal section as the pytest plugin and share its exit
statuses (:mod:`mimicry.exitcodes`): 0 when every gate passes (samples that did not show a
behavior are measurements, not failures), 1 when a gate fails, 73 when an output file cannot be
written, 4 for a usage error (a bad gate string, an unreadable or invalid report), always as one
line on stderr, never a traceback. ``--md`` also appends the summary to ``$GITHUB_STEP_SUMMARY``
when that variable is set. ``calibrate`` prints the detectors' agreement with hand labels and
exits 1 when a behavior's agreement is below ``--min-agreement``. ``history`` prints each
behavior's rate with its interval across runs (ordered by start time), writes the chart with
``--html``, evaluates the same gates on every run (regression gates against the run before) and
exits 1 when a gate fails on the newest run.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn, TextIO

from mimicry.core.compare import (
    Comparison,
    ReportError,
    compare_reports,
    load_report,
    render_comparison,
)
from mimicry.core.gates import (
    DEFAULT_ALPHA,
    REGRESSION_FORMS,
    THRESHOLD_FORMS,
    Gate,
    GateError,
    GateOutcome,
    evaluate_gates,
    parse_alpha,
    parse_gate,
    parse_regression,
    render_gate_outcomes,
)
from mimicry.exitcodes import ExitStatus

EXIT_OK = int(ExitStatus.OK)
EXIT_GATE_FAILED = int(ExitStatus.GATE_FAILED)
EXIT_WRITE_FAILED = int(ExitStatus.REPORT_NOT_WRITTEN)
EXIT_USAGE = int(ExitStatus.USAGE_ERROR)


class UsageError(Exception):
    """A command line that cannot run; the message is the one line to print."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as :class:`UsageError` instead of exiting with 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m mimicry`` argument parser."""
    parser = _Parser(
        prog="python -m mimicry",
        description="Compare and report stored mimicry runs (JSON reports from --report-json).",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    compare = commands.add_parser(
        "compare",
        help="compare a run with a baseline, sample by sample",
        description="Paired comparison of two reports on the samples judged in both.",
    )
    compare.add_argument("baseline", help="the baseline report (JSON)")
    compare.add_argument("current", help="the current report (JSON)")
    _add_gate_options(compare)
    compare.add_argument(
        "--max-regression",
        action="append",
        default=[],
        metavar="GATE",
        help=f"fail on a significant regression: {_help(REGRESSION_FORMS)}",
    )
    compare.add_argument(
        "--alpha",
        default=str(DEFAULT_ALPHA),
        help=f"significance level of --max-regression (default {DEFAULT_ALPHA})",
    )
    report = commands.add_parser(
        "report", help="summarize one run", description="Summarize one stored report."
    )
    report.add_argument("current", help="the report (JSON)")
    _add_gate_options(report)
    calibrate = commands.add_parser(
        "calibrate",
        help="check the detectors against hand-labeled replies",
        description=(
            "Judge hand-labeled replies with the built-in detectors and print, per behavior, "
            "the agreement with the labels, Cohen's kappa, the confusion counts and every "
            "disagreement (see README, 'Calibrating the detectors', for the label format)."
        ),
    )
    calibrate.add_argument("labels", nargs="+", help="label files (JSON Lines)")
    calibrate.add_argument(
        "--dataset",
        default="sample",
        metavar="ID_OR_PATH",
        help="the dataset whose rows the labels' sample_id name (default: the bundled sample)",
    )
    calibrate.add_argument("--dataset-split", default="train", metavar="SPLIT")
    calibrate.add_argument(
        "--min-agreement",
        type=float,
        default=None,
        metavar="SHARE",
        help="exit 1 when a behavior agrees with the labels less often than this (e.g. 0.98)",
    )
    calibrate.add_argument("--json", metavar="PATH", help="write the figures as JSON here")
    calibrate.add_argument(
        "--judge-model",
        metavar="NAME",
        help="also measure answers_prompt as this judge model decides it (asked once per reply, "
        "cached by its digest)",
    )
    calibrate.add_argument(
        "--ollama-host",
        metavar="URL",
        help="the judge model's server (default: $OLLAMA_HOST, else 127.0.0.1:11434, else the "
        "embedded server with the bundled model)",
    )
    history = commands.add_parser(
        "history",
        help="each behavior's rate across runs",
        description=(
            "Each behavior's rate with its 95%% interval across runs, ordered by start time and "
            "labeled by model; --gate on every run, --max-regression on every run against the "
            "one before it. The exit status follows the newest run."
        ),
    )
    history.add_argument("reports", nargs="+", help="reports (JSON), in any order")
    history.add_argument(
        "--gate",
        action="append",
        default=[],
        metavar="GATE",
        help=f"a threshold every run is checked against: {_help(THRESHOLD_FORMS)}",
    )
    history.add_argument(
        "--max-regression",
        action="append",
        default=[],
        metavar="GATE",
        help=f"a significant move against the run before: {_help(REGRESSION_FORMS)}",
    )
    history.add_argument(
        "--alpha",
        default=str(DEFAULT_ALPHA),
        help=f"significance level of --max-regression (default {DEFAULT_ALPHA})",
    )
    history.add_argument("--html", metavar="PATH", help="write the chart (one HTML file) here")
    return parser


def _add_gate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gate",
        action="append",
        default=[],
        metavar="GATE",
        help=f"fail unless the current run meets a threshold: {_help(THRESHOLD_FORMS)}",
    )
    parser.add_argument("--md", metavar="PATH", help="write the Markdown summary here")
    parser.add_argument("--html", metavar="PATH", help="write the HTML report (with plots) here")


def _help(text: str) -> str:
    return text.replace("%", "%%")  # argparse %-formats help strings


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run the command line; return the exit status."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        err.write(f"mimicry: error: {exc}\n")
        return EXIT_USAGE
    if args.command == "calibrate":
        return _calibrate(args, out, err)
    if args.command == "history":
        return _history(args, out, err)
    try:
        gates = _parse_gates(args)
        current = load_report(args.current)
        baseline = load_report(args.baseline) if args.command == "compare" else None
    except (UsageError, GateError, ReportError) as exc:
        err.write(f"mimicry: error: {exc}\n")
        return EXIT_USAGE
    comparison = compare_reports(baseline, current) if baseline is not None else None
    try:
        outcomes = evaluate_gates(gates, current, comparison)
    except GateError as exc:
        err.write(f"mimicry: error: {exc}\n")
        return EXIT_USAGE
    for line in render_summary(current, comparison, outcomes):
        out.write(line + "\n")
    try:
        _write_outputs(args, current, baseline, comparison, outcomes, out, environ)
    except OSError as exc:
        err.write(f"mimicry: error: could not write a report: {exc}\n")
        return EXIT_WRITE_FAILED
    return EXIT_GATE_FAILED if any(not o.passed for o in outcomes) else EXIT_OK


def _calibrate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from mimicry.calibrate import CalibrationError, calibrate_files, render_calibration

    if args.min_agreement is not None and not 0 <= args.min_agreement <= 1:
        err.write(
            f"mimicry: error: --min-agreement {args.min_agreement!r}: must be between 0 and 1\n"
        )
        return EXIT_USAGE
    judge = None
    try:
        if args.judge_model:
            from mimicry.calibrate import JudgeModel

            judge = JudgeModel(args.judge_model, host=args.ollama_host)
        results = calibrate_files(
            args.labels, dataset=args.dataset, split=args.dataset_split, judge=judge
        )
    except CalibrationError as exc:
        err.write(f"mimicry: error: {exc}\n")
        return EXIT_USAGE
    finally:
        if judge is not None:
            judge.close()
    for line in render_calibration(results):
        out.write(printable_line(line) + "\n")
    if args.json:
        import json
        from pathlib import Path

        try:
            Path(args.json).write_text(
                json.dumps({name: a.to_dict() for name, a in results.items()}, indent=1) + "\n"
            )
        except OSError as exc:
            err.write(f"mimicry: error: could not write --json {args.json!r}: {exc}\n")
            return EXIT_WRITE_FAILED
    if args.min_agreement is not None:
        low = [
            name
            for name, result in results.items()
            if result.rate is not None and result.rate < args.min_agreement
        ]
        if low:
            out.write(f"agreement below {args.min_agreement:.1%} for: {', '.join(low)}\n")
            return EXIT_GATE_FAILED
    return EXIT_OK


def _history(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from mimicry.reports.history import (
        evaluate_history_gates,
        order_runs,
        render_history,
        render_history_html,
    )

    try:
        alpha = parse_alpha(args.alpha)
        gates: list[Gate] = [parse_gate(text) for text in args.gate]
        gates += [parse_regression(text, alpha=alpha) for text in args.max_regression]
        runs = order_runs([(path, load_report(path)) for path in args.reports])
    except (GateError, ReportError) as exc:
        err.write(f"mimicry: error: {exc}\n")
        return EXIT_USAGE
    outcomes = evaluate_history_gates(runs, gates)
    for line in render_history(runs, gates, outcomes):
        out.write(printable_line(line) + "\n")
    newest = [row[-1] for row in outcomes if row and row[-1] is not None]
    if newest:
        out.write("\n")
        for line in render_gate_outcomes(newest):
            out.write(f"{line} (newest run)\n" if line.startswith("gates:") else line + "\n")
    if args.html:
        from mimicry.reports.html import write_html

        try:
            page = render_history_html(runs, gates, outcomes)
            out.write(f"html: {write_html(args.html, page)}\n")
        except OSError as exc:
            err.write(f"mimicry: error: could not write --html {args.html!r}: {exc}\n")
            return EXIT_WRITE_FAILED
    return EXIT_GATE_FAILED if any(not o.passed for o in newest) else EXIT_OK


def printable_line(text: str) -> str:
    """A line with control characters escaped (newlines and tabs inside it included)."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def render_summary(
    report: Mapping[str, Any],
    comparison: Comparison | None,
    outcomes: Sequence[GateOutcome],
) -> list[str]:
    """The terminal text: the run's behavior table, the comparison, then the gate outcomes."""
    from mimicry.core.compare import printable
    from mimicry.core.report import render_table
    from mimicry.reports import run_headline

    title, headline = run_headline(report)
    lines = [f"== {printable(title)} ==", printable(headline, 300)]
    lines += [printable(line, 300) for line in render_table(report)]
    if comparison is not None:
        lines.append("")
        lines += render_comparison(comparison)
    if outcomes:
        lines.append("")
        lines += render_gate_outcomes(outcomes)
    return lines


def _parse_gates(args: argparse.Namespace) -> list[Gate]:
    gates: list[Gate] = [parse_gate(text) for text in args.gate]
    if args.command == "compare":
        alpha = parse_alpha(args.alpha)
        gates += [parse_regression(text, alpha=alpha) for text in args.max_regression]
    return gates


def _write_outputs(
    args: argparse.Namespace,
    current: Mapping[str, Any],
    baseline: Mapping[str, Any] | None,
    comparison: Comparison | None,
    outcomes: Sequence[GateOutcome],
    out: TextIO,
    environ: Mapping[str, str] | None,
) -> None:
    if args.md:
        from mimicry.reports.markdown import append_step_summary, render_markdown, write_markdown

        markdown = render_markdown(
            current, comparison=comparison, baseline=baseline, outcomes=outcomes
        )
        out.write(f"markdown: {write_markdown(args.md, markdown)}\n")
        summary = append_step_summary(markdown, environ)
        if summary is not None:
            out.write(f"markdown appended to $GITHUB_STEP_SUMMARY ({summary})\n")
    if args.html:
        from mimicry.reports.html import render_html, write_html

        page = render_html(current, comparison=comparison, baseline=baseline, outcomes=outcomes)
        out.write(f"html: {write_html(args.html, page)}\n")


def run() -> NoReturn:
    """The console entry point: :func:`main` with the process's streams, as an exit status."""
    # a report can name files or models in any script; never fail on a terminal's encoding
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader went away (`| head`): nothing more to say, and no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = EXIT_OK
    raise SystemExit(status)


if __name__ == "__main__":  # pragma: no cover - `python -m mimicry.cli`
    run()
