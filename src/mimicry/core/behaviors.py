"""The four mimicry behaviors, each defined once, and the judgement of one reply.

A behavior is shown (True) or not (False) by a reply to a record; None means "not judged" (the
server cut the input, or capped the output for ``truncates``). The definitions (issue 2):

``copies_braces``
    The reply, stripped of surrounding whitespace and one enclosing code fence, starts with ``{``
    and ends with ``}``.
``preserves_keys``
    Every top-level key of the record appears as a key in the reply.
``rewrites_prompt``
    The reply carries a ``prompt`` value whose text is not the record's prompt, yet is clearly
    about it: similarity to the whole prompt or to one of its turns at or above
    :data:`REWRITE_SIMILARITY_THRESHOLD`. Both texts are normalized first (whitespace, quote
    characters, backslashes, and the JSON-list wrapping of turns, read as JSON, as a Python list
    or leniently when cut off). A reply's prompt that occurs verbatim in the record's, after
    normalization, is a copy and not a rewrite: the whole prompt, one turn of it, or the part a
    cut-off reply got to write. A missing or empty ``prompt`` is not a rewrite.

    The similarity is rapidfuzz's ``fuzz.token_set_ratio`` (lower-cased, punctuation removed),
    divided by 100. The rewrite this behavior is about turns a chatty turn into a more direct
    question: it drops filler and keeps the content words ("OK, does pineapple belong on a pizza?
    Relax and give me fun answer." -> "Does pineapple belong on pizza?"). Token-set similarity
    scores how much of the shorter text is made of the other's words and ignores word order, so it
    stays high for such rewrites (1.00 here), where length-sensitive scorers fall below 0.5 as soon
    as the original turn is three times longer than the rewrite (``ratio`` 0.62 here, 0.32 against
    the whole two-turn prompt; 0.21 at best for a 60-character question from a 500-character
    turn). Unrelated questions score about 0.25 to 0.55. Its known weakness: two short questions
    that share a frame of common words ("What is the best way to ...") score high whatever they
    are about; the threshold does not protect against that, and a paraphrase with none of the
    original's words ("Should companies set quotas for women in management?") scores low.
``truncates``
    The reply is a partial copy of the record: it imitates the record (it copies the braces, or
    at least one record key is a key in it) but omits at least one of the record's keys or stops
    inside a value (:attr:`ParsedReply.cut_off`: it ends inside an unclosed string, list or
    mapping). A plain answer is not a truncation; neither is a complete copy wrapped in prose.

Per-sample metrics (:attr:`Judgement.metrics`, plain JSON values): ``parse_method``,
``reply_chars``, ``kept_keys`` and ``missing_keys`` (record order), ``prompt_similarity`` (None
without a prompt field), ``prompt_verbatim``, ``id_changed`` (None without an ``id`` field),
``verbatim_share`` (:func:`verbatim_share`), ``shorter_than_input`` (the original analysis' raw
measure ``len(reply) < len(str(record))``, kept under that name) and ``cut_off``.

Cost: :func:`judge` is linear in the reply and the record, with bounded windows. Measured (CPython
3.11 on a shared 2-core machine under load 5, best of 5) for 1 MB hostile replies, parse
included: at most 37 ms against the largest real record (34 kB), at most 50 ms against a 1 MB
record. The stated bound is 50 ms per 1 MB reply.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from rapidfuzz import fuzz, utils

from mimicry.core.parsing import (
    ParsedReply,
    lenient_string_list,
    parse_reply,
    safe_literal_eval,
    unescape_lenient,
)

BehaviorName = Literal["copies_braces", "preserves_keys", "rewrites_prompt", "truncates"]
#: The behaviors, in report order: the one place the list lives.
BEHAVIORS: tuple[BehaviorName, ...] = get_args(BehaviorName)
Verdict = bool | None
Flag = Literal["input_truncated", "output_capped", "record_without_prompt"]

#: ``rewrites_prompt``: the least token-set similarity (0..1) at which a changed prompt is still
#: "about" the record's prompt. See the module docstring for why token-set similarity.
REWRITE_SIMILARITY_THRESHOLD: float = 0.5

#: Characters of a prompt value that are normalized and compared (a longer one is cut there, and
#: a reply's prompt then counts as verbatim when one cut text starts with the other).
PROMPT_MAX_CHARS: Final = 20_000
#: Characters of each side handed to rapidfuzz, and turns compared one by one.
SIMILARITY_MAX_CHARS: Final = 10_000
SIMILARITY_MAX_TURNS: Final = 64

#: ``verbatim_share``: copies are found from shared runs of this many characters...
VERBATIM_ANCHOR_CHARS: Final = 16
#: ...in the first this many characters of the reply and of the record.
VERBATIM_WINDOW_CHARS: Final = 1 << 16
#: ...with at most this many characters searched in the record, summed over all searches.
VERBATIM_SEARCH_BUDGET_CHARS: Final = 50_000_000

_EXPLAIN_MAX_CHARS = 200


@dataclass(frozen=True)
class PromptComparison:
    """A reply's prompt measured against the record's.

    ``similarity``: the best token-set similarity (0..1) to the record's whole prompt or to one
    of its turns. ``verbatim``: the reply's normalized prompt is non-empty and occurs in the
    record's normalized prompt. ``text``: the reply's normalized prompt.
    """

    similarity: float
    verbatim: bool
    text: str


@dataclass(frozen=True)
class Judgement:
    """The verdicts, metrics and flags of one reply to one record.

    ``excerpts`` holds short pieces of the reply (its start and end, its prompt) for
    :meth:`explain`; it is not part of :meth:`to_dict`.
    """

    verdicts: dict[str, bool | None]
    metrics: dict[str, object]
    flags: tuple[str, ...]
    excerpts: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, object]:
        """``{"behaviors": {...}, "metrics": {...}, "flags": [...]}``, plain JSON values only."""
        return {
            "behaviors": dict(self.verdicts),
            "metrics": {name: _plain(value) for name, value in self.metrics.items()},
            "flags": list(self.flags),
        }

    def explain(self, behavior: str) -> str:
        """One line (at most 200 characters) on why ``behavior``'s verdict is what it is."""
        if behavior not in self.verdicts:
            raise ValueError(
                f"unknown behavior {behavior!r}: expected one of {', '.join(self.verdicts)}"
            )
        line = _explain(self, behavior)
        return line if len(line) <= _EXPLAIN_MAX_CHARS else line[: _EXPLAIN_MAX_CHARS - 1] + "…"


