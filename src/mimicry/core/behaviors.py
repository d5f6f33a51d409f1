"""The built-in behaviors, each defined once (in its detector's docstring, the words the README
repeats), and the measures kept beside them.

A detector takes the record (the dataset row the model was sent) and the reply (a
:class:`~mimicry.core.reply.Reply`, or the reply's text) and returns a :class:`Verdict`: shown
(True), not shown (False) or not judged (None), with a one-line explanation. The eval suite's
built-in tests (``evals/``) call them; a user's own behavior is a test like them.

The definitions rest on *the imitation*, the part of the reply that imitates a record: found
after whitespace, one code fence and a short lead-in of prose; opening with ``{``, with a list
of records, or as ``key: value`` lines; followed by a trailer of prose (after a lead-in, shorter
than the imitation). Its keys are read in any common notation, through one wrapping object. See
:mod:`mimicry.core.parsing`.

*Imitates this record*: the imitation has at least two of the record's keys; or one of them and
a clear share of the record's own text (:data:`VERBATIM_MIN_CHARS` characters copied verbatim, or
:data:`VERBATIM_MIN_SHARE` of an imitation of at least :data:`VERBATIM_MIN_IMITATION_CHARS`, as in
``{'id': 30192, 'mo``); or the reply is mostly a copy of one of the record's JSON-like values
from its first character (at least :data:`VERBATIM_MOSTLY_SHARE` of it and
:data:`VERBATIM_MIN_CHARS` characters: the prompt's ``'["..."]'``, echoed), whatever its form.

Changing a definition changes :data:`DETECTORS_VERSION`: reports record it, and comparing runs
judged by different versions re-judges the stored replies (:mod:`mimicry.core.compare`).
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from rapidfuzz import fuzz

from mimicry.core.parsing import Imitation
from mimicry.core.reply import Reply, as_reply
from mimicry.core.rewrites import PromptComparison, compare_prompt
from mimicry.core.verbatim import longest_common_substring, verbatim_share

#: rapidfuzz similarity (0-100) at which a key of five letters or more is the record's key
#: written with a slip (``respone_a`` for ``response_a``).
KEY_SLIP_SIMILARITY: Final = 85
#: The version of the definitions below; bump it with any change to what a verdict means.
DETECTORS_VERSION: Final = 2

#: A clear verbatim share: at least this many characters of the record's text...
VERBATIM_MIN_CHARS: Final = 40
#: ...or at least this share of an imitation this long (``{'id': 30192, 'mo`` is one).
VERBATIM_MIN_SHARE: Final = 0.6
VERBATIM_MIN_IMITATION_CHARS: Final = 8
#: A reply of which at least this share copies one of the record's JSON-like values from its
#: first character imitates the record whatever its form.
VERBATIM_MOSTLY_SHARE: Final = 0.5

_EXPLAIN_MAX_CHARS = 200
_EXCERPT_CHARS = 24

Record = Mapping[str, object]


@dataclass(frozen=True)
class Verdict:
    """One behavior's verdict on one reply: ``shown`` is True, False or None (not judged), and
    ``explanation`` says why in one line. Truthy exactly when the behavior is shown."""

    behavior: str
    shown: bool | None
    explanation: str

    def __bool__(self) -> bool:
        return self.shown is True


Detector = Callable[[Record, "Reply | str"], Verdict]


def copies_braces(record: Record, reply: Reply | str) -> Verdict:
    """The reply imitates the record's *form*: its imitation opens with ``{`` (a list of records
    counts through its first record). A copy the model cut short counts; so does a braced answer
    imitating the format. Whether it closes is truncates' business. Never null.

    Shows it: ``{'id': 30192, 'model_a': 'gpt-4-1106-preview', 'prompt': '["Is it right to set
    quotas for women managers?"]', 'respo``; ``Here is the record:\\n{"id": 30192, ...}``.
    Does not: ``Pineapple on pizza is a matter of taste!``; ``id: 30192\\nmodel_a: gpt-4...``.
    """
    reply = as_reply(reply, record)
    imitation = reply.imitation
    if imitation.opens_with_brace:
        where = " after a lead-in" if imitation.lead_in else ""
        what = "a list of records opening with '{'" if imitation.form == "list" else "'{'"
        return make_verdict(
            "copies_braces",
            True,
            f"the imitation opens with {what}{where}: {_start(reply, imitation)}",
        )
    if imitation.form == "lines":
        return make_verdict(
            "copies_braces",
            False,
            f"the imitation is key: value lines without braces: {_start(reply, imitation)}",
        )
    return make_verdict("copies_braces", False, _no_imitation(reply))


def preserves_keys(record: Record, reply: Reply | str) -> Verdict:
    """Every top-level key of the record appears as a key of the reply's imitation, in any common
    notation (Python or JSON quoting, unquoted, YAML-like lines, bullets, tables, CSV, XML-like
    tags, keyword arguments, one wrapping object). Values do not matter; a key mentioned only in
    prose is not a key, nor one written with a slip (``promt``). For a reply cut at num_predict:
    null unless all keys are there.

    Shows it: an exact repr; ``json.dumps`` of the row; keys reordered; the record inside
    ``{"record": {...}}``; ``id: 30192`` lines for every key. Does not: a copy that stops after
    ``'prompt'``; a copy that drops ``winner_tie``; a plain answer.
    """
    reply = as_reply(reply, record)
    imitation = reply.imitation
    kept, missing = _kept_and_missing(record, imitation)
    total = len(kept) + len(missing)
    if missing and reply.output_capped:
        return make_verdict(
            "preserves_keys",
            None,
            f"not judged: the output hit num_predict with {len(missing)} of {total} keys unwritten",
        )
    if not imitation.found:
        return make_verdict("preserves_keys", False, _no_imitation(reply))
    if not missing:
        return make_verdict(
            "preserves_keys",
            True,
            f"all {total} record keys are keys of the imitation ({imitation.form})",
        )
    return make_verdict(
        "preserves_keys",
        False,
        f"{len(missing)} of {total} record keys missing: {', '.join(missing)}",
    )


def rewrites_prompt(record: Record, reply: Reply | str) -> Verdict:
    """The reply's ``prompt`` value is the record's request reworded: not a copy up to case,
    punctuation, whitespace, quoting, list wrapping and spelling slips; not an answer; not an
    unrelated question. The request may be the whole prompt or one of its turns; a rewrite may be
    more direct, shorter, a paraphrase, or a translation. Null when the record has no prompt;
    false when the reply has no ``prompt`` value. What it can and cannot tell apart is listed in
    :mod:`mimicry.core.rewrites`.

    Shows it: ``'prompt': '["Does pineapple belong on pizza?"]'`` for ``["...", "OK, does
    pineapple belong on a pizza? Relax and give me fun answer."]``; ``"prompt": "Wer hat dich
    gemacht?"`` for ``["Who made you?"]``. Does not: ``'prompt': 'who made you'``; ``'prompt':
    'The best first move is the center square.'``; an unrelated question.
    """
    reply = as_reply(reply, record)
    comparison = compare_reply_prompt(record, reply)
    if comparison is None:
        return make_verdict("rewrites_prompt", None, "not judged: the record has no prompt")
    imitation = reply.imitation
    value = field_value(imitation, "prompt") or ""
    shown = _excerpt(value)
    explanation = {
        "missing": "the reply has no prompt value"
        + ("" if imitation.found else f" ({_no_imitation(reply)})"),
        "empty": "the reply's prompt is empty",
        "copy": f"the reply's prompt {shown} copies the record's (up to case, marks, spelling)",
        "answer": f"the reply's prompt {shown} answers the request instead of asking it",
        "unrelated": f"the reply's prompt {shown} shares no content word with the record's",
        "rewrite": f"the reply's prompt {shown} rewords the record's request",
        "translation": f"the reply's prompt {shown} translates the record's request",
    }[comparison.kind]
    return make_verdict("rewrites_prompt", comparison.rewritten, explanation)


def truncates(record: Record, reply: Reply | str) -> Verdict:
    """The reply imitates *this* record and omits one of its keys (a key written with a slip,
    ``promt``, is not omitted) or stops inside a value (cut off; a copy that has every value and
    lacks only its closing brace does not). Null when the output was capped at num_predict: the
    harness cut it, not the model.

    Shows it: the qwen2-like reply (opens with ``{``, keeps the first keys, rewrites the prompt,
    stops inside ``response_a``); a closed copy that drops ``winner_tie``; ``{'id': 30192, 'mo``.
    Does not: a complete copy (also wrapped in prose, fenced, nested, or as YAML-like lines);
    ``{"answer": "4"}``; a plain answer whose code sample has an ``"id"`` key; an empty reply.
    """
    reply = as_reply(reply, record)
    if reply.output_capped:
        return make_verdict(
            "truncates", None, "not judged: the output hit num_predict (done_reason 'length')"
        )
    evidence = imitation_evidence(record, reply)
    imitation = reply.imitation
    if evidence is None:
        return make_verdict("truncates", False, _not_this_record(reply))
    missing = [str(k) for k in record if written_key(imitation, str(k)) is None]
    reasons = []
    if imitation.cut_off:
        reasons.append(f"stops inside a value: ...{_end(reply, imitation)}")
    if missing:
        reasons.append(f"omits {len(missing)} keys ({', '.join(missing)})")
    if reasons:
        return make_verdict(
            "truncates", True, f"imitates this record ({evidence}) but {' and '.join(reasons)}"
        )
    return make_verdict(
        "truncates", False, f"a complete copy ({evidence}): every key kept, nothing left open"
    )


def changes_id(record: Record, reply: Reply | str) -> Verdict:
    """The reply imitates this record but gives it another id: its imitation has an ``id`` key
    whose value is not the record's id (compared as text: ``30192``, ``'30192'`` and ``"30192"``
    are the same id). False when the imitation keeps the id, has no ``id`` key, stops inside the
    id's value (a cut id is not another id), or the reply does not imitate this record. Null when
    the record has no id.

    Shows it: ``{'id': 30193, 'model_a': ...}`` for record 30192. Does not: an exact copy;
    ``{"id": "30192", ...}``; a copy without ``id``; a plain answer mentioning "id 12".
    """
    reply = as_reply(reply, record)
    record_id = record.get("id")
    if record_id is None:
        return make_verdict("changes_id", None, "not judged: the record has no id")
    evidence = imitation_evidence(record, reply)
    imitation = reply.imitation
    if evidence is None:
        return make_verdict("changes_id", False, _not_this_record(reply))
    written = written_key(imitation, "id")
    if written is None:
        return make_verdict("changes_id", False, "the imitation has no id key")
    value = imitation.values[written]
    span = imitation.spans.get(written, (0, 0))
    if not imitation.closed and imitation.form != "lines" and span[1] >= imitation.end:
        return make_verdict(
            "changes_id", False, f"the reply stops inside the id ({_excerpt(value)})"
        )
    if same_id(value, record_id):
        return make_verdict("changes_id", False, f"the imitation keeps the id {_excerpt(value)}")
    return make_verdict(
        "changes_id",
        True,
        f"the imitation's id {_excerpt(value)} is not the record's {record_id!r}",
    )


#: The built-in behaviors, in report order: the one place the list lives.
BUILTIN_DETECTORS: Final[Mapping[str, Detector]] = {
    "copies_braces": copies_braces,
    "preserves_keys": preserves_keys,
    "rewrites_prompt": rewrites_prompt,
    "truncates": truncates,
    "changes_id": changes_id,
}
BUILTIN_BEHAVIORS: Final = tuple(BUILTIN_DETECTORS)


def definition(behavior: str) -> str:
    """A built-in behavior's definition: the first paragraph of its detector's docstring."""
    detector = BUILTIN_DETECTORS[behavior]
    doc = inspect.getdoc(detector) or ""
    return " ".join(doc.split("\n\n")[0].split())


def judge(record: Record, reply: Reply | str) -> dict[str, Verdict]:
    """Every built-in behavior's verdict on ``reply``."""
    reply = as_reply(reply, record)
    return {name: detector(record, reply) for name, detector in BUILTIN_DETECTORS.items()}


# -- the shared facts ------------------------------------------------------------------------------


def imitation_evidence(record: Record, reply: Reply | str) -> str | None:
    """Why the reply imitates *this* record (its keys, or its verbatim share), or None."""
    reply = as_reply(reply, record)
    imitation = reply.imitation
    kept, _ = _kept_and_missing(record, imitation)
    if imitation.found and len(kept) >= 2:
        return f"{len(kept)} of its keys"
    if imitation.found and kept:
        text = reply.text[imitation.start : imitation.end].strip()
        copied = _copied(text, record)
        if copied >= VERBATIM_MIN_CHARS or (
            len(text) >= VERBATIM_MIN_IMITATION_CHARS and copied >= VERBATIM_MIN_SHARE * len(text)
        ):
            return f"its key {kept[0]!r} and {copied} characters of its text copied verbatim"
    # a reply that opens with one of the record's structured values, copied (its prompt list)
    echoed = _echoed_value(reply.text.strip(), record)
    if echoed is not None:
        return echoed
    return None


def _echoed_value(text: str, record: Record) -> str | None:
    """The reply is mostly a copy of one of the record's JSON-like string values (``'["..."]'``)
    from its first character: a copy of the record's content, not an answer that happens to
    share its words."""
    for key, value in record.items():
        if not isinstance(value, str) or not value.startswith(("[", "{")):
            continue
        common = len(os.path.commonprefix([text[: len(value)], value]))
        if common >= VERBATIM_MIN_CHARS and common >= VERBATIM_MOSTLY_SHARE * len(text):
            return f"{common} of its {len(text)} characters copy the record's {key} value"
    return None


def _copied(text: str, record: Record) -> int:
    """The longest run of ``text`` copied verbatim from the record (as repr or JSON, or from
    one of its string values as written)."""
    sources = [*record_texts(record), *(v for v in record.values() if isinstance(v, str))]
    return max(longest_common_substring(text, source) for source in sources)


def record_texts(record: Record) -> tuple[str, ...]:
    """The record as a model may have seen or copied it: its repr and its JSON."""
    texts = [f"{record}"]
    try:
        texts.append(json.dumps(dict(record), default=str))
        texts.append(json.dumps(dict(record), default=str, ensure_ascii=False))
    except (TypeError, ValueError):
        pass
    return tuple(dict.fromkeys(texts))


def compare_reply_prompt(record: Record, reply: Reply | str) -> PromptComparison | None:
    """The reply's prompt value against the record's; None when the record has no prompt."""
    record_prompt = record.get("prompt")
    if record_prompt is None:
        return None
    reply = as_reply(reply, record)
    imitation = reply.imitation
    value = field_value(imitation, "prompt") if imitation.found else None
    context = [
        str(v) for k, v in record.items() if k not in ("prompt", "id") and isinstance(v, str)
    ]
    return compare_prompt(value, str(record_prompt), context)


def same_id(value: object, record_id: object) -> bool:
    """Whether two ids are the same as text (quotes and surrounding spaces aside; ``30192`` and
    ``30192.0`` are the same number)."""
    a, b = _id_text(value), _id_text(record_id)
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def measure(record: Record, reply: Reply | str) -> dict[str, object]:
    """Per-sample measures kept beside the verdicts (plain JSON values).

    ``form`` and ``read_method`` of the imitation, ``reply_chars``, ``kept_keys`` and
    ``missing_keys`` (record order), ``cut_off``, ``imitates_record``, ``prompt_kind`` and
    ``prompt_similarity`` (None without a prompt value), ``id_changed`` (None without an id
    value), ``verbatim_share`` (longest verbatim run / reply length), and the original
    analysis' raw measures ``shorter_than_input`` (``len(reply) < len(str(record))``) and
    ``braces_present`` (``'{' in reply and '}' in reply``).
    """
    reply = as_reply(reply, record)
    imitation = reply.imitation
    text = reply.text
    kept, missing = _kept_and_missing(record, imitation)
    comparison = compare_reply_prompt(record, reply)
    id_value = imitation.values.get("id") if imitation.found else None
    record_id = record.get("id")
    return {
        "form": imitation.form,
        "read_method": imitation.method,
        "reply_chars": len(text),
        "kept_keys": kept,
        "missing_keys": missing,
        "cut_off": imitation.cut_off,
        "imitates_record": imitation_evidence(record, reply) is not None,
        "prompt_kind": None if comparison is None else comparison.kind,
        "prompt_similarity": None if comparison is None else comparison.similarity,
        "id_changed": (
            None if id_value is None or record_id is None else not same_id(id_value, record_id)
        ),
        "verbatim_share": verbatim_share(text, f"{record}"),
        "shorter_than_input": len(text) < len(f"{record}"),
        "braces_present": "{" in text and "}" in text,
    }


#: The raw measures of the original analysis, reported as rates beside the behaviors.
RAW_MEASURES: Final = ("shorter_than_input", "braces_present")


# -- helpers ---------------------------------------------------------------------------------------


def _kept_and_missing(record: Record, imitation: Imitation) -> tuple[list[str], list[str]]:
    """The record's keys the imitation has as written, and the ones it does not."""
    present = set(imitation.keys)
    keys = [str(key) for key in record]
    return [k for k in keys if k in present], [k for k in keys if k not in present]


def written_key(imitation: Imitation, key: str) -> str | None:
    """The imitation's key that stands for ``key``: itself, or the same key written with a slip
    (``promt``, ``model a``, ``Prompt``): the field is there even where the key is not kept."""
    if key in imitation.values:
        return key
    folded = _fold_key(key)
    for candidate in imitation.keys:
        other = _fold_key(candidate)
        if other == folded or (
            min(len(other), len(folded)) >= 5 and fuzz.ratio(other, folded) >= KEY_SLIP_SIMILARITY
        ):
            return candidate
    return None


def _fold_key(key: str) -> str:
    return key.casefold().replace(" ", "_").replace("-", "_")


def field_value(imitation: Imitation, key: str) -> str | None:
    """The value the imitation gives the record's ``key`` (through a slipped key too)."""
    written = written_key(imitation, key)
    return None if written is None else imitation.values.get(written)


def _id_text(value: object) -> str:
    return str(value).strip().strip("'\"").strip()


def make_verdict(behavior: str, shown: bool | None, explanation: str) -> Verdict:
    """A verdict with its explanation made one line of at most 200 characters."""
    line = " ".join(explanation.split())
    if len(line) > _EXPLAIN_MAX_CHARS:
        line = line[: _EXPLAIN_MAX_CHARS - 1] + "\u2026"
    return Verdict(behavior, shown, line)


def _no_imitation(reply: Reply) -> str:
    if not reply.text.strip():
        return "the reply is empty"
    return (
        f"no imitation: the reply starts with {_excerpt(reply.text.strip())} (prose, not a record)"
    )


def _not_this_record(reply: Reply) -> str:
    if not reply.imitation.found:
        return _no_imitation(reply)
    start = _start(reply, reply.imitation)
    return f"does not imitate this record (fewer than 2 of its keys, little of its text): {start}"


def _start(reply: Reply, imitation: Imitation) -> str:
    return _excerpt(reply.text[imitation.start : imitation.start + 200])


def _end(reply: Reply, imitation: Imitation) -> str:
    tail = reply.text[max(imitation.start, imitation.end - _EXCERPT_CHARS) : imitation.end]
    return repr(tail)


def _excerpt(text: str, width: int = _EXCERPT_CHARS) -> str:
    """A short repr of the start of ``text``, with "…" where it was cut."""
    if len(text) <= width:
        return repr(text)
    shown = repr(text[:width])
    return shown[:-1] + "\u2026" + shown[-1]
