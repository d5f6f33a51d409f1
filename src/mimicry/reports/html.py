"""One self-contained HTML page per run: run metadata, tables, gate outcomes, flipped samples,
plots, and the sample explorer.

The plots are drawn with matplotlib (imported only when a page is rendered) and inlined as SVG;
the explorer (:mod:`mimicry.reports.explorer`) is one inline script reading compressed data
blocks. The file needs no network and no other file: it can be attached to a CI run and opened
anywhere. A Content-Security-Policy in the page allows that one script (by its hash) and forbids
every other script and every remote resource, a second line of defence behind the escaping of
every untrusted string (``html.escape`` here, ``textContent`` in the explorer).

Plots: the behavior rates with their 95% intervals; with a baseline, baseline vs current side
by side on the paired samples and the paired differences with their intervals; and the rate of
each behavior by prompt-length bucket (quantiles of ``prompt_chars``), because the original
observation was that longer prompts are imitated more.
"""

from __future__ import annotations

import html
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mimicry.core.compare import Comparison, RateEstimate, format_ids, format_p
from mimicry.core.gates import GateOutcome
from mimicry.reports import (
    EXCERPT_CHARS,
    LONG_EXCERPT_CHARS,
    MAX_FLIPPED,
    behavior_definition,
    behavior_rows,
    completeness,
    excerpt,
    flipped_samples,
    interval,
    measures,
    pct,
    points,
    points_interval,
    run_facts,
    run_headline,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Prompt-length buckets in the "rate by prompt length" plot (quantiles of prompt_chars).
LENGTH_BUCKETS = 4

_BASELINE_COLOR = "#8a8a8a"
_CURRENT_COLOR = "#1f5fa8"
_BEHAVIOR_COLORS = ("#1f5fa8", "#d9731a", "#2a9d5c", "#b03a5b", "#6b4fa0", "#8c6d1f")

# matplotlib's SVG metadata, all left out: no date (the same input gives the same page) and no
# RDF block naming remote vocabularies
_SVG_METADATA = ("Date", "Creator", "Format", "Type")
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src {script}"
_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px;
       padding: 0 1em; color: #1d1d1d; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .6em 0; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.warning { background: #fff3cd; border-left: 4px solid #d39e00; padding: .5em 1em; margin: .5em 0; }
.note { color: #555; }
.failed { color: #a1161b; font-weight: 600; } .passed { color: #1b6e2f; }
figure { margin: 1.5em 0; } figcaption { color: #555; font-size: .92em; }
figure svg { max-width: 100%; height: auto; }
pre { white-space: pre-wrap; word-break: break-all; background: #f6f6f6; padding: .5em;
      max-height: 20em; overflow: auto; margin: .3em 0; }
details summary { cursor: pointer; }
.incomplete { background: #a1161b; color: #fff; padding: .7em 1em; border-radius: 4px;
              font-size: 1.05em; margin: .8em 0; }
dl.run { display: grid; grid-template-columns: max-content 1fr; gap: .15em 1em; margin: .5em 0; }
dl.run dt { color: #555; } dl.run dd { margin: 0; overflow-wrap: anywhere; }
"""


def esc(value: object, limit: int = EXCERPT_CHARS) -> str:
    """Untrusted text for HTML: made safe, cut to ``limit`` characters, then escaped."""
    return html.escape(excerpt(value, limit) if value is not None else "-", quote=True)


@dataclass(frozen=True)
class LengthBucket:
    """Samples whose prompt length lies in ``[low, high]`` characters, with each behavior's rate."""

    low: int
    high: int
    samples: int
    rates: dict[str, RateEstimate]

    @property
    def label(self) -> str:
        return f"{self.low:,}–{self.high:,}"


def rate_by_prompt_length(
    samples: Iterable[Mapping[str, Any]], behaviors: Sequence[str], buckets: int = LENGTH_BUCKETS
) -> list[LengthBucket]:
    """Each behavior's rate in ``buckets`` prompt-length quantile buckets of the ok samples.

    Bucket edges are quantiles of ``prompt_chars``; equal edges merge, so there may be fewer
    buckets than asked. Samples without a length or with an error are left out.
    """
    import numpy as np

    rows = [
        s for s in samples if s.get("status") == "ok" and isinstance(s.get("prompt_chars"), int)
    ]
    if not rows or buckets < 1:
        return []
    lengths = np.array([s["prompt_chars"] for s in rows], dtype=float)
    edges = np.unique(np.quantile(lengths, np.linspace(0, 1, buckets + 1)))
    # inner edges split the buckets; a length equal to an edge goes to the bucket above it
    index = np.searchsorted(edges[1:-1], lengths, side="right")
    result = []
    for bucket in range(len(edges) - 1 if len(edges) > 1 else 1):
        members = [row for row, i in zip(rows, index, strict=True) if i == bucket]
        if not members:
            continue
        rates = {}
        for name in behaviors:
            verdicts = [(m.get("behaviors") or {}).get(name) for m in members]
            judged = [bool(v) for v in verdicts if v is not None]
            rates[name] = RateEstimate.wilson(sum(judged), len(judged))
        chars = [int(m["prompt_chars"]) for m in members]
        result.append(LengthBucket(min(chars), max(chars), len(members), rates))
    return result


def render_html(
    report: Mapping[str, Any],
    *,
    comparison: Comparison | None = None,
    baseline: Mapping[str, Any] | None = None,
    outcomes: Sequence[GateOutcome] = (),
    max_flipped: int = MAX_FLIPPED,
) -> str:
    """The HTML page of ``report`` (with the comparison and gate outcomes when given)."""
    from mimicry.reports.explorer import EXPLORER_STYLE, render_explorer, script_hash

    title, headline = run_headline(report)
    csp = _CSP.format(script=script_hash())
    rows = behavior_rows(report)
    behaviors = list(rows)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_STYLE}{EXPLORER_STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    incomplete = completeness(report)
    if incomplete is not None:
        parts.append(
            f'<div class="incomplete" role="alert"><strong>INCOMPLETE RUN.</strong> '
            f"{esc(incomplete, 600)}</div>"
        )
    parts.append(f"<p>{esc(headline, 400)}</p>")
    if outcomes:
        failed = sum(1 for o in outcomes if not o.passed)
        parts.append(
            f'<p class="failed">{failed} of {len(outcomes)} gates failed</p>'
            if failed
            else '<p class="passed">All gates passed</p>'
        )
    if comparison is not None:
        for diff in comparison.differences:
            css = "warning" if diff.severity == "warning" else "note"
            label = "Warning" if diff.severity == "warning" else "Note"
            parts.append(
                f'<div class="{css}"><strong>{label}:</strong> {esc(diff.message, 400)}</div>'
            )
    if outcomes:
        parts += ["<h2>Gates</h2>", "<table><tr><th>result</th><th>gate</th><th>evidence</th></tr>"]
        for outcome in sorted(outcomes, key=lambda o: o.passed):
            css = "passed" if outcome.passed else "failed"
            parts.append(
                f'<tr><td class="{css}">{css}</td><td>{esc(outcome.gate)}</td>'
                f"<td>{esc(outcome.message, 1000)}</td></tr>"
            )
        parts.append("</table>")
    parts += ["<h2>Behaviors</h2>", _behavior_table(report, rows)]
    parts.append(
        _figure(
            _rates_chart(rows),
            "Behavior rates with their 95% Wilson intervals (judged samples only; nulls and "
            "errors are left out).",
        )
    )
    if comparison is not None and comparison.behaviors:
        parts += ["<h2>Comparison with the baseline</h2>", _comparison_table(comparison)]
        parts.append(
            _figure(
                _side_by_side_chart(comparison),
                "Baseline and current rates on the samples judged in both runs, with 95% "
                "Wilson intervals.",
            )
        )
        parts.append(
            _figure(
                _difference_chart(comparison),
                "Paired difference current - baseline in percentage points, with Newcombe's 95% "
                "interval for paired proportions; McNemar's exact p on the right.",
            )
        )
    buckets = rate_by_prompt_length(report.get("samples") or [], behaviors)
    if buckets and behaviors:
        parts += ["<h2>Rate by prompt length</h2>", _bucket_table(buckets, behaviors)]
        parts.append(
            _figure(
                _length_chart(buckets, behaviors),
                "Each behavior's rate by prompt-length bucket (quantiles of the prompt's length "
                "in characters), with 95% Wilson intervals.",
            )
        )
    if comparison is not None:
        parts += _flipped_section(comparison, baseline, report, max_flipped)
    parts += ["<h2>Run</h2>", _run_section(report)]
    parts.append(render_explorer(report, comparison))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_html(path: str | os.PathLike[str], page: str) -> Path:
    """Write the page (UTF-8; the text is already safe to encode)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return target


# -- tables --------------------------------------------------------------------------------------


def _behavior_table(report: Mapping[str, Any], behavior_rows: Mapping[str, Any]) -> str:
    rows = [
        "<table><tr><th>behavior</th><th>judged</th><th>passed</th><th>rate</th>"
        "<th>95% CI</th><th>null</th><th>errors</th></tr>"
    ]
    for name, row in behavior_rows.items():
        rows.append(
            f"<tr><td>{esc(name)}</td>{_num(row.get('n', 0))}{_num(row.get('passed', 0))}"
            f"{_num(pct(row.get('rate')))}<td>{interval(row.get('ci95'))}</td>"
            f"{_num(row.get('null', 0))}{_num(row.get('errors', 0))}</tr>"
        )
    for name, raw in measures(report).items():
        if isinstance(raw, Mapping) and raw.get("n"):
            rows.append(
                f"<tr><td>{esc(name)} <span class=note>(raw measure)</span></td>"
                f"{_num(raw['n'])}{_num(raw.get('passed', 0))}{_num(pct(raw.get('rate')))}"
                f"<td>{interval(raw.get('ci95'))}</td><td></td><td></td></tr>"
            )
    rows.append("</table>")
    keys = report.get("key_preservation") or {}
    if keys:
        kept = ", ".join(f"{esc(k, 40)} {pct(v)}" for k, v in keys.items())
        rows.append(f"<p>Key preservation: {kept}</p>")
    definitions = []
    for name in behavior_rows:
        meaning = behavior_definition(report, name)
        definitions.append(
            f"<dt>{esc(name)}</dt><dd>"
            + (
                esc(meaning, 2000)
                if meaning is not None
                else '<span class="note">your own behavior test (no built-in definition)</span>'
            )
            + "</dd>"
        )
    if definitions:
        rows.append(
            "<details><summary>What each behavior means</summary><dl>"
            + "".join(definitions)
            + "</dl></details>"
        )
    return "\n".join(rows)


def _run_section(report: Mapping[str, Any]) -> str:
    items = "".join(
        f"<dt>{esc(label)}</dt><dd>{esc(value, 600)}</dd>" for label, value in run_facts(report)
    )
    return f'<dl class="run">{items}</dl>'


def _comparison_table(comparison: Comparison) -> str:
    rows = [
        f"<p>Baseline {esc(comparison.baseline.label())} → current "
        f"{esc(comparison.current.label())}, paired on {len(comparison.common_ids)} samples "
        "judged in both runs.</p>"
    ]
    if comparison.only_in_baseline or comparison.only_in_current:
        rows.append(
            f'<p class="note">Not compared: {len(comparison.only_in_baseline)} sample(s) only in '
            f"the baseline ({esc(format_ids(comparison.only_in_baseline), 300)}), "
            f"{len(comparison.only_in_current)} only in the current run "
            f"({esc(format_ids(comparison.only_in_current), 300)}).</p>"
        )
    rows.append(
        "<table><tr><th>behavior</th><th>paired n</th><th>baseline</th><th>current</th>"
        "<th>difference (points)</th><th>95% CI</th><th>pass→fail</th><th>fail→pass</th>"
        "<th>McNemar p</th></tr>"
    )
    for row in comparison.behaviors:
        rows.append(
            f"<tr><td>{esc(row.behavior)}</td>{_num(row.n)}{_num(pct(row.baseline.rate))}"
            f"{_num(pct(row.current.rate))}{_num(points(row.difference))}"
            f"<td>{points_interval(row.difference_ci95)}</td>{_num(row.b)}{_num(row.c)}"
            f"{_num(format_p(row.mcnemar_p))}</tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _bucket_table(buckets: Sequence[LengthBucket], behaviors: Sequence[str]) -> str:
    head = "".join(f"<th>{esc(name)}</th>" for name in behaviors)
    rows = [f"<table><tr><th>prompt chars</th><th>samples</th>{head}</tr>"]
    for bucket in buckets:
        cells = "".join(
            _num(f"{pct(bucket.rates[name].rate)} ({bucket.rates[name].n})") for name in behaviors
        )
        rows.append(f"<tr><td>{bucket.label}</td>{_num(bucket.samples)}{cells}</tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _flipped_section(
    comparison: Comparison,
    baseline: Mapping[str, Any] | None,
    report: Mapping[str, Any],
    limit: int,
) -> list[str]:
    flips = flipped_samples(comparison, baseline, report, limit)
    if not flips:
        return []
    parts = [
        "<h2>Flipped samples</h2>",
        "<table><tr><th>behavior</th><th>sample</th><th>flip</th><th>baseline reply</th>"
        "<th>current reply</th></tr>",
    ]
    for flip in flips:
        parts.append(
            f"<tr><td>{esc(flip.behavior)}</td><td>{esc(flip.sample_id, 40)}</td>"
            f"<td>{esc(flip.direction)}</td><td>{_reply_cell(flip.baseline_reply)}</td>"
            f"<td>{_reply_cell(flip.current_reply)}</td></tr>"
        )
    parts.append("</table>")
    return parts


def _reply_cell(reply: str | None) -> str:
    if reply is None:
        return '<span class="note">(no reply)</span>'
    short = html.escape(excerpt(reply, EXCERPT_CHARS))
    if len(reply) <= EXCERPT_CHARS:
        return f"<pre>{short}</pre>"
    longer = html.escape(excerpt(reply, LONG_EXCERPT_CHARS, keep_newlines=True))
    return f"<details><summary>{short}</summary><pre>{longer}</pre></details>"


def _num(value: object) -> str:
    return f'<td class="num">{html.escape(str(value))}</td>'


# -- charts --------------------------------------------------------------------------------------


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _new_figure(width: float, height: float) -> Figure:
    # a bare Figure, not pyplot: no global state, no GUI backend, nothing left open
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig


def _to_svg(fig: Figure, name: str, label: str) -> str:
    """The figure as an inline ``<svg>`` element (no XML prolog), deterministic for one input."""
    import matplotlib

    buffer = io.StringIO()
    # text stays text (small, selectable); a per-chart salt keeps the ids of several inline
    # SVGs from colliding in one page; no date, so the same input gives the same file
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"mimicry-{name}"}):
        fig.savefig(buffer, format="svg", metadata=dict.fromkeys(_SVG_METADATA))
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]
    # every chart numbers its elements figure_1, axes_1, ...: prefix ids and the references to
    # them, so that ids stay unique in a page holding several charts
    svg = svg.replace(' id="', f' id="{name}-')
    svg = svg.replace('href="#', f'href="#{name}-').replace("url(#", f"url(#{name}-")
    return svg.replace(
        "<svg ", f'<svg role="img" aria-label="{html.escape(label, quote=True)}" ', 1
    )


def _error_bars(estimates: Sequence[RateEstimate]) -> tuple[list[float], list[list[float]]]:
    """Rates (percent) and matplotlib's asymmetric error-bar lengths; unknown rates plot as 0."""
    values, below, above = [], [], []
    for est in estimates:
        value = (est.rate or 0.0) * 100
        lo, hi = est.ci95 if est.ci95 is not None else (est.rate or 0.0, est.rate or 0.0)
        values.append(value)
        below.append(max(0.0, value - lo * 100))
        above.append(max(0.0, hi * 100 - value))
    return values, [below, above]


def _rates_chart(rows: Mapping[str, Mapping[str, Any]]) -> str:
    names = [str(name) for name in rows]
    estimates = [RateEstimate.from_row(row) for row in rows.values()]
    fig = _new_figure(7.5, 0.5 + 0.55 * max(1, len(names)))
    ax = fig.add_subplot()
    values, err = _error_bars(estimates)
    positions = list(range(len(names)))
    ax.errorbar(values, positions, xerr=err, fmt="o", color=_CURRENT_COLOR, capsize=4)
    for y, (value, est) in enumerate(zip(values, estimates, strict=True)):
        text = f"{value:.1f}% (n={est.n})" if est.rate is not None else "not judged"
        ax.annotate(
            text, (value, y), xytext=(0, 7), textcoords="offset points", ha="center", fontsize=8
        )
    ax.set_yticks(positions, [_plain_label(n) for n in names])
    ax.set_xlim(0, 100)
    ax.set_ylim(-0.7, len(names) - 0.3)
    ax.invert_yaxis()
    ax.set_xlabel("rate (%)")
    ax.grid(axis="x", alpha=0.3)
    return _to_svg(fig, "rates", "Behavior rates with 95% intervals")


def _side_by_side_chart(comparison: Comparison) -> str:
    rows = comparison.behaviors
    fig = _new_figure(7.5, 3.2)
    ax = fig.add_subplot()
    xs = list(range(len(rows)))
    width = 0.38
    for offset, label, color, estimates in (
        (-width / 2, "baseline", _BASELINE_COLOR, [r.baseline for r in rows]),
        (width / 2, "current", _CURRENT_COLOR, [r.current for r in rows]),
    ):
        values, err = _error_bars(estimates)
        ax.bar(
            [x + offset for x in xs],
            values,
            width,
            yerr=err,
            capsize=3,
            label=label,
            color=color,
            ecolor="#333333",
        )
    ax.set_xticks(xs, [_plain_label(r.behavior) for r in rows])
    ax.set_ylim(0, 105)
    ax.set_ylabel("rate (%)")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _to_svg(fig, "side-by-side", "Baseline and current rates side by side")


def _difference_chart(comparison: Comparison) -> str:
    rows = comparison.behaviors
    fig = _new_figure(7.5, 0.6 + 0.55 * max(1, len(rows)))
    ax = fig.add_subplot()
    ys = list(range(len(rows)))
    values = [(r.difference or 0.0) * 100 for r in rows]
    below = [
        v - (r.difference_ci95[0] * 100 if r.difference_ci95 else v)
        for v, r in zip(values, rows, strict=True)
    ]
    above = [
        (r.difference_ci95[1] * 100 if r.difference_ci95 else v) - v
        for v, r in zip(values, rows, strict=True)
    ]
    ax.axvline(0, color="#444444", linewidth=1)
    ax.errorbar(values, ys, xerr=[below, above], fmt="s", color=_CURRENT_COLOR, capsize=4)
    for y, row in zip(ys, rows, strict=True):
        ax.annotate(
            f"p={format_p(row.mcnemar_p)}  ({row.b} p→f, {row.c} f→p)",
            (1.01, y),
            xycoords=("axes fraction", "data"),
            va="center",
            fontsize=8,
        )
    ax.set_yticks(ys, [_plain_label(r.behavior) for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(-100, 100)
    ax.set_xlabel("current - baseline (percentage points)")
    ax.grid(axis="x", alpha=0.3)
    return _to_svg(fig, "difference", "Paired differences with 95% intervals")


def _length_chart(buckets: Sequence[LengthBucket], behaviors: Sequence[str]) -> str:
    fig = _new_figure(7.5, 3.4)
    ax = fig.add_subplot()
    xs = list(range(len(buckets)))
    spread = 0.08
    for i, name in enumerate(behaviors):
        values, err = _error_bars([b.rates[name] for b in buckets])
        shift = (i - (len(behaviors) - 1) / 2) * spread
        ax.errorbar(
            [x + shift for x in xs],
            values,
            yerr=err,
            fmt="-o",
            capsize=3,
            markersize=4,
            label=_plain_label(name),
            color=_BEHAVIOR_COLORS[i % len(_BEHAVIOR_COLORS)],
        )
    ax.set_xticks(xs, [f"{b.label}\n(n={b.samples})" for b in buckets])
    ax.set_xlabel("prompt length (characters)")
    ax.set_ylabel("rate (%)")
    ax.set_ylim(-3, 105)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return _to_svg(fig, "length", "Behavior rate by prompt-length bucket")


def _plain_label(text: str) -> str:
    """A label matplotlib draws as plain text: ``$`` would start mathtext, which can fail."""
    return excerpt(text, 40).replace("$", r"\$")
