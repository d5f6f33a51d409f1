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
    """The report's title and a one-line description of the run (not yet escaped)."""
    run = report.get("run") or {}
    model = run.get("model", "?")
    backend = run.get("backend")
    title = f"mimicry: {model}" + (f" ({backend})" if backend else "")
    dataset = (run.get("dataset") or {}).get("id_or_path", "?")
    parts = [f"{len({str(s.get('id')) for s in report.get('samples') or []})} samples of {dataset}"]
    options = run.get("options") or {}
    if "num_ctx" in options:
        parts.append(f"num_ctx {options['num_ctx']}")
    if isinstance(run.get("duration_s"), int | float):
        parts.append(f"{run['duration_s']:.1f}s")
    if run.get("started_at"):
        parts.append(f"started {run['started_at']}")
    if run.get("complete") is False:
        parts.append("INCOMPLETE")
    return title, ", ".join(parts)


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
