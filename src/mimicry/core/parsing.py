"""Reading a reply that imitates a dataset record: where the imitation is, its keys and values,
and whether it stops part way.

A reply is untrusted text. :func:`read_imitation` finds *the imitation*, the part of the reply
that imitates a record (the behavior definitions in :mod:`mimicry.core.behaviors` rest on it):

1. Surrounding whitespace and one Markdown code fence are set aside (a fence the reply never
   closed, because it stopped, too), and a *short lead-in* of prose may come first: at most
   :data:`LEAD_IN_MAX_LINES` lines and :data:`LEAD_IN_MAX_CHARS` characters before the
   imitation starts ("Here is the record:").
2. The imitation opens with ``{`` (form ``braced``), with ``[`` and ``{`` (form ``list``: a list
   of records, whose element holding most of the record's keys stands for the record), with a
   call whose arguments are the record's keys (form ``call``: ``dict(id=1, ...)``), or is a run
   of lines that each give a key and a value (form ``lines``: ``key: value`` as YAML, bullets,
   bold or quoted keys, ``key = value``, a Markdown table down or across, a CSV header and its
   row, XML-like ``<key>value</key>`` elements) with at least one of the record's keys.
3. After a braced imitation closes, prose may follow (the *trailer*). When the reply had a
   lead-in, the trailer must be shorter than the imitation: a JSON snippet inside an explanation
   illustrates an answer, it is not an imitation.
A reply that does not open like that (a plain answer, an answer with a code sample in the middle
of its prose, an empty reply) holds no imitation.

Keys are read in any common notation: ``'key':`` (Python), ``"key":`` (JSON), ``key:``
(unquoted, inside braces or at the start of a line), and the line notations above. When the
imitation wraps the record in one object (``{"record": {...}}``, ``{'input': {...}, 'output':
...}``, ``{"data": [{...}]}``, or the record written as a string inside it) the keys of the inner
record count as the imitation's too.

The structure is read by ``json.JSONDecoder.raw_decode``, else ``ast.literal_eval`` (never
``eval``, and only on text whose nesting and size a linear pre-scan bounded), else by a tolerant
scanner that reads the slips models make when they copy a Python repr by hand: a bare apostrophe
inside a single-quoted value (``'What's the best first move?'``), unescaped double quotes inside a
double-quoted value (``"prompt": "["Who made you?"]"``), unquoted keys, a missing comma before
the next key, a value cut off. A quote ends a string only where what follows fits the structure
(a colon after a key; the closing bracket, or a comma and then a next key, after a value);
anywhere else it is part of the text, as a careful human reads it.

Hostile input: :func:`read_imitation` never raises on a ``str``, whatever it holds (NULs, lone
surrogates, ``"{" * 100_000``, megabytes of text). The scanner reads at most
:data:`SCAN_MAX_TOKENS` structural tokens over at most :data:`MAX_CANDIDATES` starting points and
:data:`MAX_NESTING` levels; each token costs one C regex search and a lookahead of at most
:data:`KEY_LOOKAHEAD_CHARS` characters, so the read is linear in the reply's length. The stated
bound is 50 ms per 1 MB reply (tested in ``tests/core/test_parsing.py``).
"""

from __future__ import annotations

import ast
import itertools
import json
import re
import reprlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, TypeVar

Form = Literal["braced", "list", "call", "lines", "none"]
ReadMethod = Literal["json", "literal", "scan", "lines", "none"]

#: A lead-in of prose before the imitation: at most this many lines (a short code block counts
#: its lines)...
LEAD_IN_MAX_LINES = 4
#: ...and this many characters.
LEAD_IN_MAX_CHARS = 240
#: Deeper brackets make the scanner give up (a record copy is two or three levels deep).
MAX_NESTING = 100
#: Structural tokens (strings, brackets, keys, values) the scanner reads in all, per reply.
SCAN_MAX_TOKENS = 20_000
#: ``ast.literal_eval`` is only tried on text with at most this many structural tokens (~12 ms).
LITERAL_MAX_TOKENS = 10_000
#: Places where an imitation may start that are read at most (the first ones in the reply).
MAX_CANDIDATES = 16
#: Characters a lookahead reads to decide whether a quote closes a string (a key and its colon).
KEY_LOOKAHEAD_CHARS = 100
#: Characters of a value kept as text (a record's prompt is far shorter).
VALUE_MAX_CHARS = 50_000
#: String values read as a record written inside a string (``{"input": "{'id': ..."}``).
NESTED_STRINGS_READ = 2
#: Keys of one mapping that are kept (a record has a handful).
MAX_KEYS = 2_000


@dataclass(frozen=True)
class Imitation:
    """What of a reply imitates a record (see the module docstring).

    ``form``: ``braced``, ``list``, ``lines`` or ``none`` (no imitation: a plain answer, an
    empty reply). ``start``/``end``: where the imitation is in the reply (offsets into the
    original text). ``lead_in`` and ``trailer``: the prose before and after it.
    ``keys``: the imitation's top-level keys in order of appearance, deduplicated (with a
    wrapped record's keys after them). ``values``: each key's value as text (a string's
    content with its escapes undone, other values as written), ``spans`` where each value is
    in the reply. ``closed``: a braced or list imitation whose outer bracket closed.
    ``cut_off``: the imitation stops inside a value (an unclosed string, list or mapping).
    ``wrapper``: how the record was wrapped: the wrapping key, ``"[]"`` for a list of records,
    None when it was not. ``method``: how the structure was read.
    """

    form: Form
    start: int = 0
    end: int = 0
    lead_in: str = ""
    trailer: str = ""
    keys: tuple[str, ...] = ()
    values: dict[str, str] = field(default_factory=dict)
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)
    closed: bool = False
    cut_off: bool = False
    wrapper: str | None = None
    method: ReadMethod = "none"

    @property
    def found(self) -> bool:
        """Whether the reply holds an imitation at all."""
        return self.form != "none"

    @property
    def opens_with_brace(self) -> bool:
        """A braced imitation, or a list of records (which counts through its first record)."""
        return self.form in ("braced", "list")


