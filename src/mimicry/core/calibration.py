"""Calibration: how often the detectors agree with a careful human on labeled replies.

A label file is JSON Lines, one labeled reply per line::

    {"id": "a-001", "sample_id": 30192, "done_reason": "stop", "reply": "{'id': 30192, ...",
     "labels": {"copies_braces": true, "truncates": false, "changes_id": null},
     "reason": "exact str(row) copy", "case": "exact_repr"}

- ``id``: unique; ``reply``: the reply text exactly; ``labels``: a verdict per behavior the
  human judged (``true`` shown, ``false`` not shown, ``null`` not judged); behaviors left out
  were not labeled.
- the record: ``sample_id``, the dataset id of the row the reply answers (looked up in the
  dataset the command is given), or ``record``, the row itself as an object.
- optional: ``done_reason`` (``"stop"`` by default; ``"length"`` is a reply cut at
  num_predict), ``reason`` (the human's one-line reason), ``case`` (a category name).

Agreement counts exact matches (a null verdict agrees only with a null label). Cohen's kappa
corrects it for chance over the three values.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mimicry.core.reply import Reply

VerdictValue = bool | None
_VALUES: tuple[VerdictValue, ...] = (True, False, None)


class LabelError(ValueError):
    """A label file that cannot be read; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class LabeledReply:
    """One reply with a human's labels."""

    id: str
    record: Mapping[str, object]
    reply: Reply
    labels: Mapping[str, VerdictValue]
    reason: str = ""
    case: str = ""


@dataclass(frozen=True)
class Disagreement:
    """A reply where the detector's verdict is not the human's label."""

    item: str
    case: str
    label: VerdictValue
    verdict: VerdictValue
    explanation: str
    reason: str
    excerpt: str


@dataclass(frozen=True)
class Agreement:
    """One behavior's agreement with the labels."""

    behavior: str
    n: int
    agreed: int
    kappa: float | None
    confusion: Mapping[tuple[VerdictValue, VerdictValue], int]  # (label, verdict) -> count
    disagreements: Sequence[Disagreement] = field(default_factory=tuple)

    @property
    def rate(self) -> float | None:
        return self.agreed / self.n if self.n else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "behavior": self.behavior,
            "n": self.n,
            "agreed": self.agreed,
            "rate": self.rate,
            "kappa": self.kappa,
            "confusion": {
                f"label={_word(label)},verdict={_word(verdict)}": count
                for (label, verdict), count in sorted(
                    self.confusion.items(),
                    key=lambda item: (_order(item[0][0]), _order(item[0][1])),
                )
            },
            "disagreements": [
                {
                    "id": d.item,
                    "case": d.case,
                    "label": d.label,
                    "verdict": d.verdict,
                    "explanation": d.explanation,
                    "reason": d.reason,
                    "excerpt": d.excerpt,
                }
                for d in self.disagreements
            ],
        }


def read_labels(
    path: str | Path, rows: Callable[[str], Mapping[str, object] | None] | None = None
) -> list[LabeledReply]:
    """Read a label file; ``rows`` looks a record up by its dataset id (for ``sample_id``).

    Raises :class:`LabelError` naming the line and what is wrong.
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise LabelError(
            f"{str(source)!r}: cannot read the label file ({exc.strerror or exc})"
        ) from None
    items: list[LabeledReply] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise LabelError(
                f"{where}: not a JSON object ({exc}); write one object per line"
            ) from None
        items.append(_labeled(data, where, rows, seen))
    if not items:
        raise LabelError(f"{str(source)!r}: no labeled replies in the file")
    return items


def _labeled(
    data: object,
    where: str,
    rows: Callable[[str], Mapping[str, object] | None] | None,
    seen: set[str],
) -> LabeledReply:
    if not isinstance(data, dict):
        raise LabelError(f"{where}: expected a JSON object, got {type(data).__name__}")
    item = str(data.get("id", where))
    if item in seen:
        raise LabelError(f"{where}: the id {item!r} is used twice; give every reply its own id")
    seen.add(item)
    reply = data.get("reply")
    if not isinstance(reply, str):
        raise LabelError(f"{where}: 'reply' must be the reply's text (a string), got {reply!r:.40}")
    record = data.get("record")
    if record is None:
        sample_id = data.get("sample_id")
        if sample_id is None:
            raise LabelError(
                f"{where}: give the record ('record': {{...}}) or its dataset id ('sample_id')"
            )
        record = rows(str(sample_id)) if rows is not None else None
        if record is None:
            raise LabelError(
                f"{where}: sample_id {sample_id!r} is not in the dataset; pass the dataset the "
                "replies answer (--dataset) or put the row in the line as 'record'"
            )
    if not isinstance(record, Mapping):
        raise LabelError(f"{where}: 'record' must be an object, got {type(record).__name__}")
    labels = data.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise LabelError(f"{where}: 'labels' must be an object such as {{\"truncates\": true}}")
    for name, value in labels.items():
        if (
            value not in (True, False, None)
            or isinstance(value, int)
            and not isinstance(value, bool)
        ):
            raise LabelError(f"{where}: label {name!r} is {value!r}; use true, false or null")
    done_reason = data.get("done_reason", "stop")
    if done_reason is not None and not isinstance(done_reason, str):
        raise LabelError(f'{where}: \'done_reason\' must be a string such as "stop" or "length"')
    return LabeledReply(
        id=item,
        record=record,
        reply=Reply(text=reply, done_reason=done_reason, record_keys=tuple(str(k) for k in record)),
        labels=labels,
        reason=str(data.get("reason", "")),
        case=str(data.get("case", "")),
    )


def agreement(
    items: Iterable[LabeledReply],
    verdicts: Mapping[str, Mapping[str, tuple[VerdictValue, str]]],
    behaviors: Sequence[str] | None = None,
) -> dict[str, Agreement]:
    """Per behavior: agreement of ``verdicts`` (item id -> behavior -> (verdict, explanation))
    with the items' labels, over the items that label it."""
    items = list(items)
    names = (
        list(behaviors) if behaviors is not None else sorted({b for i in items for b in i.labels})
    )
    result: dict[str, Agreement] = {}
    for name in names:
        pairs: list[tuple[VerdictValue, VerdictValue]] = []
        disagreements: list[Disagreement] = []
        for item in items:
            if name not in item.labels or name not in verdicts.get(item.id, {}):
                continue
            label = item.labels[name]
            verdict, explanation = verdicts[item.id][name]
            pairs.append((label, verdict))
            if label != verdict:
                disagreements.append(
                    Disagreement(
                        item.id,
                        item.case,
                        label,
                        verdict,
                        explanation,
                        item.reason,
                        _excerpt(item.reply.text),
                    )
                )
        confusion = Counter(pairs)
        agreed = sum(count for (label, verdict), count in confusion.items() if label == verdict)
        result[name] = Agreement(
            name, len(pairs), agreed, cohens_kappa(pairs), dict(confusion), tuple(disagreements)
        )
    return result


def cohens_kappa(pairs: Sequence[tuple[VerdictValue, VerdictValue]]) -> float | None:
    """Cohen's kappa of two raters over true/false/null; None when undefined (no pairs, or
    both raters always gave the same single value)."""
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(1 for a, b in pairs if a == b) / n
    first = Counter(a for a, _ in pairs)
    second = Counter(b for _, b in pairs)
    expected = sum(first[value] * second[value] for value in _VALUES) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def _excerpt(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "\u2026"


def _word(value: VerdictValue) -> str:
    return "null" if value is None else str(value).lower()


def _order(value: VerdictValue) -> int:
    return {True: 0, False: 1, None: 2}[value]
