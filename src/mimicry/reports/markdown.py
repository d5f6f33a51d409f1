"""The Markdown summary of a run: behavior table, comparison with a baseline, gate outcomes, the
top flipped samples, a short excerpt or two per behavior, and the run's metadata. Written for
GitHub (``$GITHUB_STEP_SUMMARY``) and readable as text.

Its size does not grow with the number of samples: every list is cut (:data:`MAX_FLIPPED` flips
per behavior and direction, :data:`EXAMPLES_PER_BEHAVIOR` excerpts per behavior, ids lists to
ten), and a summary still over :data:`MAX_SUMMARY_CHARS` (GitHub shows at most 1 MiB of a
step's summary) loses its excerpts and flipped samples first, saying so.

Every piece of untrusted text goes through :func:`md_text`: made safe and cut first, then HTML
metacharacters become entities and Markdown punctuation is backslash-escaped, so a reply cannot
open a tag, end a table cell, start a code span or render math.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mimicry.core.compare import Comparison, format_ids, format_p
from mimicry.core.gates import GateOutcome
from mimicry.reports import (
    EXCERPT_CHARS,
    MAX_FLIPPED,
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

STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"

#: Characters of an excerpt of a reply in the flipped-samples and examples tables.
MD_EXCERPT_CHARS = 80
#: Example samples per behavior: one that shows it and one that does not.
EXAMPLES_PER_BEHAVIOR = 2
#: GitHub shows at most 1 MiB of a step summary; the summary stays well under it.
MAX_SUMMARY_CHARS = 500_000

# CommonMark lets any ASCII punctuation be backslash-escaped; these are the ones that start
# inline markup in GitHub Markdown: cell ends, code spans, emphasis, links, math, strikethrough.
# (Line-start markup such as lists and headings cannot occur: untrusted text never starts a line.)
_MD_PUNCTUATION = frozenset("\\`*_[]!|~$#")
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def md_text(value: object, limit: int = EXCERPT_CHARS) -> str:
    """Untrusted text for a Markdown table cell or line: safe, cut to ``limit``, escaped."""
    text = excerpt(value, limit) if value is not None else "-"
    return "".join(_HTML.get(ch) or (f"\\{ch}" if ch in _MD_PUNCTUATION else ch) for ch in text)


def render_markdown(
    report: Mapping[str, Any],
    *,
    comparison: Comparison | None = None,
    baseline: Mapping[str, Any] | None = None,
    outcomes: Sequence[GateOutcome] = (),
    max_flipped: int = MAX_FLIPPED,
) -> str:
    """The Markdown summary of ``report``, compared with ``baseline`` when a comparison is given.

    ``baseline`` (the baseline report) only supplies the baseline replies of flipped samples.
    """
    title, headline = run_headline(report)
    lines = [f"## {md_text(title)}", ""]
    incomplete = completeness(report)
    if incomplete is not None:
        lines += [f"> ⛔ **INCOMPLETE RUN:** {md_text(incomplete, 600)}", ""]
    lines.append(md_text(headline, 400))
    if outcomes:
        failed = sum(1 for o in outcomes if not o.passed)
        verdict = (
            f"❌ {failed} of {len(outcomes)} gates failed" if failed else "✅ all gates passed"
        )
        lines += ["", f"**{verdict}**"]
    if comparison is not None:
        for diff in comparison.differences:
            if diff.severity == "warning":
                lines += ["", f"> ⚠️ **Warning:** {md_text(diff.message, 400)}"]
    lines += ["", "### Behaviors", ""]
    lines += _behavior_table(report)
    if comparison is not None:
        lines += ["", "### Comparison with the baseline", ""]
        lines += _comparison_section(comparison)
    if outcomes:
        lines += ["", "### Gates", "", "| result | gate | evidence |", "|---|---|---|"]
        for outcome in sorted(outcomes, key=lambda o: o.passed):
            mark = "❌ failed" if not outcome.passed else "✅ passed"
            lines.append(f"| {mark} | {md_text(outcome.gate)} | {md_text(outcome.message, 1000)} |")
    flips = _flipped_section(report, comparison, baseline, max_flipped)
    examples = _examples_section(report)
    run = ["", "### Run", "", "| | |", "|---|---|"] + [
        f"| {md_text(label)} | {md_text(value, 300)} |" for label, value in run_facts(report)
    ]
    text = "\n".join(lines + flips + examples + run) + "\n"
    if len(text) > MAX_SUMMARY_CHARS:
        note = [
            "",
            f"_The flipped samples and the examples were left out to keep this summary under "
            f"{MAX_SUMMARY_CHARS:,} characters; the HTML report has every sample._",
        ]
        text = "\n".join(lines + note + run) + "\n"
    return text


def _flipped_section(
    report: Mapping[str, Any],
    comparison: Comparison | None,
    baseline: Mapping[str, Any] | None,
    max_flipped: int,
) -> list[str]:
    if comparison is None:
        return []
    flips = flipped_samples(comparison, baseline, report, max_flipped)
    if not flips:
        return []
    lines = [
        "",
        "### Flipped samples",
        "",
        "| behavior | sample | flip | baseline reply | current reply |",
        "|---|---|---|---|---|",
    ]
    for flip in flips:
        lines.append(
            f"| {md_text(flip.behavior)} | {md_text(flip.sample_id, 40)} "
            f"| {md_text(flip.direction)} "
            f"| {md_text(flip.baseline_reply, MD_EXCERPT_CHARS)} "
            f"| {md_text(flip.current_reply, MD_EXCERPT_CHARS)} |"
        )
    return lines


def _examples_section(report: Mapping[str, Any]) -> list[str]:
    """Per behavior, the first sample that shows it and the first that does not, with the
    start of its reply and the verdict's explanation."""
    names = list(behavior_rows(report))
    keep = 2 * len(names)  # enough candidates to show a different sample in every row
    candidates: dict[tuple[str, bool], list[Mapping[str, Any]]] = {
        (name, verdict): [] for name in names for verdict in (True, False)
    }
    open_keys = set(candidates)
    for sample in report.get("samples") or []:
        if not open_keys:
            break
        if sample.get("status") == "error" or not isinstance(sample.get("reply"), str):
            continue
        for name, verdict in (sample.get("behaviors") or {}).items():
            key = (name, bool(verdict))
            if verdict is not None and key in open_keys:
                candidates[key].append(sample)
                if len(candidates[key]) >= keep:
                    open_keys.discard(key)
    found: dict[tuple[str, bool], Mapping[str, Any]] = {}
    used: set[str] = set()
    for key, listed in candidates.items():
        if listed:
            fresh = [s for s in listed if str(s.get("id")) not in used]
            found[key] = (fresh or listed)[0]
            used.add(str(found[key].get("id")))
    if not found:
        return []
    lines = [
        "",
        "### Examples",
        "",
        "| behavior | verdict | sample | reply (start) | why |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        for verdict in (True, False)[:EXAMPLES_PER_BEHAVIOR]:
            sample = found.get((name, verdict))
            if sample is None:
                continue
            why = (sample.get("explanations") or {}).get(name)
            lines.append(
                f"| {md_text(name)} | {'shown' if verdict else 'not shown'} "
                f"| {md_text(sample.get('id'), 40)} "
                f"| {md_text(sample.get('reply'), MD_EXCERPT_CHARS)} "
                f"| {md_text(why, 160) if why else ''} |"
            )
    return lines


def _behavior_table(report: Mapping[str, Any]) -> list[str]:
    lines = [
        "| behavior | judged | passed | rate | 95% CI | null | errors |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for name, row in behavior_rows(report).items():
        lines.append(
            f"| {md_text(name)} | {row.get('n', 0)} | {row.get('passed', 0)} | "
            f"{pct(row.get('rate'))} | {interval(row.get('ci95'))} | {row.get('null', 0)} | "
            f"{row.get('errors', 0)} |"
        )
    for name, raw in measures(report).items():
        if isinstance(raw, Mapping) and raw.get("n"):
            lines.append(
                f"| {md_text(name)} (raw measure) | {raw['n']} | {raw.get('passed', 0)} | "
                f"{pct(raw.get('rate'))} | {interval(raw.get('ci95'))} | | |"
            )
    keys = report.get("key_preservation") or {}
    if keys:
        kept = ", ".join(f"{md_text(k, 40)} {pct(v)}" for k, v in keys.items())
        lines += ["", f"Key preservation: {kept}"]
    return lines


def _comparison_section(comparison: Comparison) -> list[str]:
    lines = [
        f"Baseline {md_text(comparison.baseline.label())} → current "
        f"{md_text(comparison.current.label())}, paired on {len(comparison.common_ids)} samples "
        "judged in both runs (difference in percentage points, Newcombe's paired interval; "
        "McNemar's exact test).",
    ]
    for diff in comparison.differences:
        if diff.severity == "note":
            lines += ["", f"Note: {md_text(diff.message, 400)}"]
    only = []
    if comparison.only_in_baseline:
        only.append(
            f"only in the baseline: {md_text(format_ids(comparison.only_in_baseline), 300)}"
        )
    if comparison.only_in_current:
        only.append(
            f"only in the current run: {md_text(format_ids(comparison.only_in_current), 300)}"
        )
    if only:
        lines += ["", "Not compared (" + "; ".join(only) + ")."]
    lines += [
        "",
        "| behavior | paired n | baseline | current | difference (95% CI) | pass→fail | fail→pass "
        "| McNemar p |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for row in comparison.behaviors:
        lines.append(
            f"| {md_text(row.behavior)} | {row.n} | {pct(row.baseline.rate)} | "
            f"{pct(row.current.rate)} | {points(row.difference)} "
            f"{points_interval(row.difference_ci95)} | {row.b} | {row.c} | "
            f"{format_p(row.mcnemar_p)} |"
        )
    return lines


def write_markdown(path: str | os.PathLike[str], markdown: str) -> Path:
    """Write the summary (UTF-8; the text is already safe to encode)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(markdown, encoding="utf-8")
    return target


def append_step_summary(markdown: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """Append the summary to ``$GITHUB_STEP_SUMMARY`` when it is set; the file written, or None.

    GitHub Actions sets the variable to a file per step whose content becomes the job summary;
    appending keeps what other steps wrote. ``OSError`` propagates to the caller.
    """
    env = os.environ if environ is None else environ
    target = env.get(STEP_SUMMARY_ENV)
    if not target:
        return None
    path = Path(target)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(markdown if markdown.endswith("\n") else markdown + "\n")
    return path