NO_IMITATION = Imitation(form="none")


def read_imitation(reply: str, record_keys: Sequence[str] = ()) -> Imitation:
    """Find and read the imitation in ``reply`` (see the module docstring); never raises.

    ``record_keys`` are the record's top-level keys: they choose among a list's records and a
    wrapper's inner record.
    """
    reader = _Reader(reply, tuple(str(key) for key in record_keys))
    return reader.read()


# -- finding the imitation ------------------------------------------------------------------------

# A path from a structure to the mapping that stands for the record: keys and list indices.
_Path = tuple[str | int, ...]


class _Reader:
    def __init__(self, reply: str, record_keys: tuple[str, ...], *, nested: bool = False) -> None:
        self.reply = reply
        self.record_keys = record_keys
        self.scanner = _Scanner(reply)
        self._nested = nested

    def read(self) -> Imitation:
        reply = self.reply
        start = len(reply) - len(reply.lstrip())
        end = len(reply.rstrip())
        if start >= end:
            return NO_IMITATION
        body_start, body_end = _unfence(reply, start, end)
        opening = self._opening(body_start, body_end, end)
        return NO_IMITATION if opening is None else opening

    def _acceptable(self, imitation: Imitation) -> bool:
        """After a lead-in, a closed imitation needs a short trailer."""
        if not imitation.lead_in or not imitation.trailer:
            return True
        return len(imitation.trailer) < imitation.end - imitation.start

    def _opening(self, start: int, end: int, outer_end: int) -> Imitation | None:
        """The imitation at the start of the body, after at most a short lead-in."""
        reply = self.reply
        window_end = min(end, start + LEAD_IN_MAX_CHARS + 1)
        prose_lines = 0
        line_start = start
        tried = 0
        while line_start < end and prose_lines <= LEAD_IN_MAX_LINES and tried < MAX_CANDIDATES:
            line_end = reply.find("\n", line_start, end)
            line_end = end if line_end < 0 else line_end
            fence = _FENCE_OPEN.match(reply, line_start, end)
            if fence is not None:
                # a fence after the lead-in: the imitation is inside it
                inner_end, _ = _fence_body_end(reply, fence, end)
                at = _skip_space(reply, fence.end(), inner_end)
                tried += 1
                found = self._structure_at(at, inner_end) or self._lines_at(at, inner_end)
                if found is not None:
                    framed = self._framed(found, start, outer_end)
                    if self._acceptable(framed):
                        return framed
            else:
                for match in _STRUCTURE_START.finditer(
                    reply, line_start, min(line_end, window_end)
                ):
                    tried += 1
                    if tried > MAX_CANDIDATES:
                        break
                    found = self._structure_at(match.start(), end)
                    if found is not None:
                        framed = self._framed(found, start, outer_end)
                        if self._acceptable(framed):
                            return framed
                if line_start < window_end and _lines_start(reply, line_start, line_end):
                    tried += 1
                    found = self._lines_at(line_start, end)
                    if found is not None:
                        return self._framed(found, start, outer_end)
            if reply[line_start:line_end].strip():
                prose_lines += 1
            line_start = line_end + 1
        return None

    def _framed(self, imitation: Imitation, body_start: int, outer_end: int) -> Imitation:
        """The imitation with its lead-in and trailer (code fence lines are not prose). A
        closed imitation followed by a copy of the record again that stops inside a value is
        cut off: the reply stopped part way."""
        reply = self.reply
        lead_in = _without_fences(reply[body_start : imitation.start])
        trailer = _without_fences(reply[imitation.end : outer_end]) if imitation.closed else ""
        cut_off = imitation.cut_off
        if imitation.closed and imitation.form in ("braced", "list"):
            again = _skip_separators(reply, imitation.end, outer_end)
            if again < outer_end and reply[again] == "{":
                node = self.scanner.read(again, outer_end)
                if isinstance(node, _Obj) and not node.closed and node.inside:
                    cut_off = self._score(node) >= 2
        return replace(imitation, lead_in=lead_in, trailer=trailer, cut_off=cut_off)

    def _structure_at(self, at: int, end: int) -> Imitation | None:
        """A braced, list or call imitation starting at ``at`` (``{``, ``[{`` or ``name(k=``)."""
        reply = self.reply
        if at >= end:
            return None
        call = _CALL_START.match(reply, at, end)
        if call is not None:
            node: _Node | None = self.scanner.read_call(call.end() - 1, end)
        elif reply[at] == "[":
            first = _skip_space(reply, at + 1, end)
            if first >= end or reply[first] != "{":
                return None
            node = self.scanner.read(at, end)
        elif reply[at] == "{":
            node = self.scanner.read(at, end)
        else:
            return None
        path: _Path
        if call is not None and isinstance(node, _Obj) and self._score(node) < 2:
            return None  # a call in code, not a record written as keyword arguments
        if isinstance(node, _Obj):
            form: Form = "call" if call is not None else "braced"
            record, path = self._unwrap(node)
            wrapper = None if not path else str(path[0])
        elif isinstance(node, _Arr):
            indexed = [(i, item) for i, item in enumerate(node.items) if isinstance(item, _Obj)]
            if not indexed:
                return None
            index, best = max(indexed, key=lambda pair: self._score(pair[1]))  # the first best
            record, inner = self._unwrap(best)
            path = (index, *inner)
            form, wrapper = "list", "[]" if not inner else str(inner[0])
        else:
            return None
        exact, method = self._exact(node, at) if node.closed and call is None else (None, "scan")
        keys, values, spans = _entries(node, path, exact)
        if isinstance(record, _Obj) and self.record_keys and not self._nested:
            keys, values, wrapper = self._record_in_a_string(record, keys, values, wrapper)
        return Imitation(
            form=form,
            start=at,
            end=node.end,
            keys=keys,
            values=values,
            spans=spans,
            closed=node.closed,
            cut_off=not node.closed and node.inside,
            wrapper=wrapper,
            method=method,
        )

    def _record_in_a_string(
        self,
        node: _Obj,
        keys: tuple[str, ...],
        values: dict[str, str],
        wrapper: str | None,
    ) -> tuple[tuple[str, ...], dict[str, str], str | None]:
        """A wrapper whose value is the record written as a string (``{"input": "{'id': ..."}``)
        gives the keys and values of that record."""
        present = sum(1 for key in self.record_keys if key in keys)
        tried = 0
        for key, value in node.entries:
            if not isinstance(value, _Str) or not value.text.lstrip().startswith("{"):
                continue
            tried += 1
            if tried > NESTED_STRINGS_READ:
                break
            inner = _Reader(value.text, self.record_keys, nested=True).read()
            found = sum(1 for name in self.record_keys if name in inner.keys)
            if found > present:
                merged = tuple(dict.fromkeys((*keys, *inner.keys)))
                return merged, {**values, **inner.values}, key
        return keys, values, wrapper

    def _score(self, node: _Obj) -> int:
        keys = {key for key, _ in node.entries}
        if not self.record_keys:
            return len(keys)
        return sum(1 for key in self.record_keys if key in keys)

    def _unwrap(self, node: _Obj) -> tuple[_Obj, _Path]:
        """The mapping that stands for the record: ``node``, or one it wraps (one level down)."""
        best: tuple[int, _Obj, _Path] | None = None
        for key, value in node.entries:
            if isinstance(value, _Obj):
                candidates: list[tuple[_Obj, _Path]] = [(value, (key,))]
            elif isinstance(value, _Arr):
                candidates = [
                    (item, (key, i)) for i, item in enumerate(value.items) if isinstance(item, _Obj)
                ]
            else:
                continue
            for candidate, path in candidates:
                score = self._score(candidate)
                if best is None or score > best[0]:
                    best = (score, candidate, path)
        if best is not None and best[0] > max(self._score(node), 0):
            return best[1], best[2]
        return node, ()

    def _exact(self, node: _Obj | _Arr, at: int) -> tuple[object | None, ReadMethod]:
        """The structure's exact value when it is valid JSON or a valid Python literal."""
        reply = self.reply
        try:
            value, stop = _JSON.raw_decode(reply, at)
        except (ValueError, RecursionError, MemoryError):
            value, stop = None, -1
        if stop == node.end and isinstance(value, dict | list):
            return value, "json"
        if node.tokens_to - node.tokens_from <= LITERAL_MAX_TOKENS and not self.scanner.exhausted:
            literal = _literal(reply[at : node.end])
            if isinstance(literal, dict | list):
                return literal, "literal"
        return None, "scan"

    def _lines_at(self, at: int, end: int) -> Imitation | None:
        """Lines that give a key and a value each (``key: value``, ``- 'key': value``,
        ``**key**: value``, ``key = value``, a Markdown table, a CSV header and row), from
        ``at``; at least two of them, one a record key (any two keys without a record)."""
        reply = self.reply
        first_end = reply.find("\n", at, end)
        first_end = end if first_end < 0 else first_end
        if _TAG_OPEN.match(reply, at, first_end):
            found = self._tags_at(at, end)
        elif _TABLE_ROW.match(reply, at, first_end):
            found = self._table_at(at, end)
        elif _CSV_HEADER.fullmatch(reply, at, first_end):
            found = self._csv_at(at, first_end, end)
        else:
            found = self._key_lines_at(at, end)
        if found is None:
            return None
        keys, spans = found
        wanted = self.record_keys or keys
        if len(keys) < 2 or not any(key in wanted for key in keys):
            return None
        values = {key: _lines_value(reply[slice(*spans[key])]) for key in keys}
        last = max(spans.values(), key=lambda span: span[0])
        return Imitation(
            form="lines",
            start=at,
            end=end,
            keys=tuple(keys),
            values=values,
            spans=spans,
            closed=False,
            cut_off=self.scanner.value_is_open(*last),
            method="lines",
        )

    def _key_lines_at(
        self, at: int, end: int
    ) -> tuple[list[str], dict[str, tuple[int, int]]] | None:
        reply = self.reply
        keys: list[str] = []
        spans: dict[str, tuple[int, int]] = {}
        last: tuple[str, int] | None = None  # the key of the line read last, and its value's start
        line_start = at
        scanner = self.scanner
        while line_start < end and len(keys) < MAX_KEYS and not scanner.exhausted:
            scanner.tokens += 1  # a line is a token of the reply's reading budget
            line_end = reply.find("\n", line_start, end)
            line_end = end if line_end < 0 else line_end
            match = _KEY_LINE.match(reply, line_start, line_end)
            if match is not None:
                key = match.group("qkey") or match.group("key") or ""
                last = (key, match.start("value"))
                if key not in spans:
                    keys.append(key)
                    spans[key] = (match.start("value"), line_end)
            elif last is not None and spans.get(last[0], (-1, -1))[0] == last[1]:
                spans[last[0]] = (last[1], line_end)  # a continuation line of the value
            line_start = line_end + 1
        return (keys, spans) if keys else None

    def _tags_at(self, at: int, end: int) -> tuple[list[str], dict[str, tuple[int, int]]] | None:
        """XML-like ``<key>value</key>`` elements (a wrapping element such as ``<record>`` is
        looked through); an element left open runs to the end."""
        reply = self.reply
        keys: list[str] = []
        spans: dict[str, tuple[int, int]] = {}
        position = at
        while position < end and len(keys) < MAX_KEYS and not self.scanner.exhausted:
            self.scanner.tokens += 1
            opening = _TAG_OPEN.search(reply, position, end)
            if opening is None:
                break
            name = opening.group(1)
            closing = reply.find(f"</{name}>", opening.end(), end)
            value_end = end if closing < 0 else closing
            inner = reply[opening.end() : value_end]
            if _TAG_OPEN.search(inner) is not None and name not in self.record_keys:
                position = opening.end()  # a wrapping element: read what it holds
                continue
            if name not in spans:
                keys.append(name)
                spans[name] = (opening.end(), value_end)
            position = value_end if closing < 0 else closing + len(name) + 3
        return (keys, spans) if keys else None

    def _table_at(self, at: int, end: int) -> tuple[list[str], dict[str, tuple[int, int]]] | None:
        """A Markdown table: keys down its first column, or across its header row."""
        reply = self.reply
        rows: list[list[tuple[str, int, int]]] = []
        line_start = at
        while line_start < end and len(rows) < MAX_KEYS and not self.scanner.exhausted:
            self.scanner.tokens += 1
            line_end = reply.find("\n", line_start, end)
            line_end = end if line_end < 0 else line_end
            if not _TABLE_ROW.match(reply, line_start, line_end):
                break
            cells = _table_cells(reply, line_start, line_end)
            if not all(_TABLE_RULE.fullmatch(text) for text, _, _ in cells):
                rows.append(cells)
            line_start = line_end + 1
        if not rows:
            return None
        header = [_plain_key(text) for text, _, _ in rows[0]]
        wanted = set(self.record_keys or header)
        if len(rows) >= 2 and sum(1 for key in header if key in wanted) >= 2:
            values = rows[1]
            spans = {
                key: (values[i][1], values[i][2]) if i < len(values) else (end, end)
                for i, key in enumerate(header)
            }
            return list(spans), spans
        keys: list[str] = []
        spans = {}
        for cells in rows:
            if len(cells) < 2:
                continue
            key = _plain_key(cells[0][0])
            if key and key not in spans:
                keys.append(key)
                spans[key] = (cells[1][1], cells[-1][2])
        return (keys, spans) if keys else None

    def _csv_at(
        self, at: int, header_end: int, end: int
    ) -> tuple[list[str], dict[str, tuple[int, int]]] | None:
        """A CSV header of keys and the row after it."""
        import csv

        reply = self.reply
        keys = [part.strip() for part in reply[at:header_end].split(",")]
        row_start = min(header_end + 1, end)
        row_end = reply.find("\n", row_start, end)
        row_end = end if row_end < 0 else row_end
        row = next(csv.reader([reply[row_start:row_end]]), [])
        spans: dict[str, tuple[int, int]] = {}
        cursor = row_start
        for index, key in enumerate(keys):
            if index < len(row):
                found = reply.find(row[index], cursor, row_end) if row[index] else cursor
                found = cursor if found < 0 else found
                spans.setdefault(key, (found, found + len(row[index])))
                cursor = found + len(row[index])
            else:
                spans.setdefault(key, (row_end, row_end))
        return list(spans), spans


