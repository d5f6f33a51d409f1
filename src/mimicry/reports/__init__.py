"""Reports people read: a Markdown summary (:mod:`mimicry.reports.markdown`) and a
self-contained HTML page with plots (:mod:`mimicry.reports.html`).

Model replies, sample ids, model names and paths are untrusted text. Everything shown passes
through :func:`safe_text` (lone surrogates and control characters become visible escapes, so the
output always encodes as UTF-8 and cannot hide or reorder text), is cut by :func:`excerpt` to a
bounded length (a 1 MB reply stays a one-line excerpt) and is then escaped for its format.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mimicry.core.compare import Comparison

#: Characters of a reply shown in a table cell, and in an expandable block of the HTML page.
EXCERPT_CHARS = 120
LONG_EXCERPT_CHARS = 2000
#: Flipped samples listed per behavior and direction.
MAX_FLIPPED = 10

FlipDirection = Literal["pass->fail", "fail->pass"]

# Bidirectional overrides and isolates reorder the text around them ("Trojan source"); the
# line and paragraph separators break lines where a reader does not expect them.
_INVISIBLE = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def safe_text(value: object, *, keep_newlines: bool = False) -> str:
    """``value`` as text that encodes as UTF-8 and shows every character it holds.

    Lone surrogates, control characters, bidirectional overrides and line separators become
    Python-style escapes (``\\udc80``, ``\\x00``, ``\\u202e``); newlines and tabs too, unless
    ``keep_newlines``.
    """
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():  # the common case, in one C-speed pass
        return text
    out = []
    for ch in text:
        if keep_newlines and ch in "\n\t":
            out.append(ch)
        elif ch in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[ch])
        elif ch in _INVISIBLE or unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn"):
            code = ord(ch)
            out.append(
                f"\\x{code:02x}"
                if code < 0x100
                else f"\\u{code:04x}"
                if code < 0x10000
                else f"\\U{code:08x}"
            )
        else:
            out.append(ch)
    return "".join(out)


def excerpt(text: object, limit: int = EXCERPT_CHARS, *, keep_newlines: bool = False) -> str:
    """The first ``limit`` characters of ``text`` made safe, with the full size when cut.

    The text is cut before it is made safe, so a huge reply costs only ``limit`` characters of
    work; None reads as ``(no reply)``.
    """
    if text is None:
        return "(no reply)"
    raw = text if isinstance(text, str) else str(text)
    if len(raw) <= limit:
        return safe_text(raw, keep_newlines=keep_newlines)
    return f"{safe_text(raw[:limit], keep_newlines=keep_newlines)}… ({len(raw):,} chars)"


@dataclass(frozen=True)
class Flip:
    """A sample whose verdict for a behavior changed between baseline and current run."""

    behavior: str
    sample_id: str
    direction: FlipDirection
    baseline_reply: str | None
    current_reply: str | None


def flipped_samples(
    comparison: Comparison,
    baseline: Mapping[str, Any] | None,
    current: Mapping[str, Any],
    limit: int = MAX_FLIPPED,
) -> list[Flip]:
    """The first ``limit`` flips per behavior and direction, pass -> fail first, with replies."""
    base_replies = first_replies(baseline) if baseline is not None else {}
    cur_replies = first_replies(current)
    flips = []
    for row in comparison.behaviors:
        directions: tuple[tuple[FlipDirection, Sequence[str]], ...] = (
            ("pass->fail", row.pass_to_fail),
            ("fail->pass", row.fail_to_pass),
        )
        for direction, ids in directions:
            for sample_id in ids[:limit]:
                flips.append(
                    Flip(
                        row.behavior,
                        sample_id,
                        direction,
                        base_replies.get(sample_id),
                        cur_replies.get(sample_id),
                    )
                )
    return flips


def first_replies(report: Mapping[str, Any]) -> dict[str, str | None]:
    """Each sample id's reply (the first repeat's, in a run with repeats)."""
    replies: dict[str, str | None] = {}
    for sample in report.get("samples") or []:
        key = str(sample.get("id"))
        if key not in replies:
            reply = sample.get("reply")
            replies[key] = reply if isinstance(reply, str) else None
    return replies


def run_headline(report: Mapping[str, Any]) -> tuple[str, str]:
    """The report's title and a one-line description of the run (not yet escaped).

    The description starts with ``INCOMPLETE RUN`` when the run did not finish, and counts the
    samples as judged of planned, never the planned ones alone.
    """
    run = report.get("run") or {}
    model = run.get("model", "?")
    backend = run.get("backend")
    title = f"mimicry: {model}" + (f" ({backend})" if backend else "")
    dataset = (run.get("dataset") or {}).get("id_or_path", "?")
    counts = sample_counts(report)
    parts = [f"{dataset}: {counts.described()}"]
    options = run.get("options") or {}
    if "num_ctx" in options:
        parts.append(f"num_ctx {options['num_ctx']}")
    if isinstance(run.get("duration_s"), int | float):
        parts.append(f"{run['duration_s']:.1f}s")
    if run.get("started_at"):
        parts.append(f"started {run['started_at']}")
    headline = ", ".join(parts)
    if run.get("complete") is False:
        headline = f"INCOMPLETE RUN: {headline}"
    return title, headline


@dataclass(frozen=True)
class SampleCounts:
    """How many samples a run planned, got a result for (a reply or an error), and judged (at
    least one verdict shown or not shown)."""

    planned: int | None
    with_result: int
    judged: int
    errors: int

    def described(self) -> str:
        """``"3 of 32 planned samples judged"``, or ``"32 samples judged"`` when all were."""
        if self.planned is not None and self.judged != self.planned:
            return f"{self.judged:,} of {self.planned:,} planned samples judged"
        return f"{self.judged:,} samples judged"


def sample_counts(report: Mapping[str, Any]) -> SampleCounts:
    """The run's sample counts (repeats count as samples)."""
    run = report.get("run") or {}
    ids = (run.get("dataset") or {}).get("sample_ids")
    repeat = run.get("repeat")
    planned = None
    if isinstance(ids, list):
        planned = len(ids) * (repeat if isinstance(repeat, int) and repeat > 1 else 1)
    samples = [s for s in report.get("samples") or [] if isinstance(s, Mapping)]
    judged = sum(
        1
        for s in samples
        if s.get("status") != "error"
        and any(v is not None for v in (s.get("behaviors") or {}).values())
    )
    errors = sum(1 for s in samples if s.get("status") == "error")
    return SampleCounts(planned, len(samples), judged, errors)


