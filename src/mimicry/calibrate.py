"""``python -m mimicry calibrate``: the built-in detectors against a user's hand labels.

Reads label files (:mod:`mimicry.core.calibration` describes the format), finds each reply's
record in the dataset (the bundled sample by default), judges every reply with the built-in
detectors and reports per behavior the agreement, Cohen's kappa, the confusion counts and each
disagreement with the detector's explanation and the labeler's reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mimicry.core.behaviors import BUILTIN_BEHAVIORS, judge
from mimicry.core.calibration import Agreement, LabeledReply, LabelError, agreement, read_labels


class CalibrationError(ValueError):
    """Labels or a dataset that cannot be used; one line with the fix."""


def calibrate_files(
    paths: Sequence[str], *, dataset: str = "sample", split: str = "train"
) -> dict[str, Agreement]:
    """Agreement of the built-in detectors with the labels in ``paths``, per behavior."""
    rows = _rows_by_id(dataset, split)
    items: list[LabeledReply] = []
    try:
        for path in paths:
            items += read_labels(path, rows.get)
    except LabelError as exc:
        raise CalibrationError(str(exc)) from None
    duplicates = _duplicates(items)
    if duplicates:
        raise CalibrationError(
            f"reply ids used in more than one label file: {', '.join(duplicates[:5])}; "
            "give every reply its own id"
        )
    return calibrate(items)


def calibrate(items: Sequence[LabeledReply]) -> dict[str, Agreement]:
    """Judge ``items`` with the built-in detectors and compare with their labels."""
    verdicts: dict[str, dict[str, tuple[bool | None, str]]] = {}
    for item in items:
        judged = judge(item.record, item.reply)
        verdicts[item.id] = {name: (v.shown, v.explanation) for name, v in judged.items()}
    labeled = {name for item in items for name in item.labels}
    return agreement(items, verdicts, [name for name in BUILTIN_BEHAVIORS if name in labeled])


def render_calibration(results: Mapping[str, Agreement], *, max_listed: int = 200) -> list[str]:
    """Per behavior: agreement, kappa and confusion counts; then every disagreement."""
    lines = [
        f"{'behavior':<18}{'n':>6}{'agree':>7}{'rate':>8}{'kappa':>8}   "
        "confusion (label -> verdict: count)",
    ]
    total = agreed = 0
    for name, result in results.items():
        total += result.n
        agreed += result.agreed
        rate = "-" if result.rate is None else f"{result.rate:.1%}"
        kappa = "-" if result.kappa is None else f"{result.kappa:.3f}"
        confusion = ", ".join(
            f"{_word(label)}->{_word(verdict)}: {count}"
            for (label, verdict), count in sorted(
                result.confusion.items(), key=lambda item: (_order(item[0][0]), _order(item[0][1]))
            )
        )
        lines.append(f"{name:<18}{result.n:>6}{result.agreed:>7}{rate:>8}{kappa:>8}   {confusion}")
    if total:
        lines.append(f"{'overall':<18}{total:>6}{agreed:>7}{agreed / total:>8.1%}")
    listed = 0
    for name, result in results.items():
        for disagreement in result.disagreements:
            if listed == 0:
                lines.append("")
                lines.append("disagreements (label = the human's, verdict = the detector's):")
            listed += 1
            if listed > max_listed:
                break
            case = f" [{disagreement.case}]" if disagreement.case else ""
            lines.append(
                f"- {name} {disagreement.item}{case}: label {_word(disagreement.label)}, "
                f"verdict {_word(disagreement.verdict)}"
            )
            lines.append(f"    detector: {disagreement.explanation}")
            if disagreement.reason:
                lines.append(f"    labeler:  {disagreement.reason}")
            lines.append(f"    reply:    {disagreement.excerpt}")
    if listed > max_listed:
        lines.append(f"(+{listed - max_listed} more disagreements; --json lists them all)")
    return lines


class _RowsById:
    """A dataset's rows looked up by id, read only when asked for."""

    def __init__(self, rows: Any) -> None:
        self._rows = rows
        self._index = {str(row_id): index for index, row_id in enumerate(rows.ids)}

    def get(self, row_id: str) -> Mapping[str, Any] | None:
        index = self._index.get(row_id)
        return None if index is None else self._rows[index]


def _rows_by_id(dataset: str, split: str) -> _RowsById:
    from mimicry.dataset import DatasetError, choose_dataset, open_rows

    try:
        return _RowsById(open_rows(choose_dataset(dataset, split)))
    except DatasetError as exc:
        raise CalibrationError(str(exc)) from None


def _duplicates(items: Sequence[LabeledReply]) -> list[str]:
    seen: set[str] = set()
    repeated: list[str] = []
    for item in items:
        if item.id in seen:
            repeated.append(item.id)
        seen.add(item.id)
    return repeated


def _word(value: bool | None) -> str:
    return "null" if value is None else str(value).lower()


def _order(value: bool | None) -> int:
    return {True: 0, False: 1, None: 2}[value]