def _table_cells(text: str, start: int, end: int) -> list[tuple[str, int, int]]:
    """The cells of a Markdown table row: (text, start, end) of each, stripped."""
    line = text[start:end]
    first = line.index("|")
    last = line.rindex("|")
    cells = []
    position = start + first + 1
    for part in line[first + 1 : last].split("|"):
        lead = len(part) - len(part.lstrip())
        cells.append((part.strip(), position + lead, position + lead + len(part.strip())))
        position += len(part) + 1
    return cells


def _plain_key(text: str) -> str:
    """A key as written in a table cell, without emphasis, code marks or quotes."""
    return text.strip().strip("*_`'\"").strip()


def _entries(
    node: _Obj | _Arr, path: _Path, exact: object | None
) -> tuple[tuple[str, ...], dict[str, str], dict[str, tuple[int, int]]]:
    """Keys, values and spans of the imitation along ``path``: the outer mapping's, then the
    wrapped record's (whose values win for the keys both have)."""
    layers: list[tuple[_Obj, object | None]] = []
    current: _Node | None = node
    current_exact = exact
    if isinstance(node, _Obj):
        layers.append((node, exact))
    for step in path:
        nxt: _Node | None = None
        if isinstance(current, _Obj) and isinstance(step, str):
            nxt = next((value for key, value in current.entries if key == step), None)
            current_exact = current_exact.get(step) if isinstance(current_exact, dict) else None
        elif isinstance(current, _Arr) and isinstance(step, int):
            nxt = current.items[step] if step < len(current.items) else None
            current_exact = (
                current_exact[step]
                if isinstance(current_exact, list | tuple) and step < len(current_exact)
                else None
            )
        current = nxt
        if isinstance(current, _Obj):
            layers.append((current, current_exact))
    keys: list[str] = []
    values: dict[str, str] = {}
    spans: dict[str, tuple[int, int]] = {}
    for layer, layer_exact in reversed(layers):
        exact_map = _as_mapping(layer_exact) if isinstance(layer_exact, dict) else None
        for key, value in layer.entries[:MAX_KEYS]:
            if key in values:
                continue
            text: str | None
            if exact_map is not None and key in exact_map:
                text = _field_text(exact_map[key])
            else:
                text = None if value is None else value.text
            values[key] = "" if text is None else text
            spans[key] = (value.start, value.end) if value is not None else (layer.end, layer.end)
    for layer, _ in layers:
        for key, _value in layer.entries[:MAX_KEYS]:
            if key not in keys:
                keys.append(key)
    return tuple(keys), values, spans