def completeness(report: Mapping[str, Any]) -> str | None:
    """None for a complete run; else why it is not, with the counts (not yet escaped)."""
    run = report.get("run") or {}
    if run.get("complete") is not False:
        return None
    counts = sample_counts(report)
    reason = run.get("incomplete_reason") or "not every planned sample was evaluated"
    planned = f" of {counts.planned:,} planned" if counts.planned is not None else ""
    return (
        f"{reason}: {counts.with_result:,}{planned} samples have a result and "
        f"{counts.judged:,} were judged ({counts.errors:,} without a reply); every rate covers "
        "the judged samples only"
    )


def measures(report: Mapping[str, Any]) -> Mapping[str, Any]:
    """The report's raw measures (``measures``; ``metrics`` in schema 1)."""
    found = report.get("measures")
    if not isinstance(found, Mapping):
        found = report.get("metrics")
    return found if isinstance(found, Mapping) else {}


def sample_measures(sample: Mapping[str, Any]) -> Mapping[str, Any]:
    """A sample's measures (``measures``; ``metrics`` in schema 1)."""
    found = sample.get("measures")
    if not isinstance(found, Mapping):
        found = sample.get("metrics")
    return found if isinstance(found, Mapping) else {}


def behavior_names(report: Mapping[str, Any]) -> list[str]:
    """Every behavior the run measured or registered: the table's rows, then the run's list of
    behaviors, then any verdict a sample carries, each once, in that order."""
    names: dict[str, None] = {}
    for name in report.get("behaviors") or {}:
        names[str(name)] = None
    for name in ((report.get("run") or {}).get("behaviors")) or {}:
        names[str(name)] = None
    for sample in report.get("samples") or []:
        if isinstance(sample, Mapping):
            for name in sample.get("behaviors") or {}:
                names[str(name)] = None
    return list(names)


#: The row of a behavior the run registered but judged nowhere.
EMPTY_ROW: Mapping[str, Any] = {
    "n": 0,
    "passed": 0,
    "rate": None,
    "ci95": None,
    "null": 0,
    "errors": 0,
}


