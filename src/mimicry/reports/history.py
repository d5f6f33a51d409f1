"""The trend across runs: each behavior's rate with its 95% interval, run after run, and the
same gates as ``report`` and ``compare`` evaluated on every run (``python -m mimicry history``).

Runs are ordered by their start time (``run.started_at``; a report without one comes last, in
the order given) and labeled by model (with a short digest when one tag names several weights)
and start date. Threshold gates (``--gate``) are evaluated on each run; regression gates
(``--max-regression``) on each run paired with the one before it (the first run has none). The
exit status follows the newest run, as a CI job gating the latest model swap needs.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mimicry.core.compare import RateEstimate, compare_reports, printable
from mimicry.core.gates import Gate, GateOutcome, ThresholdGate, evaluate_gates
from mimicry.reports import behavior_names, behavior_rows, completeness, interval, pct


@dataclass(frozen=True)
class HistoryRun:
    """One report in the history: where it came from, its start time and its label."""

    source: str
    report: Mapping[str, Any]
    started: datetime | None
    label: str

    @property
    def model(self) -> str:
        return str((self.report.get("run") or {}).get("model") or "?")

    @property
    def complete(self) -> bool:
        return (self.report.get("run") or {}).get("complete") is not False


def order_runs(reports: Sequence[tuple[str, Mapping[str, Any]]]) -> list[HistoryRun]:
    """The reports as runs, oldest first, each labeled (see the module docstring)."""
    timed = [(source, report, _started(report)) for source, report in reports]
    # stable: equal or missing start times keep the order given; missing ones go last
    timed.sort(key=lambda item: (item[2] is None, item[2] or datetime.min.replace(tzinfo=None)))
    digests: dict[str, set[str]] = {}
    for _, report, _ in timed:
        run = report.get("run") or {}
        digests.setdefault(str(run.get("model")), set()).add(str(run.get("model_digest") or ""))
    labels: list[str] = []
    for _, report, started in timed:
        run = report.get("run") or {}
        model = str(run.get("model") or "?")
        label = model
        if len(digests.get(model, ())) > 1 and run.get("model_digest"):
            label += f" {_short_digest(run['model_digest'])}"
        label += f" {started.date().isoformat()}" if started is not None else ""
        labels.append(label)
    seen: dict[str, int] = {}
    runs = []
    for (source, report, started), label in zip(timed, labels, strict=True):
        count = labels.count(label)
        if count > 1:
            seen[label] = seen.get(label, 0) + 1
            label = f"{label} #{seen[label]}"
        runs.append(HistoryRun(source, report, started, label))
    return runs


def _started(report: Mapping[str, Any]) -> datetime | None:
    text = (report.get("run") or {}).get("started_at")
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    # naive times are read as UTC, so that they sort with aware ones
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).replace(tzinfo=None)


def _short_digest(digest: object) -> str:
    text = str(digest).removeprefix("sha256:")
    return text[:12]


def history_behaviors(runs: Sequence[HistoryRun]) -> list[str]:
    """Every behavior any run measured, in the order first seen."""
    names: dict[str, None] = {}
    for run in runs:
        for name in behavior_names(run.report):
            names[name] = None
    return list(names)


def estimates(runs: Sequence[HistoryRun]) -> dict[str, list[RateEstimate | None]]:
    """Per behavior, each run's rate and interval (None where the run did not measure it)."""
    table: dict[str, list[RateEstimate | None]] = {}
    for name in history_behaviors(runs):
        column: list[RateEstimate | None] = []
        for run in runs:
            rows = behavior_rows(run.report)
            column.append(RateEstimate.from_row(rows[name]) if name in rows else None)
        table[name] = column
    return table


def evaluate_history_gates(
    runs: Sequence[HistoryRun], gates: Sequence[Gate]
) -> list[list[GateOutcome | None]]:
    """Per gate, its outcome on each run: threshold gates on the run, regression gates on the
    run paired with the one before it (None for the first run)."""
    table: list[list[GateOutcome | None]] = [[] for _ in gates]
    previous: HistoryRun | None = None
    for run in runs:
        comparison = compare_reports(previous.report, run.report) if previous is not None else None
        for row, gate in zip(table, gates, strict=True):
            if isinstance(gate, ThresholdGate) or comparison is not None:
                row.append(evaluate_gates([gate], run.report, comparison)[0])
            else:
                row.append(None)
        previous = run
    return table