# -- the behaviors --------------------------------------------------------------------------------


def copies_braces(parsed: ParsedReply) -> bool:
    """The reply (stripped, unfenced) starts with ``{`` and ends with ``}``."""
    return parsed.text.startswith("{") and parsed.text.endswith("}")


def preserves_keys(parsed: ParsedReply, record_keys: Sequence[str]) -> bool:
    """Every top-level key of the record appears as a key in the reply."""
    return all(key in parsed.keys for key in record_keys)


def rewrites_prompt(comparison: PromptComparison | None) -> bool:
    """The reply carries a prompt that is not the record's, yet is clearly about it."""
    return (
        comparison is not None
        and not comparison.verbatim
        and comparison.similarity >= REWRITE_SIMILARITY_THRESHOLD
    )


def imitates_record(parsed: ParsedReply, record_keys: Sequence[str]) -> bool:
    """The reply copies the braces, or at least one record key is a key in it."""
    return copies_braces(parsed) or any(key in parsed.keys for key in record_keys)


def truncates(parsed: ParsedReply, record_keys: Sequence[str]) -> bool:
    """A partial copy: imitates the record, but omits one of its keys or stops inside a value."""
    return imitates_record(parsed, record_keys) and (
        not preserves_keys(parsed, record_keys) or parsed.cut_off
    )


# -- the judgement --------------------------------------------------------------------------------