def behavior_rows(report: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """One row per behavior (see :func:`behavior_names`): the report's, or an empty one."""
    rows = report.get("behaviors") or {}
    return {
        name: rows[name] if isinstance(rows.get(name), Mapping) else EMPTY_ROW
        for name in behavior_names(report)
    }


def behavior_definition(report: Mapping[str, Any], name: str) -> str | None:
    """A behavior's definition as the report recorded it (None for a user's own test)."""
    info = ((report.get("run") or {}).get("behaviors") or {}).get(name)
    if isinstance(info, Mapping) and isinstance(info.get("definition"), str):
        return str(info["definition"])
    return None


def display_host(host: object) -> str:
    """A server address fit to show: no user, password or query (a key may hide there)."""
    from urllib.parse import urlsplit, urlunsplit

    text = str(host)
    try:
        parts = urlsplit(text)
    except ValueError:
        return "(unparsable address)"
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def run_facts(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What the run was, as (label, value) pairs of plain text (not yet escaped): model and
    digest, backend, host, options, prompt template, dataset and selection, versions, timing
    and completeness. Credentials never appear (see :func:`display_host`)."""
    run = report.get("run") or {}
    facts: list[tuple[str, str]] = []

    def add(label: str, value: object) -> None:
        if value is not None and value != "" and value != []:
            facts.append((label, str(value)))

    add("model", run.get("model"))
    add("model digest", run.get("model_digest"))
    info = run.get("model_info")
    if isinstance(info, Mapping):
        details = [
            f"{key} {info[key]}"
            for key in ("family", "parameter_size", "quantization", "context_length")
            if info.get(key) is not None
        ]
        add("model details", ", ".join(details))
        add("server version", info.get("server_version"))
    add("judge model", run.get("judge_model"))
    add("backend", run.get("backend"))
    hosts = run.get("hosts")
    if isinstance(hosts, list) and len(hosts) > 1:
        add("hosts", ", ".join(display_host(h) for h in hosts))
    elif run.get("host"):
        add("host", display_host(run["host"]))
    options = run.get("options")
    if isinstance(options, Mapping):
        shown = ", ".join(f"{key} {value}" for key, value in options.items())
        if run.get("num_ctx_source"):
            shown += f" (num_ctx: {run['num_ctx_source']})"
        add("options", shown)
    add("prompt template", run.get("prompt_template"))
    dataset = run.get("dataset")
    if isinstance(dataset, Mapping):
        described = str(dataset.get("label") or dataset.get("id_or_path") or "?")
        if dataset.get("n_rows") is not None:
            described += (
                f", {dataset['n_rows']:,} rows"
                if isinstance(dataset["n_rows"], int)
                else f", {dataset['n_rows']} rows"
            )
        add("dataset", described)
        ids = dataset.get("sample_ids")
        if isinstance(ids, list):
            repeat = run.get("repeat")
            times = f" x {repeat} repeats" if isinstance(repeat, int) and repeat > 1 else ""
            add("selection", f"{len(ids):,} samples{times}")
    add("response cache", run.get("response_cache_mode"))
    add("concurrency", run.get("concurrency"))
    versions = []
    if run.get("package_version"):
        versions.append(f"mimicry-evals {run['package_version']}")
    if run.get("detectors_version") is not None:
        versions.append(f"detectors v{run['detectors_version']}")
    versions.append(f"report schema {report.get('schema_version', '?')}")
    add("versions", ", ".join(versions))
    add("run id", run.get("run_id"))
    add("started", run.get("started_at"))
    if isinstance(run.get("duration_s"), int | float):
        add("duration", _duration(float(run["duration_s"])))
    counts = sample_counts(report)
    state = "complete" if run.get("complete") is not False else "INCOMPLETE"
    add(
        "completeness",
        f"{state}: {counts.described()}"
        + (f", {counts.errors:,} without a reply" if counts.errors else "")
        + (f", exit status {run['exit_status']}" if run.get("exit_status") is not None else ""),
    )
    notes = run.get("notes")
    if isinstance(notes, list) and notes:
        add("notes", "; ".join(str(n) for n in notes))
    return facts


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def pct(value: float | None) -> str:
    """A rate as a percentage with one decimal, ``-`` when unknown."""
    return "-" if value is None else f"{value:.1%}"


def interval(ci: Sequence[float] | None) -> str:
    """A rate interval as ``[lo%, hi%]``."""
    return "-" if not ci else f"[{ci[0]:.1%}, {ci[1]:.1%}]"


def points(value: float | None) -> str:
    """A rate difference in percentage points, signed."""
    return "-" if value is None else f"{value * 100:+.1f}"


def points_interval(ci: Sequence[float] | None) -> str:
    """A difference interval in percentage points."""
    return "-" if not ci else f"[{ci[0] * 100:+.1f}, {ci[1] * 100:+.1f}]"
