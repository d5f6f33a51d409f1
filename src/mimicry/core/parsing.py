"""Lenient, safe parsing of model replies that imitate a dataset record.

A reply is untrusted text. :func:`parse_reply` reads it in stages and keeps the first that yields
a mapping (a stage that parses to a list, a number or a string does not count):

1. ``json``: the whole text (after :func:`strip_code_fence`) is one JSON object;
2. ``literal``: the whole text is one Python literal dict (``ast.literal_eval``, never ``eval``);
3. ``repaired``: a mapping recovered from part of the text: the first ``{...}`` inside prose, or a
   cut-off literal with its open string and brackets closed, or with its dangling last entry
   dropped (up to three candidates, each parsed as JSON, then as a literal);
4. ``scan``: no mapping, but ``'key':`` / ``"key":`` patterns (keys that look like identifiers);
5. ``none``: nothing record-like.

Hostile input (issue 6). :func:`parse_reply` never raises on a ``str``, whatever it holds: NULs,
lone surrogates, ``"{" * 100_000``, megabytes of text. It never evaluates anything: the only
evaluators are ``json.loads`` and ``ast.literal_eval``, and the latter is only handed text whose
structure a linear pre-scan has checked (at most :data:`MAX_NESTING` levels and
:data:`LITERAL_MAX_TOKENS` structural tokens; ``literal_eval`` costs about 1.2 µs per token). The
pre-scan itself is a loop of C regex searches that stops after :data:`SCAN_MAX_TOKENS` tokens, so
the whole parse is linear in the reply's length with a small constant.

Measured (CPython 3.11 on a shared 2-core machine under load 5, best of 5), 1 MB replies: thirty
copies of a 34 kB record 4 ms, random text 8 ms, a JSON object of half a million numbers 18 ms,
one cut-off string value 12 ms, a million commas 4 ms, ``"{" * 1_000_000`` 4 ms, a megabyte of
backslashes inside a value 22 ms (the slowest input found). The bound we state is 50 ms per 1 MB
reply.
"""

from __future__ import annotations

import ast
import itertools
import json
import re
import reprlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

ParseMethod = Literal["json", "literal", "repaired", "scan", "none"]

#: Deeper brackets make the pre-scan give up: no literal_eval, no repair (the text is not a
#: record copy; Python's own parser stops at 200 levels anyway).
MAX_NESTING = 100
#: Structural tokens (brackets, commas, string starts) the pre-scan reads before giving up.
SCAN_MAX_TOKENS = 20_000
#: ``ast.literal_eval`` is only tried on text with at most this many structural tokens (~12 ms).
LITERAL_MAX_TOKENS = 10_000
#: ``'key':`` matches the last-resort scan reads (a record has a handful of keys).
SCAN_MAX_KEYS = 2_000
#: Keys of a mapping whose values are turned into ``fields`` (a record has a handful).
MAX_FIELDS = 2_000
#: Characters of a string value the scan keeps (longer values are cut: unescaping costs ~0.6 µs
#: per escape, and a record's prompt is far shorter).
SCAN_VALUE_MAX_CHARS = 50_000
#: Characters a bare (unquoted) value may have in the scan: numbers, True, None and the like.
_BARE_VALUE_MAX = 100


@dataclass(frozen=True)
class ParsedReply:
    """What could be read from a reply.

    ``text``: the reply stripped of surrounding whitespace and one enclosing code fence.
    ``method``: the stage that succeeded (see the module docstring).
    ``mapping``: the top-level mapping when ``json``, ``literal`` or ``repaired`` produced one.
    ``keys``: top-level keys in order of appearance, deduplicated: the mapping's keys, and for
    ``repaired``/``scan`` also the keys the ``'key':`` scan finds (a stray quote can cost the
    repaired mapping entries that are plainly there in the text).
    ``fields``: a textual value per key where recoverable (``str(value)`` for non-strings; for at
    most the first :data:`MAX_FIELDS` keys of a mapping).
    ``complete``: the whole text parsed as one closed mapping (``json`` or ``literal``).
    ``cut_off``: the text stops inside a value: it ends inside an unclosed string, list or mapping
    of the record-like structure that starts at the first ``{`` (or, without braces, at the first
    ``'key':``). Prose around a closed mapping is not a cut-off.
    """

    text: str
    method: ParseMethod
    mapping: dict[str, object] | None
    keys: tuple[str, ...]
    fields: dict[str, str]
    complete: bool
    cut_off: bool = False