def judge(
    record: Mapping[str, object],
    reply: str,
    *,
    output_capped: bool = False,
    input_truncated: bool = False,
) -> Judgement:
    """Judge ``reply`` to ``record`` on every behavior, with metrics and flags.

    ``input_truncated`` (the server cut the prompt to ``num_ctx``): every verdict is None.
    ``output_capped`` (``done_reason == "length"``): ``truncates`` is None, the others are judged.
    A record without a ``prompt`` (or a None one) gets no ``rewrites_prompt`` verdict.
    Never raises on a ``str`` reply.
    """
    parsed = parse_reply(reply)
    record_keys = tuple(str(key) for key in record)
    record_text = str(record)
    reply_keys = set(parsed.keys)
    kept = [key for key in record_keys if key in reply_keys]
    record_prompt = record.get("prompt")
    reply_prompt = parsed.fields.get("prompt")
    comparison = (
        None
        if record_prompt is None or reply_prompt is None
        else compare_prompt(reply_prompt, str(record_prompt))
    )
    record_id = record.get("id")
    reply_id = parsed.fields.get("id")

    verdicts: dict[str, bool | None] = {
        "copies_braces": copies_braces(parsed),
        "preserves_keys": preserves_keys(parsed, record_keys),
        "rewrites_prompt": None if record_prompt is None else rewrites_prompt(comparison),
        "truncates": truncates(parsed, record_keys),
    }
    flags: list[Flag] = []
    if input_truncated:
        flags.append("input_truncated")
        verdicts = {name: None for name in verdicts}
    if output_capped:
        flags.append("output_capped")
        verdicts["truncates"] = None
    if record_prompt is None:
        flags.append("record_without_prompt")

    metrics: dict[str, object] = {
        "parse_method": parsed.method,
        "reply_chars": len(reply),
        "kept_keys": kept,
        "missing_keys": [key for key in record_keys if key not in reply_keys],
        "prompt_similarity": None if comparison is None else comparison.similarity,
        "prompt_verbatim": None if comparison is None else comparison.verbatim,
        "id_changed": (
            None
            if reply_id is None or record_id is None
            else _scalar_text(reply_id) != _scalar_text(str(record_id))
        ),
        "verbatim_share": verbatim_share(reply, record_text),
        "shorter_than_input": len(reply) < len(record_text),
        "cut_off": parsed.cut_off,
    }
    excerpts = {
        "start": _excerpt(parsed.text),
        "end": _excerpt(parsed.text, at_end=True),
        "prompt": "" if comparison is None else _excerpt(comparison.text),
    }
    return Judgement(verdicts=verdicts, metrics=metrics, flags=tuple(flags), excerpts=excerpts)


# -- the prompt -----------------------------------------------------------------------------------


def compare_prompt(reply_prompt: str, record_prompt: str) -> PromptComparison:
    """Measure a reply's ``prompt`` value against the record's (see ``rewrites_prompt``)."""
    reply_turns = normalized_turns(reply_prompt)
    record_turns = normalized_turns(record_prompt)
    reply_text = " ".join(reply_turns)
    record_text = " ".join(record_turns)
    cut = max(len(reply_prompt), len(record_prompt)) > PROMPT_MAX_CHARS
    verbatim = bool(reply_text) and (
        reply_text in record_text or (cut and reply_text.startswith(record_text))
    )
    targets = [record_text, *record_turns[:SIMILARITY_MAX_TURNS]]
    probe = reply_text[:SIMILARITY_MAX_CHARS]
    similarity = max(
        fuzz.token_set_ratio(probe, target[:SIMILARITY_MAX_CHARS], processor=utils.default_process)
        for target in targets
    )
    return PromptComparison(
        similarity=float(similarity) / 100.0, verbatim=verbatim, text=reply_text
    )