def render_history(
    runs: Sequence[HistoryRun],
    gates: Sequence[Gate] = (),
    outcomes: Sequence[Sequence[GateOutcome | None]] = (),
) -> list[str]:
    """The terminal table: the runs, each behavior's rate per run, then the gates per run."""
    lines = [f"history of {len(runs)} run(s), oldest first"]
    width = max([10, *(len(printable(r.label, 60)) + 2 for r in runs)])
    lines.append(f"{'run':<5}{'label':<{width}}{'samples':>9}  {'complete':<9}source")
    for number, run in enumerate(runs, 1):
        samples = len(run.report.get("samples") or [])
        state = "yes" if run.complete else "NO"
        lines.append(
            f"{number:<5}{printable(run.label, 60):<{width}}{samples:>9}  {state:<9}"
            f"{printable(run.source, 120)}"
        )
    for number, run in enumerate(runs, 1):
        reason = completeness(run.report)
        if reason is not None:
            lines.append(f"  run {number} is INCOMPLETE: {printable(reason, 300)}")
    table = estimates(runs)
    name_width = max([18, *(len(printable(n, 40)) + 2 for n in table)])
    lines.append("")
    lines.append(
        f"{'behavior':<{name_width}}{'run':>4}{'n':>8}{'rate':>9}  {'95% CI':<17}"
        f"{'vs previous':>12}"
    )
    for name, column in table.items():
        previous: float | None = None
        for number, estimate in enumerate(column, 1):
            label = printable(name, 40) if number == 1 else ""
            if estimate is None:
                lines.append(f"{label:<{name_width}}{number:>4}{'':>8}{'not measured':>9}")
                previous = None
                continue
            change = (
                f"{(estimate.rate - previous) * 100:+.1f}"
                if estimate.rate is not None and previous is not None
                else ""
            )
            lines.append(
                f"{label:<{name_width}}{number:>4}{estimate.n:>8}{pct(estimate.rate):>9}  "
                f"{interval(estimate.ci95):<17}{change:>12}"
            )
            previous = estimate.rate
    if gates:
        lines.append("")
        gate_width = max([12, *(len(printable(g.text, 50)) + 2 for g in gates)])
        lines.append(
            f"{'gate':<{gate_width}}"
            + "".join(f"{'run ' + str(i):>9}" for i in range(1, len(runs) + 1))
        )
        for gate, row in zip(gates, outcomes, strict=True):
            cells = "".join(
                f"{'-' if o is None else 'passed' if o.passed else 'FAILED':>9}" for o in row
            )
            lines.append(f"{printable(gate.text, 50):<{gate_width}}{cells}")
    return lines