def strip_code_fence(text: str) -> str:
    """``text`` without surrounding whitespace and without one enclosing Markdown code fence.

    The fence is a line of three or more backticks or tildes (optionally with an info string such
    as ``json``) at the very start. Its closing run may end the text on its own line or right
    after the content. An opening fence that is never closed (a reply cut off inside its fence)
    is removed too. A fence that closes before the end, with prose after it, does not enclose the
    reply, and the text is returned as it is (stripped).
    """
    stripped = text.strip()
    opening = _FENCE_OPEN.match(stripped)
    if opening is None:
        return _strip_one_line_fence(stripped)
    fence = opening.group(1) or opening.group(2)
    char, width = fence[0], len(fence)
    body = stripped[opening.end() :]
    if body.endswith(char * width):
        return body.rstrip(char).strip()
    for line in _FENCE_LINE.finditer(body):
        run = line.group(1)
        if run[0] == char and len(run) >= width:
            return stripped
    return body.strip()


def parse_reply(text: str) -> ParsedReply:
    """Read a reply leniently and safely (see the module docstring); never raises on a ``str``."""
    body = strip_code_fence(text)
    braced = body.startswith("{") and body.endswith("}")
    mapping = _json_mapping(body) if braced else None
    if mapping is not None:
        return _parsed(body, "json", mapping, [], complete=True, cut_off=False)
    scan = _scan_from_first_brace(body)
    if braced and scan is not None and scan.closed and scan.end == len(body) and scan.small:
        mapping = _literal_mapping(body)
        if mapping is not None:
            return _parsed(body, "literal", mapping, [], complete=True, cut_off=False)
    covered = range(0)  # the part of the text the repaired mapping stands for
    if scan is not None and not scan.gave_up:
        for candidate, covered_until in _repair_candidates(body, scan):
            mapping = _json_mapping(candidate)
            if mapping is None and scan.small:
                mapping = _literal_mapping(candidate)
            if mapping is not None:
                covered = range(scan.start, covered_until)
                break
    scanned = _scan_keys(body)
    method: ParseMethod = "repaired" if mapping is not None else "scan" if scanned else "none"
    if scan is not None:
        cut_off = scan.cut_off
    elif scanned:
        # No brace at all: read the record-like part from its first key, as if a "{" preceded it.
        cut_off = _scan(body, scanned[0][2], implicit=True).cut_off
    else:
        cut_off = False
    # Keys the scan finds where the mapping stands for the text are nested keys, not top-level.
    extra = [found for found in scanned if found[2] not in covered]
    return _parsed(body, method, mapping, extra, complete=False, cut_off=cut_off)


def _parsed(
    body: str,
    method: ParseMethod,
    mapping: dict[str, object] | None,
    scanned: list[tuple[str, int, int]],
    *,
    complete: bool,
    cut_off: bool,
) -> ParsedReply:
    keys: list[str] = []
    fields: dict[str, str] = {}
    if mapping is not None:
        keys = list(mapping)
        for key in keys[:MAX_FIELDS]:
            value = _field_text(mapping[key])
            if value is not None:
                fields[key] = value
    known = set(keys)
    for key, value_at, _ in scanned:
        if key in known:
            continue
        known.add(key)
        keys.append(key)
        value = _scan_value(body, value_at)
        if value is not None:
            fields[key] = value
    return ParsedReply(
        text=body,
        method=method,
        mapping=mapping,
        keys=tuple(keys),
        fields=fields,
        complete=complete,
        cut_off=cut_off,
    )