def normalized_turns(prompt: str) -> list[str]:
    """The non-empty turns of a prompt value, normalized for comparison.

    A value that starts with ``[`` is a list of turns: read as JSON, else as a Python literal,
    else leniently (:func:`~mimicry.core.parsing.lenient_string_list`, for cut-off copies).
    Anything else is one turn (a surrounding pair of quotes is dropped, escapes are undone).
    Each turn loses its quote characters (straight and curly) and backslashes, and its runs of
    whitespace become one space.
    """
    text = prompt.strip()[:PROMPT_MAX_CHARS]
    items: list[str] | None = None
    if text.startswith("["):
        items = _string_items(text)
        if items is None:
            items = lenient_string_list(text, max_items=SIMILARITY_MAX_TURNS * 16)
    else:
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            text = text[1:-1]
        items = [unescape_lenient(text)]
    turns = (_normalize(item) for item in items)
    return [turn for turn in turns if turn]


def _string_items(text: str) -> list[str] | None:
    value: object
    try:
        value = json.loads(text, strict=False)
    except (ValueError, RecursionError, MemoryError):
        value = safe_literal_eval(text)
    if not isinstance(value, list | tuple):
        return None
    return [item if isinstance(item, str) else str(item) for item in value]


_NOT_COMPARED = re.compile(r"""["'`\u2018\u2019\u201c\u201d\\]""")
_SPACES = re.compile(r"\s+")


def _normalize(text: str) -> str:
    return _SPACES.sub(" ", _NOT_COMPARED.sub("", text)).strip()


def _scalar_text(text: str) -> str:
    return text.strip().strip("'\"").strip()


# -- verbatim copies ------------------------------------------------------------------------------


def verbatim_share(reply: str, record_text: str) -> float | None:
    """The share of the reply copied verbatim from the record: longest common substring / length.

    None for an empty reply. The longest common substring is found from shared runs of
    :data:`VERBATIM_ANCHOR_CHARS` characters in the first :data:`VERBATIM_WINDOW_CHARS` characters
    of each text (see :func:`longest_common_substring`), so the cost is bounded whatever the
    sizes: measured 5 ms for a 1 MB reply against the largest real record (34 kB), 22 ms for the
    worst reply found (a megabyte of 16-character pieces of the record, each a hit), 14 ms for a
    1 MB reply against a 1 MB record (idle machine). The share is still taken over the whole
    reply, so a copy longer than the window counts as a lower bound.
    """
    if not reply:
        return None
    return longest_common_substring(reply, record_text) / len(reply)