def _lines_start(text: str, start: int, end: int) -> bool:
    """Whether a line may open a ``lines`` imitation (a key line, a table row, a CSV header,
    an XML-like element)."""
    return bool(
        _KEY_LINE.match(text, start, end)
        or _TAG_OPEN.match(text, start, end)
        or _TABLE_ROW.match(text, start, end)
        or _CSV_HEADER.fullmatch(text, start, end)
    )


def _lines_value(text: str) -> str:
    """A ``key: value`` line's value as text: a quoted string's content, else as written."""
    value = text.strip().rstrip(",").strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return unescape_lenient(value[1:-1][:VALUE_MAX_CHARS])
    return value[:VALUE_MAX_CHARS]


def _without_fences(text: str) -> str:
    """``text`` without code fence lines, stripped (what is left is prose)."""
    if "```" not in text and "~~~" not in text:
        return text.strip()
    return _FENCE_ONLY_LINE.sub("", text).strip()


# -- code fences ----------------------------------------------------------------------------------

# An info string is a language name ("json", "python", "c++"), never the reply's first line.
_FENCE_OPEN = re.compile(r"[ \t]*(?:(`{3,})|(~{3,}))[ \t]*[\w+#.\-]*[ \t]*\r?\n")
_FENCE_LINE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*\r?$", re.MULTILINE)
_ONE_LINE_FENCE = re.compile(r"`{3,}")


