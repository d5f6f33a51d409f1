"""``python -m mimicry calibrate``: the built-in detectors against a user's hand labels.

Reads label files (:mod:`mimicry.core.calibration` describes the format), finds each reply's
record in the dataset (the bundled sample by default), judges every reply with the built-in
detectors and reports per behavior the agreement, Cohen's kappa, the confusion counts and each
disagreement with the detector's explanation and the labeler's reason. With a judge model it
also asks the judge about every reply labeled for ``answers_prompt`` (cached by the judge's
digest, so a rerun asks nothing) and reports its agreement the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mimicry.core.behaviors import BUILTIN_BEHAVIORS
from mimicry.core.behaviors import judge as judge_all
from mimicry.core.calibration import Agreement, LabeledReply, LabelError, agreement, read_labels
from mimicry.core.judge import JUDGE_OPTIONS
from mimicry.core.reply import Reply


class CalibrationError(ValueError):
    """Labels or a dataset that cannot be used; one line with the fix."""


def calibrate_files(
    paths: Sequence[str],
    *,
    dataset: str = "sample",
    split: str = "train",
    judge: Callable[[list[dict[str, str]]], Reply] | None = None,
) -> dict[str, Agreement]:
    """Agreement of the built-in detectors (and with ``judge``, the judge model's
    ``answers_prompt``) with the labels in ``paths``, per behavior."""
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
    return calibrate(items, judge=judge)


def calibrate(
    items: Sequence[LabeledReply],
    *,
    judge: Callable[[list[dict[str, str]]], Reply] | None = None,
) -> dict[str, Agreement]:
    """Judge ``items`` with the built-in detectors (and ``answers_prompt`` with ``judge``, a
    function asking the judge model) and compare with their labels."""
    from mimicry.core.judge import answers_prompt

    verdicts: dict[str, dict[str, tuple[bool | None, str]]] = {}
    for item in items:
        judged = judge_all(item.record, item.reply)
        verdicts[item.id] = {name: (v.shown, v.explanation) for name, v in judged.items()}
        if judge is not None and "answers_prompt" in item.labels:
            verdict = answers_prompt(item.record, item.reply, judge)
            verdicts[item.id]["answers_prompt"] = (verdict.shown, verdict.explanation)
    labeled = {name for item in items for name in item.labels}
    names = [name for name in BUILTIN_BEHAVIORS if name in labeled]
    if judge is not None and "answers_prompt" in labeled:
        names.append("answers_prompt")
    return agreement(items, verdicts, names)


class JudgeModel:
    """The judge model for calibration: asked through a response cache keyed by its digest (a
    rerun asks nothing), on an Ollama server or, when none answers and none is named, the
    embedded one serving the bundled model."""

    def __init__(
        self,
        model: str,
        *,
        host: str | None = None,
        cache_dir: Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        from mimicry.cache import ResponseCache
        from mimicry.client import ModelClient, OllamaError, RetryPolicy, auth_headers, resolve_host
        from mimicry.run.plan import server_answers
        from mimicry.run.replies import ReplyService
        from mimicry.settings import CacheMode

        env = dict(os.environ if environ is None else environ)
        url, named = resolve_host(host, env)
        self._server: Any = None
        if not named and not server_answers(url):
            url = self._start_embedded(model)
        self._client = ModelClient(url, retry=RetryPolicy(attempts=4), headers=auth_headers(env))
        try:
            info = self._client.preflight(model)
        except OllamaError as exc:
            self.close()
            raise CalibrationError(f"--judge-model {model!r}: {exc}") from None
        directory = cache_dir or _default_cache(env) / "judge-replies"
        self._service = ReplyService(
            clients=lambda: [self._client],
            model=model,
            model_digest=info.digest,
            options={**JUDGE_OPTIONS, "seed": 42, "num_ctx": 4096},
            cache=ResponseCache(directory),
            mode=CacheMode.USE,
        )

    def _start_embedded(self, model: str) -> str:
        from mimicry.embedded import BUNDLED_MODEL_NAME, embedded_available
        from mimicry.run.plan import PlanError, start_embedded

        why_not = embedded_available()
        if why_not is not None or model != BUNDLED_MODEL_NAME:
            raise CalibrationError(
                f"--judge-model {model!r}: no Ollama server answers (pass --ollama-host); the "
                f"embedded server serves only {BUNDLED_MODEL_NAME!r}"
                + (f" ({why_not})" if why_not else "")
            )
        try:
            self._server = start_embedded({"parallel": 1, "ctx_size": 4096})
        except PlanError as exc:
            raise CalibrationError(str(exc)) from None
        return str(self._server.url)

    def __call__(self, messages: list[dict[str, str]]) -> Reply:
        from mimicry.client import OllamaError

        try:
            fetched = self._service.fetch(messages)
        except OllamaError as exc:
            raise CalibrationError(f"the judge model did not answer: {exc}") from None
        return Reply.from_fields(fetched.fields, cached=fetched.cached)

    def close(self) -> None:
        service = getattr(self, "_service", None)
        if service is not None:
            service.close()
        self._client.close()
        if self._server is not None:
            self._server.stop()
            self._server = None


def _default_cache(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mimicry-evals"


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