def longest_common_substring(text: str, source: str) -> int:
    """The length of the longest string that occurs in both ``text`` and ``source``.

    Exact whenever that length is at least ``VERBATIM_ANCHOR_CHARS * 3 // 2 - 1`` (23) characters,
    within the windows: every 8th 16-character run of ``text`` is looked up in the set of
    ``source``'s 16-character runs; a hit is extended right by galloping ``in`` searches and left
    by up to 7 characters, and the scan resumes near the end of the match. Shorter common runs may
    be missed (0 then); a second, overlapping copy of the same region is not looked for; and the
    searches stop after :data:`VERBATIM_SEARCH_BUDGET_CHARS` characters (a lower bound then).
    Both texts shorter than the anchor are compared exhaustively.
    """
    text = text[:VERBATIM_WINDOW_CHARS]
    source = source[:VERBATIM_WINDOW_CHARS]
    width = VERBATIM_ANCHOR_CHARS
    if len(text) < width or len(source) < width:
        return _short_common_substring(text, source)
    step = width // 2
    runs = {source[i : i + width] for i in range(len(source) - width + 1)}
    searches = max(64, VERBATIM_SEARCH_BUDGET_CHARS // len(source))
    best = 0
    at = 0
    while at + width <= len(text) and searches > 0:
        if text[at : at + width] not in runs:
            at += step
            continue
        # The longest match starting at `at`: gallop up, then halve down (`in` is monotone).
        good, bad = width, len(text) - at + 1
        probe = width * 2
        while probe < bad and searches > 0:
            searches -= 1
            if text[at : at + probe] in source:
                good, probe = probe, probe * 2
            else:
                bad = probe
        while bad - good > 1 and searches > 0:
            searches -= 1
            middle = (good + bad) // 2
            if text[at : at + middle] in source:
                good = middle
            else:
                bad = middle
        end = at + good
        start = at
        while start > 0 and at - start < step - 1 and searches > 0:
            searches -= 1
            if text[start - 1 : end] not in source:
                break
            start -= 1
        best = max(best, end - start)
        at = max(at + step, end - width + 1)
    return best


def _short_common_substring(text: str, source: str) -> int:
    short, long = (text, source) if len(text) <= len(source) else (source, text)
    for length in range(len(short), 0, -1):
        if any(short[i : i + length] in long for i in range(len(short) - length + 1)):
            return length
    return 0


# -- explanations ---------------------------------------------------------------------------------


def _explain(judgement: Judgement, behavior: str) -> str:
    verdict = judgement.verdicts[behavior]
    metrics = judgement.metrics
    start = judgement.excerpts.get("start", "''")
    end = judgement.excerpts.get("end", "''")
    method = metrics.get("parse_method")
    kept = _str_list(metrics.get("kept_keys"))
    missing = _str_list(metrics.get("missing_keys"))
    if verdict is None:
        if "input_truncated" in judgement.flags:
            return "not judged: the server cut the input to num_ctx (input_truncated)"
        if behavior == "truncates" and "output_capped" in judgement.flags:
            return "not judged: the output hit num_predict (done_reason 'length', output_capped)"
        if behavior == "rewrites_prompt":
            return "not judged: the record has no prompt"
        return "not judged"
    if behavior == "copies_braces":
        if start == "''":
            return "reply is empty (not '{...}')"
        if verdict:
            return f"reply starts with {start} and ends with {end}"
        text_start_ok = start.startswith(("'{", '"{'))
        if not text_start_ok:
            return f"reply starts with {start} (not '{{')"
        return f"reply ends with {end} (not '}}')"
    if behavior == "preserves_keys":
        total = len(kept) + len(missing)
        if verdict:
            return f"all {total} record keys are keys in the reply (parsed: {method})"
        return (
            f"{len(missing)} of {total} record keys missing: {', '.join(missing)} "
            f"(parsed: {method}); reply starts with {start}"
        )
    if behavior == "rewrites_prompt":
        similarity = metrics.get("prompt_similarity")
        prompt = judgement.excerpts.get("prompt", "")
        threshold = REWRITE_SIMILARITY_THRESHOLD
        if not isinstance(similarity, float):
            return f"reply has no prompt field (parsed: {method}); reply starts with {start}"
        if verdict:
            return (
                f"reply's prompt {prompt} differs from the record's yet is about it "
                f"(similarity {similarity:.2f} >= {threshold})"
            )
        if metrics.get("prompt_verbatim"):
            return f"reply's prompt {prompt} is a verbatim copy of (part of) the record's"
        if prompt in ("", "''"):
            return "reply's prompt is empty"
        return (
            f"reply's prompt {prompt} is not about the record's "
            f"(similarity {similarity:.2f} < {threshold})"
        )
    # truncates
    cut_off = bool(metrics.get("cut_off"))
    if verdict:
        reasons = []
        if cut_off:
            reasons.append("stops inside a value")
        if missing:
            reasons.append(f"omits {len(missing)} keys ({', '.join(missing)})")
        return f"reply imitates the record but {' and '.join(reasons)}; it ends with {end}"
    if not kept and not judgement.verdicts.get("copies_braces"):
        return f"plain answer, no braces and no record keys: reply starts with {start}"
    return f"complete copy: all record keys kept, nothing left open; reply ends with {end}"


def _excerpt(text: str, *, at_end: bool = False, width: int = 24) -> str:
    """A short repr of the start (or end) of ``text``, with "…" where it was cut."""
    if len(text) <= width:
        return repr(text)
    shown = repr(text[-width:] if at_end else text[:width])
    return shown[0] + "…" + shown[1:] if at_end else shown[:-1] + "…" + shown[-1]


def _str_list(value: object) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else []


def _plain(value: object) -> object:
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return value
