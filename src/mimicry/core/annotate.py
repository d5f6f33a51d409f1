"""Where a reply copies, changes, drops and stops: the reply and its record, annotated.

The sample explorer of the HTML report shows a record and the model's reply side by side. What
it marks is computed here, from the record and the reply alone (no verdict is needed, so a user's
own behaviors get the same view):

- *copied*: runs of the reply that occur verbatim in the record's text (as the model was sent
  it), each paired with where it occurs in the record;
- per record key, its value *same* (the imitation's value is the record's, as text, up to
  whitespace and quoting), *changed* (another id, a rewritten prompt) or the key *missing*, and
  whether the reply stopped inside that value (*cut*);
- keys of the imitation the record does not have (*extra*), and prose outside the imitation;
- the *stop*: where the reply stops imitating (inside a value, at ``num_predict``, or closed with
  keys missing) and the matching point of the record, after which the record was *unreached*.

The imitation is read by :func:`mimicry.core.parsing.read_imitation`, so keys, values and their
spans are what the detectors see. :func:`segments` cuts a text into runs with the marks active on
each, and :func:`pieces` shortens them to a display budget.

Cost: linear in the reply and record lengths, and bounded: copies are looked for in the first
:data:`COPY_WINDOW_CHARS` characters of each text, with at most :data:`MAX_COPIES` copies, from
anchors of :data:`COPY_ANCHOR_CHARS` characters taken every :data:`COPY_ANCHOR_STEP` characters of
the record (every common run of ``COPY_ANCHOR_CHARS + COPY_ANCHOR_STEP - 1`` characters or more is
found; shorter ones may be). Never raises on a ``str`` reply, whatever it holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from mimicry.core.parsing import Form, Imitation, read_imitation

#: Copies are found from shared runs of this many characters...
COPY_ANCHOR_CHARS: Final = 16
#: ...taken from the record every this many characters...
COPY_ANCHOR_STEP: Final = 8
#: ...in the first this many characters of the reply and of the record.
COPY_WINDOW_CHARS: Final = 1 << 16
#: Copies kept at most (a reply of a megabyte of record pieces has thousands).
MAX_COPIES: Final = 2_000
#: Record positions kept per anchor text (repeated text in a record: the longest copy wins).
_POSITIONS_PER_ANCHOR = 4

#: What a mark says about a stretch of text (see the module docstring).
MarkKind = Literal[
    "copied", "same", "changed", "missing", "extra", "outside", "unreached", "stop", "elided"
]
#: How a record key's value fared in the reply.
KeyStatus = Literal["same", "changed", "missing"]
#: Why the reply stopped: inside a value, at num_predict, or closed with keys missing.
StopReason = Literal["cut_off", "capped", "closed"]

Span = tuple[int, int]


@dataclass(frozen=True)
class Copy:
    """A run of the reply found verbatim in the record: ``reply[reply_start:reply_end] ==
    record_text[record_start:record_end]``."""

    reply_start: int
    reply_end: int
    record_start: int

    @property
    def length(self) -> int:
        return self.reply_end - self.reply_start

    @property
    def record_end(self) -> int:
        return self.record_start + self.length


@dataclass(frozen=True)
class KeyAnnotation:
    """One record key: its value's span and its whole item's (key and value) in the record text,
    its value's span in the reply (None when missing), its status, and whether the reply stopped
    inside its value (``cut``)."""

    key: str
    status: KeyStatus
    record_value: Span
    record_item: Span
    reply_value: Span | None = None
    cut: bool = False


@dataclass(frozen=True)
class Stop:
    """Where the reply stopped imitating: ``reply_at`` in the reply, ``record_at`` the matching
    point of the record (None when unknown), the ``key`` it stopped in, and why."""

    reason: StopReason
    reply_at: int
    record_at: int | None = None
    key: str | None = None


@dataclass(frozen=True)
class Mark:
    """A marked stretch ``[start, end)`` of a text (zero width for ``stop``), with its key."""

    start: int
    end: int
    kind: MarkKind
    key: str | None = None


@dataclass(frozen=True)
class Segment:
    """A run of a text with the same marks throughout: ``kinds`` sorted, ``key`` the record key
    the run belongs to (a value or an item), if any. Zero width for a stop."""

    start: int
    end: int
    kinds: tuple[MarkKind, ...] = ()
    key: str | None = None


@dataclass(frozen=True)
class Piece:
    """A piece of text to show: ``text`` with its marks, or (``elided`` > 0) a gap standing for
    that many characters left out."""

    text: str
    kinds: tuple[MarkKind, ...] = ()
    key: str | None = None
    elided: int = 0


@dataclass(frozen=True)
class Annotation:
    """A reply annotated against its record (see the module docstring)."""

    record_text: str
    reply: str
    form: Form
    imitation: Span
    keys: tuple[KeyAnnotation, ...]
    extra_keys: tuple[tuple[str, Span], ...]
    copies: tuple[Copy, ...]
    stop: Stop | None
    outside: tuple[Span, ...] = ()

    @property
    def copied_chars(self) -> int:
        """Characters of the reply found verbatim in the record."""
        return sum(copy.length for copy in self.copies)

    def key(self, name: str) -> KeyAnnotation | None:
        """The annotation of one record key."""
        return next((k for k in self.keys if k.key == name), None)

    def reply_marks(self) -> list[Mark]:
        """The marks on the reply: copies, values (same, changed, extra), prose outside the
        imitation, and the stop."""
        marks = [Mark(c.reply_start, c.reply_end, "copied") for c in self.copies]
        for key in self.keys:
            if key.reply_value is not None and key.reply_value[1] > key.reply_value[0]:
                marks.append(Mark(*key.reply_value, key.status, key.key))
        marks += [Mark(start, end, "extra", name) for name, (start, end) in self.extra_keys]
        marks += [Mark(start, end, "outside") for start, end in self.outside]
        if self.stop is not None:
            marks.append(Mark(self.stop.reply_at, self.stop.reply_at, "stop", self.stop.key))
        return marks

    def record_marks(self) -> list[Mark]:
        """The marks on the record: copies, changed values, missing items, what the reply never
        reached, and the stop."""
        marks = [Mark(c.record_start, c.record_end, "copied") for c in self.copies]
        for key in self.keys:
            # a kept value shows through its copies; only what differs is marked on the record
            if key.status == "missing":
                marks.append(Mark(*key.record_item, "missing", key.key))
            elif key.status == "changed":
                marks.append(Mark(*key.record_value, "changed", key.key))
        stop = self.stop
        if stop is not None and stop.record_at is not None:
            if stop.reason != "closed":
                end = len(self.record_text.rstrip())
                if end and self.record_text[end - 1] == "}":
                    end -= 1
                if end > stop.record_at:
                    marks.append(Mark(stop.record_at, end, "unreached"))
            marks.append(Mark(stop.record_at, stop.record_at, "stop", stop.key))
        return marks


def annotate(
    record: Mapping[str, object],
    reply: str,
    *,
    template: str = "repr",
    done_reason: str | None = None,
) -> Annotation:
    """Annotate ``reply`` against ``record`` as sent under ``template`` (``repr``: ``str(row)``,
    ``json``: ``json.dumps(row)``; another name reads as ``repr``). Never raises on a ``str``."""
    record_text, layout = record_layout(record, template)
    keys = [str(key) for key in record]
    imitation = read_imitation(reply, keys)
    copies = find_copies(reply, record_text)
    annotations: list[KeyAnnotation] = []
    cut_key = _cut_key(imitation)
    for key, value in zip(keys, record.values(), strict=True):
        value_span, item_span = layout.get(key, ((0, 0), (0, 0)))
        if key not in imitation.values:
            annotations.append(KeyAnnotation(key, "missing", value_span, item_span))
            continue
        written = imitation.values[key]
        cut = key == cut_key
        same = _same_value(value, written, prefix=cut)
        annotations.append(
            KeyAnnotation(
                key,
                "same" if same else "changed",
                value_span,
                item_span,
                imitation.spans.get(key),
                cut,
            )
        )
    present = set(keys)
    extra = tuple(
        (key, imitation.spans[key])
        for key in imitation.keys
        if key not in present and key in imitation.spans
    )
    stop = _stop(imitation, reply, record_text, layout, cut_key, copies, done_reason)
    return Annotation(
        record_text=record_text,
        reply=reply,
        form=imitation.form,
        imitation=(imitation.start, imitation.end),
        keys=tuple(annotations),
        extra_keys=extra,
        copies=tuple(copies),
        stop=stop,
        outside=_outside(reply, imitation),
    )


# -- the record as it was sent ---------------------------------------------------------------------


def record_layout(
    record: Mapping[str, object], template: str = "repr"
) -> tuple[str, dict[str, tuple[Span, Span]]]:
    """The record's text under ``template`` and, per key, the span of its value and of its whole
    item (``'key': value``) in that text.

    The text is built piece by piece exactly as ``str(dict)`` (or ``json.dumps``) writes it, so
    the spans are exact; a record whose text comes out otherwise (a mapping with its own repr)
    is read back with :func:`read_imitation` instead.
    """
    if template == "json":
        try:
            text = json.dumps(dict(record), ensure_ascii=False)
            parts = [
                (
                    str(key),
                    json.dumps(str(key), ensure_ascii=False),
                    json.dumps(value, ensure_ascii=False),
                )
                for key, value in record.items()
            ]
        except (TypeError, ValueError, RecursionError):
            return record_layout(record, "repr")
    else:
        text = f"{record}"
        try:
            parts = [(str(key), repr(key), repr(value)) for key, value in record.items()]
        except (RecursionError, ValueError):
            parts = []
    layout: dict[str, tuple[Span, Span]] = {}
    position = 1
    pieces = ["{"]
    for number, (name, key_text, value_text) in enumerate(parts):
        if number:
            pieces.append(", ")
            position += 2
        item_start = position
        value_start = position + len(key_text) + 2
        position = value_start + len(value_text)
        layout.setdefault(name, ((value_start, position), (item_start, position)))
        pieces += [key_text, ": ", value_text]
    pieces.append("}")
    if parts and "".join(pieces) == text:
        return text, layout
    return text, _read_layout(text, [str(key) for key in record])


def _read_layout(text: str, keys: Sequence[str]) -> dict[str, tuple[Span, Span]]:
    imitation = read_imitation(text, keys)
    return {key: (span, span) for key, span in imitation.spans.items()}


# -- copies ---------------------------------------------------------------------------------------


def find_copies(
    text: str,
    source: str,
    *,
    anchor: int = COPY_ANCHOR_CHARS,
    step: int = COPY_ANCHOR_STEP,
    window: int = COPY_WINDOW_CHARS,
    max_copies: int = MAX_COPIES,
) -> list[Copy]:
    """Runs of ``text`` found verbatim in ``source``, in text order, not overlapping in text.

    Every common run of at least ``anchor + step - 1`` characters within the first ``window``
    characters of each is found (as part of a copy at least that long): ``source`` is indexed by
    its ``anchor``-character runs at every ``step``-th position, ``text`` is looked up at every
    position, and a hit is extended left (up to ``step - 1`` characters) and right (galloping
    comparisons of slices). Repeated anchors keep a few positions; the longest extension wins.
    The scan resumes after each copy, so the cost is linear in ``window``.
    """
    text = text[:window]
    source = source[:window]
    if anchor < 1 or step < 1 or len(text) < anchor or len(source) < anchor:
        return []
    index: dict[str, list[int]] = {}
    for at in range(0, len(source) - anchor + 1, step):
        positions = index.setdefault(source[at : at + anchor], [])
        if len(positions) < _POSITIONS_PER_ANCHOR:
            positions.append(at)
    copies: list[Copy] = []
    floor = 0  # copies do not overlap in the text
    at = 0
    last = len(text) - anchor
    while at <= last and len(copies) < max_copies:
        hits = index.get(text[at : at + anchor])
        if hits is None:
            at += 1
            continue
        best: tuple[int, int, int] | None = None  # (length, text start, source start)
        for position in hits:
            back = 0
            while (
                back < step - 1
                and at - back > floor
                and position - back > 0
                and text[at - back - 1] == source[position - back - 1]
            ):
                back += 1
            forward = anchor + common_prefix(text, at + anchor, source, position + anchor)
            length = back + forward
            if best is None or length > best[0]:
                best = (length, at - back, position - back)
        assert best is not None
        length, start, origin = best
        copies.append(Copy(start, start + length, origin))
        floor = start + length
        at = floor
    return copies


def common_prefix(a: str, i: int, b: str, j: int) -> int:
    """The length of the common prefix of ``a[i:]`` and ``b[j:]``, by galloping slice
    comparisons (C speed), then halving."""
    limit = min(len(a) - i, len(b) - j)
    if limit <= 0:
        return 0
    good, size = 0, 32
    while good < limit:
        probe = min(limit, good + size)
        if a[i + good : i + probe] != b[j + good : j + probe]:
            bad = probe
            break
        good = probe
        size *= 2
    else:
        return good
    while bad - good > 1:
        middle = (good + bad) // 2
        if a[i + good : i + middle] == b[j + good : j + middle]:
            good = middle
        else:
            bad = middle
    return good


# -- values, the stop, the prose around -----------------------------------------------------------


def _cut_key(imitation: Imitation) -> str | None:
    """The key whose value the imitation stops inside, if it was cut off."""
    if not imitation.cut_off or not imitation.spans:
        return None
    key, span = max(imitation.spans.items(), key=lambda item: item[1][1])
    return key if span[1] >= imitation.end else None


def _same_value(record_value: object, written: str, *, prefix: bool = False) -> bool:
    """Whether the reply wrote the record's value (as text; up to whitespace and quotes; ids as
    numbers). With ``prefix`` (a value the reply stopped inside), a faithful start counts."""
    expected = _normalized(record_value if isinstance(record_value, str) else _text(record_value))
    got = _normalized(written)
    if got == expected:
        return True
    if prefix:
        return expected.startswith(got)
    if not isinstance(record_value, str):
        a, b = expected.strip("'\" "), got.strip("'\" ")
        if a == b:
            return True
        try:
            return float(a) == float(b)
        except (ValueError, OverflowError):
            return False
    return False


def _text(value: object) -> str:
    try:
        return str(value)
    except (ValueError, RecursionError):
        return ""


def _normalized(text: str) -> str:
    return " ".join(text.split())


def _stop(
    imitation: Imitation,
    reply: str,
    record_text: str,
    layout: Mapping[str, tuple[Span, Span]],
    cut_key: str | None,
    copies: Sequence[Copy],
    done_reason: str | None,
) -> Stop | None:
    capped = done_reason == "length"
    if imitation.cut_off or (capped and imitation.found and not imitation.closed):
        record_at = None
        if cut_key is not None and cut_key in layout:
            value_start = layout[cut_key][0][0]
            written_start = imitation.spans[cut_key][0]
            record_at = value_start + common_prefix(reply, written_start, record_text, value_start)
        elif copies:
            record_at = copies[-1].record_end
        return Stop("capped" if capped else "cut_off", imitation.end, record_at, cut_key)
    if capped:
        end = len(reply.rstrip())
        record_at = copies[-1].record_end if copies and copies[-1].reply_end >= end else None
        return Stop("capped", end, record_at)
    if imitation.found and imitation.closed:
        if any(key not in imitation.values for key in layout):
            return Stop("closed", imitation.end)
    return None


def _outside(reply: str, imitation: Imitation) -> tuple[Span, ...]:
    """Prose before and after the imitation (lead-in and trailer), without surrounding space."""
    if not imitation.found:
        return ()
    spans = []
    before = reply[: imitation.start]
    if before.strip():
        start = len(before) - len(before.lstrip())
        spans.append((start, len(before.rstrip())))
    after = reply[imitation.end :]
    if after.strip():
        start = imitation.end + len(after) - len(after.lstrip())
        spans.append((start, imitation.end + len(after.rstrip())))
    return tuple(spans)


# -- segments and pieces --------------------------------------------------------------------------


def segments(length: int, marks: Iterable[Mark]) -> list[Segment]:
    """``[0, length)`` cut into runs with the same marks throughout, in order, covering it all;
    a zero-width mark (the stop) is a zero-width segment at its place, before the run there.

    Marks are clipped to ``[0, length]``. When several keyed marks overlap, the run keeps the
    key of the narrowest. Cost: O(m log m) for m marks, plus the runs.
    """
    events: list[tuple[int, int, int]] = []  # (position, +1 open / -1 close, mark number)
    points: list[Mark] = []
    kept: list[Mark] = []
    for mark in marks:
        start, end = max(0, min(mark.start, length)), max(0, min(mark.end, length))
        if end < start:
            continue
        clipped = Mark(start, end, mark.kind, mark.key)
        if start == end:
            if mark.kind == "stop":
                points.append(clipped)
            continue
        events.append((start, 1, len(kept)))
        events.append((end, -1, len(kept)))
        kept.append(clipped)
    events.sort(key=lambda e: (e[0], e[1]))
    points.sort(key=lambda m: m.start)
    boundaries = sorted({0, length, *(e[0] for e in events), *(m.start for m in points)})
    active: dict[int, Mark] = {}
    result: list[Segment] = []
    e = p = 0
    for number, position in enumerate(boundaries):
        while e < len(events) and events[e][0] == position:
            _, change, which = events[e]
            if change > 0:
                active[which] = kept[which]
            else:
                active.pop(which, None)
            e += 1
        while p < len(points) and points[p].start == position:
            result.append(Segment(position, position, ("stop",), points[p].key))
            p += 1
        if number + 1 < len(boundaries):
            end = boundaries[number + 1]
            kinds = tuple(sorted({m.kind for m in active.values()}))
            keyed = [m for m in active.values() if m.key is not None]
            key = min(keyed, key=lambda m: m.end - m.start).key if keyed else None
            result.append(Segment(position, end, kinds, key))
    return result


#: Characters of an unmarked (or merely unreached or missing) run shown before it is elided...
PLAIN_RUN_CHARS: Final = 240
#: ...and of a marked run (copied, same, changed, extra).
MARKED_RUN_CHARS: Final = 1_500
_QUIET = frozenset({"unreached", "missing", "outside"})


def pieces(
    text: str,
    runs: Sequence[Segment],
    *,
    budget: int,
    plain_chars: int = PLAIN_RUN_CHARS,
    marked_chars: int = MARKED_RUN_CHARS,
) -> list[Piece]:
    """The runs of ``text`` as pieces to show, within about ``budget`` characters.

    A run longer than its allowance (``plain_chars`` when it carries no mark or only quiet ones,
    ``marked_chars`` otherwise) keeps its head and tail around a gap; once ``budget`` characters
    are shown, the rest is gaps, except that stops are always kept. Consecutive gaps merge.
    """
    out: list[Piece] = []
    shown = 0

    def gap(chars: int) -> None:
        if chars <= 0:
            return
        if out and out[-1].elided:
            out[-1] = Piece("", ("elided",), None, out[-1].elided + chars)
        else:
            out.append(Piece("", ("elided",), None, chars))

    for run in runs:
        if run.start == run.end:
            out.append(Piece("", run.kinds, run.key))
            continue
        size = run.end - run.start
        if shown >= budget:
            gap(size)
            continue
        quiet = all(kind in _QUIET for kind in run.kinds)
        allowance = min(plain_chars if quiet else marked_chars, max(budget - shown, 2))
        if size <= allowance:
            out.append(Piece(text[run.start : run.end], run.kinds, run.key))
            shown += size
            continue
        head = (allowance + 1) // 2
        tail = allowance - head
        out.append(Piece(text[run.start : run.start + head], run.kinds, run.key))
        gap(size - head - tail)
        if tail:
            out.append(Piece(text[run.end - tail : run.end], run.kinds, run.key))
        shown += allowance
    return out


__all__ = [
    "COPY_ANCHOR_CHARS",
    "COPY_ANCHOR_STEP",
    "COPY_WINDOW_CHARS",
    "MAX_COPIES",
    "Annotation",
    "Copy",
    "KeyAnnotation",
    "Mark",
    "MarkKind",
    "Piece",
    "Segment",
    "Stop",
    "annotate",
    "common_prefix",
    "find_copies",
    "pieces",
    "record_layout",
    "segments",
]