def render_history_html(
    runs: Sequence[HistoryRun],
    gates: Sequence[Gate] = (),
    outcomes: Sequence[Sequence[GateOutcome | None]] = (),
) -> str:
    """One self-contained page (no script): the runs, a chart of each behavior's rate with its
    interval across runs, the rates table and the gates per run."""
    from mimicry.reports.html import _CSP, _STYLE, _figure, esc

    csp = _CSP.format(script="'none'")
    table = estimates(runs)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>mimicry history: {len(runs)} runs</title><style>{_STYLE}</style></head><body>",
        f"<h1>mimicry history: {len(runs)} run(s)</h1>",
        "<p>Each behavior's rate with its 95% interval, run after run (oldest first, by start "
        "time).</p>",
    ]
    for number, run in enumerate(runs, 1):
        reason = completeness(run.report)
        if reason is not None:
            parts.append(
                f'<div class="warning"><strong>Run {number} ({esc(run.label)}) is INCOMPLETE:'
                f"</strong> {esc(reason, 600)}</div>"
            )
    parts.append(
        "<table><tr><th>run</th><th>label</th><th>model digest</th><th>started</th>"
        "<th>samples</th><th>complete</th><th>report</th></tr>"
    )
    for number, run in enumerate(runs, 1):
        info = run.report.get("run") or {}
        parts.append(
            f"<tr><td class=num>{number}</td><td>{esc(run.label)}</td>"
            f"<td>{esc(_short_digest(info.get('model_digest') or '-'))}</td>"
            f"<td>{esc(info.get('started_at') or '-')}</td>"
            f"<td class=num>{len(run.report.get('samples') or [])}</td>"
            f"<td>{'yes' if run.complete else '<strong>NO</strong>'}</td>"
            f"<td>{esc(run.source, 200)}</td></tr>"
        )
    parts.append("</table>")
    if table and runs:
        parts.append(
            _figure(
                _history_chart(runs, table),
                "Each behavior's rate per run with its 95% interval (Wilson; cluster-robust "
                "with repeats); a gap where a run did not measure the behavior.",
            )
        )
    parts.append("<h2>Rates</h2><table><tr><th>behavior</th>")
    parts += [f"<th>{number}. {esc(run.label)}</th>" for number, run in enumerate(runs, 1)]
    parts.append("</tr>")
    for name, column in table.items():
        cells = "".join(
            "<td>not measured</td>"
            if e is None
            else f"<td>{pct(e.rate)} {interval(e.ci95)} (n={e.n})</td>"
            for e in column
        )
        parts.append(f"<tr><td>{esc(name)}</td>{cells}</tr>")
    parts.append("</table>")
    if gates:
        parts.append("<h2>Gates</h2><table><tr><th>gate</th>")
        parts += [f"<th>{number}</th>" for number in range(1, len(runs) + 1)]
        parts.append("</tr>")
        for gate, row in zip(gates, outcomes, strict=True):
            cells = "".join(
                "<td>-</td>"
                if o is None
                else f'<td class="{"passed" if o.passed else "failed"}" title="'
                f'{html.escape(printable(o.message, 1000), quote=True)}">'
                f"{'passed' if o.passed else 'failed'}</td>"
                for o in row
            )
            parts.append(f"<tr><td>{esc(gate.text)}</td>{cells}</tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _history_chart(
    runs: Sequence[HistoryRun], table: Mapping[str, Sequence[RateEstimate | None]]
) -> str:
    from mimicry.reports.html import _BEHAVIOR_COLORS, _new_figure, _plain_label, _to_svg

    names = list(table)
    columns = 2 if len(names) > 1 else 1
    rows = (len(names) + columns - 1) // columns
    fig = _new_figure(9.0, 0.6 + 2.3 * rows)
    axes = fig.subplots(rows, columns, squeeze=False, sharex=True)
    xs = list(range(len(runs)))
    for number, name in enumerate(names):
        ax = axes[number // columns][number % columns]
        points = [
            (x, e)
            for x, e in zip(xs, table[name], strict=True)
            if e is not None and e.rate is not None
        ]
        color = _BEHAVIOR_COLORS[number % len(_BEHAVIOR_COLORS)]
        if points:
            values = [e.rate * 100 for _, e in points if e.rate is not None]
            below = [
                max(0.0, (e.rate - e.ci95[0]) * 100) if e.ci95 and e.rate is not None else 0.0
                for _, e in points
            ]
            above = [
                max(0.0, (e.ci95[1] - e.rate) * 100) if e.ci95 and e.rate is not None else 0.0
                for _, e in points
            ]
            ax.errorbar(
                [x for x, _ in points],
                values,
                yerr=[below, above],
                fmt="-o",
                capsize=3,
                markersize=4,
                color=color,
            )
        ax.set_title(_plain_label(name), fontsize=9)
        ax.set_ylim(-3, 103)
        ax.set_xlim(-0.5, len(runs) - 0.5)
        ax.grid(axis="y", alpha=0.3)
        ax.set_ylabel("rate (%)", fontsize=8)
    for extra in range(len(names), rows * columns):
        axes[extra // columns][extra % columns].set_visible(False)
    labels = [_plain_label(f"{number}. {run.label}") for number, run in enumerate(runs, 1)]
    for ax in axes[-1]:
        ax.set_xticks(xs, labels, rotation=30, ha="right", fontsize=7)
    if len(names) % columns and rows > 1:
        axes[-2][-1].tick_params(labelbottom=True)
        axes[-2][-1].set_xticks(xs, labels, rotation=30, ha="right", fontsize=7)
    return _to_svg(fig, "history", "Each behavior's rate across runs")