def _unfence(reply: str, start: int, end: int) -> tuple[int, int]:
    """The body of ``reply[start:end]`` inside one fence that opens it: (start, end).

    A fence that closes before the end leaves the text after it outside the body (it is read
    as a trailer); a fence never closed runs to the end.
    """
    opening = _FENCE_OPEN.match(reply, start, end)
    if opening is None:
        one_line = _ONE_LINE_FENCE.match(reply, start, end)
        if one_line is not None and "\n" not in reply[start:end]:
            # ```{'id': 1}``` on one line is not CommonMark, but models write it
            width = one_line.end() - one_line.start()
            inner_end = end
            while inner_end > one_line.end() and reply[inner_end - 1] == "`":
                inner_end -= 1
            if end - inner_end >= width and inner_end > one_line.end():
                return _skip_space(reply, one_line.end(), inner_end), inner_end
        return start, end
    body_end, _ = _fence_body_end(reply, opening, end)
    body_start = _skip_space(reply, opening.end(), body_end)
    return body_start, _rstrip_at(reply, body_start, body_end)


def _fence_body_end(reply: str, opening: re.Match[str], end: int) -> tuple[int, int]:
    """Where a fence's body ends and where the text after its closing line starts."""
    fence = opening.group(1) or opening.group(2)
    char, width = fence[0], len(fence)
    for line in _FENCE_LINE.finditer(reply, opening.end(), end):
        run = line.group(1)
        if run[0] == char and len(run) >= width:
            return line.start(), line.end()
    # closing run right after the content on the last line ("...}```"), or never closed
    tail = reply[opening.end() : end].rstrip()
    if tail.endswith(char * width):
        closing = opening.end() + len(tail.rstrip(char))
        return closing, end
    return end, end


def strip_code_fence(text: str) -> str:
    """``text`` without surrounding whitespace and without one enclosing Markdown code fence.

    The fence is a line of three or more backticks or tildes (optionally with an info string such
    as ``json``) at the very start. Its closing run may end the text on its own line or right
    after the content. An opening fence that is never closed (a reply cut off inside its fence)
    is removed too. A fence that closes before the end, with prose after it, does not enclose the
    reply, and the text is returned as it is (stripped).
    """
    start = len(text) - len(text.lstrip())
    end = len(text.rstrip())
    if start >= end:
        return ""
    opening = _FENCE_OPEN.match(text, start, end)
    if opening is not None:
        _, after = _fence_body_end(text, opening, end)
        if text[after:end].strip():
            return text[start:end]
    body_start, body_end = _unfence(text, start, end)
    return text[body_start:body_end]


def _match_end(pattern: re.Pattern[str], text: str, pos: int, end: int) -> int:
    """Where a match of ``pattern`` (one that may match empty) at ``pos`` ends."""
    match = pattern.match(text, pos, end)
    return pos if match is None else match.end()


def _skip_space(text: str, pos: int, end: int) -> int:
    return _match_end(_SPACE, text, pos, end)


def _skip_separators(text: str, pos: int, end: int) -> int:
    return _match_end(_SEPARATORS, text, pos, end)


def _rstrip_at(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1].isspace():
        end -= 1
    return end


# -- where an imitation may start -----------------------------------------------------------------

_STRUCTURE_START = re.compile(r"\{|\[(?=\s*\{)|\b[A-Za-z_][\w.]*\((?=\s*[A-Za-z_]\w*\s*=)")
# dict(id=1, ...), Record(id=1, ...): a call whose arguments are keywords
_CALL_START = re.compile(r"[A-Za-z_][\w.]*\((?=\s*[A-Za-z_]\w*\s*=)")
_FENCE_ONLY_LINE = re.compile(r"^[ \t]*(?:`{3,}|~{3,})[\w+#.\-]*[ \t]*$", re.MULTILINE)
_KEY_LINE = re.compile(
    r"[ \t]*(?:(?:[-*\u2022+]|\d{1,3}[.)])[ \t]+)?"  # a bullet or a number
    r"(?P<mark>\*\*|__|`)?"  # bold or code around the key
    r"(?:(['\"])(?P<qkey>[^'\"\n]{1,64})\2|(?P<key>[A-Za-z_][\w\-]{0,63}))"
    r"(?:(?P=mark)[ \t]*[:=]|[ \t]*[:=](?:(?P=mark))?)(?!//)[ \t]*(?P<value>[^\n]*)"
)
_TABLE_ROW = re.compile(r"[ \t]*\|.*\|[ \t]*$")
_TAG_OPEN = re.compile(r"[ \t]*<([A-Za-z_][\w\-]{0,63})>")
_TABLE_RULE = re.compile(r":?-{2,}:?|")
_CSV_HEADER = re.compile(r"[ \t]*[A-Za-z_][\w\-]*(?:[ \t]*,[ \t]*[A-Za-z_][\w\-]*){2,}[ \t]*")


# -- the tolerant scanner -------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Str:
    start: int  # the value's first character (the opening quote)
    end: int  # just past the closing quote, or the end of the text
    content: str  # as written, escapes not undone
    closed: bool
    depth: int = 0

    @property
    def text(self) -> str:
        return unescape_lenient(trim_partial_escape(self.content[:VALUE_MAX_CHARS]))


@dataclass(eq=False, slots=True)
class _Bare:
    start: int
    end: int
    raw: str
    depth: int = 0

    @property
    def text(self) -> str:
        return self.raw