def safe_literal_eval(text: str) -> object | None:
    """The Python literal a bracketed ``text`` (``{...}``, ``[...]``, ``(...)``) denotes, or None.

    Only text that starts with a bracket, closes it at its very end and passes the pre-scan's
    nesting and size limits is handed to ``ast.literal_eval``; anything else, and any failure of
    ``literal_eval`` itself, gives None. Never raises on a ``str``.
    """
    stripped = text.strip()
    if not stripped or stripped[0] not in _CLOSER:
        return None
    scan = _scan(stripped, 0)
    if not (scan.closed and scan.end == len(stripped) and scan.small):
        return None
    return _literal(stripped)


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
    separated by commas; escapes are undone leniently (:func:`unescape_lenient`); a bare item is
    kept as written. An unclosed last item loses a half-written escape and a dangling high
    surrogate (half of a ``\\ud83d\\ude00`` pair), so that a cut-off copy of a list reads as a
    prefix of the list. Linear; never raises.
    """
    items: list[str] = []
    size = len(text)
    pos = 1 if text.startswith("[") else 0
    while pos < size and len(items) < max_items:
        gap = _ITEM_GAP.match(text, pos)
        pos = gap.end() if gap else pos
        if pos >= size or text[pos] == "]":
            break
        char = text[pos]
        if char not in ("'", '"'):
            bare = _BARE_ITEM.match(text, pos)
            end = bare.end() if bare else size
            items.append(text[pos:end].strip())
            pos = max(end, pos + 1)
            continue
        content = _STRING_BODY[char].match(text, pos + 1)
        end = content.end() if content else size
        raw = text[pos + 1 : end]
        if text.startswith(char, end):
            items.append(unescape_lenient(raw))
            pos = end + 1
            continue
        item = unescape_lenient(trim_partial_escape(raw))
        if item and "\ud800" <= item[-1] <= "\udbff":
            item = item[:-1]
        items.append(item)
        break
    return items


# -- the pre-scan ---------------------------------------------------------------------------------

_CLOSER = {"{": "}", "[": "]", "(": ")"}
_STRUCTURE = re.compile(r"""[{}\[\]()'",]""")
# String bodies up to (not including) the closing quote; possessive, so no backtracking state
# builds up over a megabyte of escapes. A lone backslash at the very end stops the match early.
_STRING_BODY = {
    "'": re.compile(r"[^'\\]*+(?:\\[\s\S][^'\\]*+)*+"),
    '"': re.compile(r'[^"\\]*+(?:\\[\s\S][^"\\]*+)*+'),
    "'''": re.compile(r"[^'\\]*+(?:(?:\\[\s\S]|'(?!''))[^'\\]*+)*+"),
    '"""': re.compile(r'[^"\\]*+(?:(?:\\[\s\S]|"(?!""))[^"\\]*+)*+'),
}
_ITEM_GAP = re.compile(r"[\s,]*")
_BARE_ITEM = re.compile(r"[^,\]]*")
# Characters after the backslash a complete escape needs, by its first letter.
_ESCAPE_WIDTH = {"x": 3, "u": 5, "U": 9}


@dataclass(frozen=True, slots=True)
class _Frame:
    """An open bracket: a persistent stack, so remembering the stack at a comma costs nothing."""

    closer: str
    depth: int
    parent: _Frame | None


@dataclass(frozen=True, slots=True)
class _Scan:
    """The bracket and string structure of a reply from its first ``{``."""

    start: int
    end: int  # just past the closing bracket, or len(text)
    closed: bool
    too_deep: bool
    gave_up: bool  # too deep or too many tokens: nothing more is known
    tokens: int
    open_quote: str  # the quote of the string the text ends in, "" if none
    stack: _Frame | None  # brackets still open at the end
    comma: int  # the last comma outside strings, -1 if none
    comma_stack: _Frame | None  # brackets open at that comma
    top_comma: int  # the last comma directly inside the outermost bracket, -1 if none
    implicit: bool

    @property
    def small(self) -> bool:
        """Whether the structure may be handed to ``ast.literal_eval``."""
        return not self.gave_up and self.tokens <= LITERAL_MAX_TOKENS

    @property
    def cut_off(self) -> bool:
        """Whether the text stops inside a value (a pathological structure counts as open)."""
        if self.gave_up:
            return True
        if self.open_quote:
            return True
        if self.closed or self.stack is None:
            return False
        return self.stack.depth > 1 if self.implicit else True


def _scan_from_first_brace(text: str) -> _Scan | None:
    start = text.find("{")
    return None if start < 0 else _scan(text, start)


def _scan(text: str, start: int, *, implicit: bool = False) -> _Scan:
    """Walk strings and brackets from ``start`` until the outer bracket closes or the text ends.

    ``implicit``: start inside an unwritten ``{`` (for replies that list keys without braces).
    Linear: one C regex search per structural token, at most :data:`SCAN_MAX_TOKENS` of them.
    """
    size = len(text)
    if implicit:
        frame = _Frame("}", 1, None)
        pos = start
    else:
        frame = _Frame(_CLOSER[text[start]], 1, None)
        pos = start + 1
    comma = top_comma = -1
    comma_stack: _Frame | None = None

    def result(
        end: int, *, closed: bool = False, quote: str = "", deep: bool = False, full: bool = False
    ) -> _Scan:
        return _Scan(
            start=start,
            end=end,
            closed=closed,
            too_deep=deep,
            gave_up=deep or full,
            tokens=tokens,
            open_quote=quote,
            stack=None if closed else frame,
            comma=comma,
            comma_stack=comma_stack,
            top_comma=top_comma,
            implicit=implicit,
        )

    tokens = 0
    while tokens < SCAN_MAX_TOKENS:
        found = _STRUCTURE.search(text, pos)
        if found is None:
            return result(size)
        tokens += 1
        char, at = found.group(), found.start()
        if char in "'\"":
            quote = char * 3 if text.startswith(char * 3, at) else char
            content = _STRING_BODY[quote].match(text, at + len(quote))
            content_end = content.end() if content else size
            if not text.startswith(quote, content_end):
                return result(size, quote=quote)
            pos = content_end + len(quote)
            continue
        if char in _CLOSER:
            if frame.depth >= MAX_NESTING:
                return result(at, deep=True)
            frame = _Frame(_CLOSER[char], frame.depth + 1, frame)
        elif char in "}])":
            # A mismatched closer still closes one level: the repair step sorts out the rest.
            if frame.parent is None:
                return result(at + 1, closed=True)
            frame = frame.parent
        else:
            comma, comma_stack = at, frame
            if frame.depth == 1:
                top_comma = at
        pos = at + 1
    return result(pos, full=True)


def _closers(frame: _Frame | None) -> str:
    closers = []
    while frame is not None:
        closers.append(frame.closer)
        frame = frame.parent
    return "".join(closers)


def _repair_candidates(text: str, scan: _Scan) -> Iterator[tuple[str, int]]:
    """Texts that may parse as the mapping a reply meant, most faithful first.

    A closed mapping inside prose is taken as it is. A cut-off one is tried with its open string
    and brackets closed (keeps a partial last value), then cut at its last comma, then at its last
    top-level comma (both drop a dangling partial key or value). Each comes with the end of the
    part of ``text`` it stands for.
    """
    if scan.implicit:
        return
    if scan.closed:
        if scan.start > 0 or scan.end < len(text):
            yield text[scan.start : scan.end], scan.end
        return
    head = text[scan.start :]
    if scan.open_quote:
        yield trim_partial_escape(head) + scan.open_quote + _closers(scan.stack), len(text)
    else:
        yield head + _closers(scan.stack), len(text)
    if scan.comma > scan.start:
        yield text[scan.start : scan.comma] + _closers(scan.comma_stack), scan.comma
    if scan.top_comma > scan.start and scan.top_comma != scan.comma:
        yield text[scan.start : scan.top_comma] + "}", scan.top_comma


# -- evaluators -----------------------------------------------------------------------------------

# Raw NULs and lone surrogates cannot be compiled; inside a string literal their escapes denote
# the very same characters, and outside one the text was not a literal anyway.
_UNCOMPILABLE = re.compile("[\x00\ud800-\udfff]")


def _json_mapping(text: str) -> dict[str, object] | None:
    try:
        # strict=False: a raw newline or tab inside a string is a common, harmless slip.
        value = json.loads(text, strict=False)
    except (ValueError, RecursionError, MemoryError):
        return None
    return value if isinstance(value, dict) else None  # JSON keys are strings


def _literal_mapping(text: str) -> dict[str, object] | None:
    return _as_mapping(_literal(text))


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
        # UnicodeError is a ValueError. literal_eval documents ValueError, TypeError, SyntaxError,
        # MemoryError and RecursionError; OverflowError guards huge numeric edge cases.
        return None


def _escape_uncompilable(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _as_mapping(value: object) -> dict[str, object] | None:
    if not isinstance(value, dict):
        return None
    if all(isinstance(key, str) for key in value):
        return value
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


# -- the last-resort scan -------------------------------------------------------------------------

# An info string is a language name ("json", "python", "c++"), never the reply's first line.
_FENCE_OPEN = re.compile(r"(?:(`{3,})|(~{3,}))[ \t]*[\w+#.\-]*[ \t]*\r?\n")
_FENCE_LINE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*\r?$", re.MULTILINE)
_ONE_LINE_FENCE = re.compile(r"`{3,}")
_KEY = re.compile(r"""(['"])([A-Za-z_][A-Za-z0-9_]{0,63})\1[ \t]*:[ \t]*""")
_BARE_VALUE = re.compile(rf"[^,}}\]\n]{{0,{_BARE_VALUE_MAX}}}")


def _strip_one_line_fence(text: str) -> str:
    """```{'id': 1}``` on one line is not CommonMark, but models write it."""
    run = _ONE_LINE_FENCE.match(text)
    if run is None or "\n" in text:
        return text
    width = len(run.group())
    inner = text[width:]
    if len(inner) <= width or not inner.endswith("`" * width):
        return text
    return inner.rstrip("`").strip()


def _scan_keys(text: str) -> list[tuple[str, int, int]]:
    """First ``'key':`` / ``"key":`` occurrences: (key, where its value starts, where it starts)."""
    found: list[tuple[str, int, int]] = []
    seen: set[str] = set()
    for count, match in enumerate(_KEY.finditer(text)):
        if count >= SCAN_MAX_KEYS:
            break
        key = match.group(2)
        if key in seen:
            continue
        seen.add(key)
        found.append((key, match.end(), match.start()))
    return found


def _scan_value(text: str, at: int) -> str | None:
    """The value written at ``at``: a (possibly unclosed) string's content, or a bare token."""
    char = text[at : at + 1]
    if char in ("'", '"'):
        quote = char * 3 if text.startswith(char * 3, at) else char
        content = _STRING_BODY[quote].match(text, at + len(quote))
        end = content.end() if content else len(text)
        end = min(end, at + len(quote) + SCAN_VALUE_MAX_CHARS)
        return unescape_lenient(trim_partial_escape(text[at + len(quote) : end]))
    if char in ("{", "["):
        return None  # a nested value: not recoverable as text without a parse
    bare = _BARE_VALUE.match(text, at)
    value = bare.group().strip() if bare else ""
    return value or None


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