@dataclass(eq=False, slots=True)
class _Obj:
    start: int
    end: int
    entries: list[tuple[str, _Node | None]]
    closed: bool
    inside: bool = True  # unclosed: the text ended inside a key or a value (not between entries)
    raw_text: str = ""
    depth: int = 0
    tokens_from: int = 0
    tokens_to: int = 0

    @property
    def text(self) -> str:
        return self.raw_text


@dataclass(eq=False, slots=True)
class _Arr:
    start: int
    end: int
    items: list[_Node]
    closed: bool
    inside: bool = True  # unclosed: the text ended inside an item (not between items)
    raw_text: str = ""
    depth: int = 0
    tokens_from: int = 0
    tokens_to: int = 0

    @property
    def text(self) -> str:
        return self.raw_text


_Node = _Str | _Bare | _Obj | _Arr
_Container = TypeVar("_Container", _Obj, _Arr)


def _complete(node: _Node | None) -> bool:
    """Whether a value was read whole (a bare token at the very end counts as whole)."""
    if node is None:
        return False
    if isinstance(node, _Bare):
        return True
    return node.closed


Role = Literal["key", "value", "item"]

_QUOTES = "'\""
# String bodies up to (not including) the next unescaped quote; possessive, so no backtracking
# state builds up over a megabyte of escapes.
_STRING_BODY = {
    "'": re.compile(r"[^'\\]*+(?:\\[\s\S][^'\\]*+)*+"),
    '"': re.compile(r'[^"\\]*+(?:\\[\s\S][^"\\]*+)*+'),
    "'''": re.compile(r"[^'\\]*+(?:(?:\\[\s\S]|'(?!''))[^'\\]*+)*+"),
    '"""': re.compile(r'[^"\\]*+(?:(?:\\[\s\S]|"(?!""))[^"\\]*+)*+'),
}
_SPACE = re.compile(r"\s*")
_SEPARATORS = re.compile(r"[\s,]*")
# a key as the next thing in a mapping: quoted or bare, then a colon
_NEXT_KEY = re.compile(
    rf"(?:(['\"])[^'\"\n]{{0,{KEY_LOOKAHEAD_CHARS}}}?\1|[A-Za-z_][\w\-]{{0,63}})[ \t]*[:=]"
)
_BARE_KEY = re.compile(
    rf"[^\s:=,{{}}\[\]()'\"][^:=,{{}}\[\]()\n]{{0,{KEY_LOOKAHEAD_CHARS}}}?"
    r"(?=\s*[:=,})\]\n]|$)"
)
_BARE_VALUE = re.compile(rf"[^,}}\]\n]{{0,{VALUE_MAX_CHARS}}}")
_NEXT_KEY_WINDOW = KEY_LOOKAHEAD_CHARS + 70
_ELLIPSIS = ("...", "\u2026")
_NOT_DELIMITER = re.compile(r"[^:=,{}\[\]()'\"]*")


class _Scanner:
    """Reads bracketed structures tolerantly, with one token budget for the whole reply."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.size = len(text)
        self.tokens = 0

    @property
    def exhausted(self) -> bool:
        return self.tokens >= SCAN_MAX_TOKENS

    def tokens_within(self, node: _Node) -> int:
        if isinstance(node, _Obj | _Arr):
            return node.tokens_to - node.tokens_from
        return 1

    def read(self, at: int, end: int) -> _Node | None:
        """The structure starting at ``at`` (``{`` or ``[``), read up to ``end`` at most."""
        if self.exhausted:
            return None
        saved, self.size = self.size, end
        try:
            node, _ = self._value(at, 1, "value")
        finally:
            self.size = saved
        return node

    def read_call(self, at: int, end: int) -> _Obj | None:
        """The keyword arguments of a call whose ``(`` is at ``at``, read as a mapping."""
        if self.exhausted:
            return None
        saved, self.size = self.size, end
        try:
            node, _ = self._object(at, 1)
        finally:
            self.size = saved
        return node

    def value_is_open(self, start: int, end: int) -> bool:
        """Whether the value written in ``text[start:end]`` opens a string or bracket it never
        closes (for ``key: value`` lines)."""
        pos = _skip_space(self.text, start, end)
        if pos >= end or self.text[pos] not in "'\"[{":
            return False
        saved, self.size = self.size, end
        try:
            node, _ = self._value(pos, 1, "value")
        finally:
            self.size = saved
        if isinstance(node, _Str | _Obj | _Arr):
            return not node.closed
        return False

    def _count(self) -> bool:
        self.tokens += 1
        return self.tokens < SCAN_MAX_TOKENS

    def _value(self, pos: int, depth: int, role: Role) -> tuple[_Node | None, int]:
        text = self.text
        pos = _skip_space(text, pos, self.size)
        if pos >= self.size or not self._count():
            return None, self.size
        char = text[pos]
        if char == "{":
            return self._object(pos, depth)
        if char in "[(":
            return self._array(pos, depth)
        if char in _QUOTES:
            return self._string(pos, role, depth)
        bare = _BARE_VALUE.match(text, pos, self.size)
        stop = bare.end() if bare is not None else pos
        if stop == pos:
            stop = pos + 1
        return _Bare(pos, stop, text[pos:stop].strip(), depth), stop

    def _object(self, pos: int, depth: int) -> tuple[_Obj, int]:
        """A mapping: ``{...}``, or the keyword arguments of a call (``dict(id=1, ...)``)."""
        text = self.text
        node = _Obj(pos, self.size, [], False, depth=depth, tokens_from=self.tokens)
        if depth > MAX_NESTING:
            self.tokens = SCAN_MAX_TOKENS
            return self._finish(node, self.size), self.size
        pos += 1
        between = False  # the last thing read was a complete entry
        while not self.exhausted:
            pos = _skip_separators(text, pos, self.size)
            if pos >= self.size:
                break
            char = text[pos]
            if char in "}])":
                # a mismatched closer still closes one level: a slip, not a new structure
                node.closed = True
                return self._finish(node, pos + 1), pos + 1
            if not self._count():
                break
            between = False
            key: str | None
            if char in _QUOTES:
                key_node, pos = self._string(pos, "key", depth)
                key = key_node.text if key_node.closed else None
            elif char in "{[(":
                # not a key (a set of mappings, say): read it and move on
                item, pos = self._value(pos, depth + 1, "item")
                between = _complete(item)
                continue
            else:
                bare = _BARE_KEY.match(text, pos, self.size)
                if bare is None:
                    # prose where a key should be: skip to the next delimiter in one step
                    pos = max(_match_end(_NOT_DELIMITER, text, pos, self.size), pos + 1)
                    continue
                key = bare.group().strip()
                pos = bare.end()
            pos = _skip_space(text, pos, self.size)
            if pos < self.size and text[pos] in ":=":
                value, pos = self._value(pos + 1, depth + 1, "value")
                if key is not None and len(node.entries) < MAX_KEYS:
                    node.entries.append((key, value))
                between = _complete(value)
                continue
            if pos >= self.size and key is not None and len(node.entries) < MAX_KEYS:
                node.entries.append((key, None))  # a key whose value never came
        node.inside = not between
        return self._finish(node, self.size), self.size

    def _array(self, pos: int, depth: int) -> tuple[_Arr, int]:
        text = self.text
        node = _Arr(pos, self.size, [], False, depth=depth, tokens_from=self.tokens)
        if depth > MAX_NESTING:
            self.tokens = SCAN_MAX_TOKENS
            return self._finish(node, self.size), self.size
        pos += 1
        between = False
        while not self.exhausted:
            pos = _skip_separators(text, pos, self.size)
            if pos >= self.size:
                break
            if text[pos] in "]})":
                node.closed = True
                return self._finish(node, pos + 1), pos + 1
            item, pos = self._value(pos, depth + 1, "item")
            if item is not None and len(node.items) < MAX_KEYS:
                node.items.append(item)
            between = _complete(item)
        node.inside = not between
        return self._finish(node, self.size), self.size

    def _finish(self, node: _Container, end: int) -> _Container:
        node.end = end
        node.raw_text = self.text[node.start : min(end, node.start + VALUE_MAX_CHARS)]
        node.tokens_to = self.tokens
        return node

    def _string(self, pos: int, role: Role, depth: int) -> tuple[_Str, int]:
        """A quoted string at ``pos``; a quote closes it only where the structure goes on."""
        text = self.text
        char = text[pos]
        quote = char * 3 if text.startswith(char * 3, pos) else char
        body = pos + len(quote)
        search = body
        first_close = -1
        while True:
            content = _STRING_BODY[quote].match(text, search, self.size)
            stop = content.end() if content is not None else self.size
            if stop >= self.size or not text.startswith(quote, stop):
                if first_close >= 0 and role == "key":
                    return self._closed(pos, body, first_close, quote, depth)
                return _Str(pos, self.size, text[body : self.size], False, depth), self.size
            if first_close < 0:
                first_close = stop
            after = stop + len(quote)
            if len(quote) == 3 or self._closes(after, role):
                return self._closed(pos, body, stop, quote, depth)
            if role == "key" and (stop - body > KEY_LOOKAHEAD_CHARS or "\n" in text[body:stop]):
                return self._closed(pos, body, first_close, quote, depth)
            if not self._count():
                return _Str(pos, self.size, text[body : self.size], False, depth), self.size
            search = after

    def _closed(self, pos: int, body: int, stop: int, quote: str, depth: int) -> tuple[_Str, int]:
        end = stop + len(quote)
        return _Str(pos, end, self.text[body:stop], True, depth), end

    def _closes(self, after: int, role: Role) -> bool:
        """Whether a quote followed by ``text[after:]`` ends a string in this role."""
        text = self.text
        at = _skip_space(text, after, self.size)
        if at >= self.size:
            return True
        char = text[at]
        if role == "key":
            return char == ":"
        if role == "item":
            if char in "])":
                return True
            if char == ",":
                nxt = _skip_space(text, at + 1, self.size)
                return nxt >= self.size or text[nxt] in "'\"[{(])-0123456789tTfFnN"
            return False
        # a value in a mapping (or a keyword argument of a call)
        if char in "})":
            return True
        if char == ",":
            nxt = _skip_space(text, at + 1, self.size)
            return (
                nxt >= self.size
                or text[nxt] == "}"
                or text.startswith(_ELLIPSIS, nxt)
                or _NEXT_KEY.match(text, nxt, min(self.size, nxt + _NEXT_KEY_WINDOW)) is not None
            )
        if char in _QUOTES and at > after:
            # a missing comma before the next key ("'a': 'x'\n 'b': 'y'")
            return _NEXT_KEY.match(text, at, min(self.size, at + _NEXT_KEY_WINDOW)) is not None
        return False


# -- evaluators -----------------------------------------------------------------------------------

_JSON = json.JSONDecoder(strict=False)  # a raw newline or tab inside a string is a harmless slip
# Raw NULs and lone surrogates cannot be compiled; inside a string literal their escapes denote
# the very same characters, and outside one the text was not a literal anyway.
_UNCOMPILABLE = re.compile("[\x00\ud800-\udfff]")
_CLOSER = {"{": "}", "[": "]", "(": ")"}


def safe_literal_eval(text: str) -> object | None:
    """The Python literal a bracketed ``text`` (``{...}``, ``[...]``, ``(...)``) denotes, or None.

    Only text that starts with a bracket, closes it at its very end and passes the scanner's
    nesting and size limits is handed to ``ast.literal_eval``; anything else, and any failure of
    ``literal_eval`` itself, gives None. Never raises on a ``str``.
    """
    stripped = text.strip()
    if not stripped or stripped[0] not in _CLOSER:
        return None
    scanner = _Scanner(stripped)
    node = scanner.read(0, len(stripped))
    if (
        not isinstance(node, _Obj | _Arr)
        or not node.closed
        or node.end != len(stripped)
        or scanner.tokens > LITERAL_MAX_TOKENS
    ):
        return None
    return _literal(stripped)


def _literal(text: str) -> object | None:
    source = _UNCOMPILABLE.sub(_escape_uncompilable, text)
    try:
        with warnings.catch_warnings():
            # Invalid escapes such as "\d" in a reply warn (3.11: DeprecationWarning, 3.12+:
            # SyntaxWarning); a reply is data, and its quirks are no concern of the user's run.
            warnings.simplefilter("ignore")
            value: object = ast.literal_eval(source)
            return value
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError, OverflowError):
        # UnicodeError is a ValueError; OverflowError guards huge numeric edge cases.
        return None


def _escape_uncompilable(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _as_mapping(value: dict[object, object]) -> dict[str, object]:
    if all(isinstance(key, str) for key in value):
        return value  # type: ignore[return-value]
    # A literal may have other keys ({1: 'a', (2, 3): 'b'}): they count by their text.
    return {_field_text(key) or repr(type(key)): item for key, item in value.items()}


def _field_text(value: object) -> str | None:
    """``value`` as text: itself for a string, ``str(value)`` otherwise, None if unprintable.

    Containers go through a bounded repr (the same text as ``str`` up to 1,000 items a level and
    20 levels, "..." beyond), so a reply of half a million numbers costs no more than its parse.
    """
    if isinstance(value, str):
        return value
    try:
        if isinstance(value, list | tuple | dict | set | frozenset):
            return _FIELD_REPR.repr(value)
        return str(value)
    except (RecursionError, MemoryError, ValueError):
        # str() of an int over 4,300 digits raises ValueError (CPython's conversion limit).
        return None


class _FieldRepr(reprlib.Repr):
    """``reprlib`` with generous limits, keeping dict order (reprlib sorts keys, all of them)."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 20
        self.maxtuple = self.maxlist = self.maxdict = 1_000
        self.maxset = self.maxfrozenset = self.maxdeque = self.maxarray = 1_000
        self.maxstring = self.maxlong = self.maxother = 1_000_000

    def repr_dict(self, x: dict[object, object], level: int) -> str:
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        pieces = [
            f"{self.repr1(key, level - 1)}: {self.repr1(item, level - 1)}"
            for key, item in itertools.islice(x.items(), self.maxdict)
        ]
        if len(x) > self.maxdict:
            pieces.append("...")
        return "{" + ", ".join(pieces) + "}"


_FIELD_REPR = _FieldRepr()


# -- text helpers ---------------------------------------------------------------------------------

# Characters after the backslash a complete escape needs, by its first letter.
_ESCAPE_WIDTH = {"x": 3, "u": 5, "U": 9}


def trim_partial_escape(text: str) -> str:
    """``text`` without a backslash escape cut short at its end (``\\``, ``\\x4``, ``\\u20``...).

    For the content of a string literal (Python or JSON) that a reply left unclosed: closing it
    with a quote is only valid once a half-written escape is gone.
    """
    for _ in range(3):  # "\u12\" needs two cuts; a third would find a complete escape or none
        backslash = text.rfind("\\", max(0, len(text) - 10))
        if backslash < 0:
            return text
        run = backslash + 1 - len(text[: backslash + 1].rstrip("\\"))
        if run % 2 == 0:  # the last backslash is itself escaped: no escape starts there
            return text
        rest = text[backslash + 1 :]
        if rest[:1] == "N":
            complete = "}" in rest
        else:
            complete = len(rest) >= _ESCAPE_WIDTH.get(rest[:1], 1)
        if complete:
            return text
        text = text[:backslash]
    return text


def lenient_string_list(text: str, *, max_items: int = 1_000) -> list[str]:
    """The items of a list of strings written as ``text``, even when it is cut off or malformed.

    ``text`` starts with ``[``; items are quoted with ``"`` or ``'`` (JSON or Python style) and
    separated by commas; a quote closes an item only where a comma and a next item, or the
    closing bracket, follow (so unescaped inner quotes stay text); escapes are undone leniently
    (:func:`unescape_lenient`); a bare item is kept as written. An unclosed last item loses a
    half-written escape and a dangling high surrogate, so that a cut-off copy of a list reads as
    a prefix of the list. Linear; never raises.
    """
    scanner = _Scanner(text)
    node = scanner.read(0, len(text)) if text.startswith("[") else None
    if not isinstance(node, _Arr):
        return []
    items: list[str] = []
    for item in node.items[:max_items]:
        value = item.text
        if isinstance(item, _Str) and not item.closed and "\ud800" <= value[-1:] <= "\udbff":
            value = value[:-1]
        items.append(value)
    return items


_ESCAPE = re.compile(
    r"\\(?:u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})"
    r"|u([0-9a-fA-F]{4})|x([0-9a-fA-F]{2})|U([0-9a-fA-F]{8})|([\s\S]))"
)
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "0": "\x00"}


def unescape_lenient(text: str) -> str:
    """Undo Python/JSON backslash escapes in ``text``, keeping whatever is not a known escape.

    A ``\\uD83D\\uDE00`` surrogate pair becomes one character, as ``json.loads`` makes it.
    Never raises.
    """
    if "\\" not in text:
        return text
    return _ESCAPE.sub(_unescape_one, text)


def _unescape_one(match: re.Match[str]) -> str:
    high, low, u4, x2, u8, other = match.groups()
    if high is not None:
        return chr(0x10000 + ((int(high, 16) - 0xD800) << 10) + (int(low, 16) - 0xDC00))
    hexa = u4 or x2 or u8
    if hexa is not None:
        code = int(hexa, 16)
        return chr(code) if code <= 0x10FFFF else match.group()
    return _SIMPLE_ESCAPES.get(other, other)


__all__ = [
    "Form",
    "Imitation",
    "NO_IMITATION",
    "ReadMethod",
    "lenient_string_list",
    "read_imitation",
    "safe_literal_eval",
    "strip_code_fence",
    "trim_partial_escape",
    "unescape_lenient",
]
