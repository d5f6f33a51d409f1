"""Re-judging a stored run's replies with the current detectors.

A detector change must never read as a model regression: when two runs were judged by different
detector versions (:data:`mimicry.core.behaviors.DETECTORS_VERSION`, recorded in each report),
the comparison re-judges the built-in behaviors of both runs from the replies their reports keep,
against the records (the report's own, or the other run's for the same ids), and says so.
Behaviors that are users' own tests cannot be re-judged here and are compared as they are.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from mimicry.core.behaviors import BUILTIN_DETECTORS, DETECTORS_VERSION
from mimicry.core.reply import Reply

#: Behaviors a report written before versioned detectors (schema 1) measured with built-ins.
_SCHEMA_1_BUILTINS = ("copies_braces", "preserves_keys", "rewrites_prompt", "truncates")


def detectors_version(report: Mapping[str, Any]) -> int:
    """The detector version that judged a report (1 for reports that predate the field)."""
    value = (report.get("run") or {}).get("detectors_version", 1)
    return value if isinstance(value, int) else 1


def builtin_behaviors(report: Mapping[str, Any]) -> list[str]:
    """The report's behaviors that a built-in detector judged."""
    measured = list(report.get("behaviors") or {})
    if report.get("schema_version") == 1:
        return [name for name in measured if name in _SCHEMA_1_BUILTINS]
    info = (report.get("run") or {}).get("behaviors") or {}
    return [
        name
        for name in measured
        if isinstance(info.get(name), Mapping) and info[name].get("detector") in BUILTIN_DETECTORS
    ]


def needs_rejudging(report: Mapping[str, Any]) -> bool:
    """Whether built-in verdicts in the report come from other detectors than these."""
    return detectors_version(report) != DETECTORS_VERSION and bool(builtin_behaviors(report))


def rejudge(
    report: Mapping[str, Any], records: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, Any], int]:
    """A copy of ``report`` with its built-in behaviors re-judged from its stored replies.

    ``records`` maps sample ids to rows. Returns the new report and the number of samples whose
    record was missing (their built-in verdicts become null).
    """
    from mimicry.core.report import summarize_behavior

    rejudged = copy.deepcopy(dict(report))
    names = builtin_behaviors(report)
    info = (rejudged.setdefault("run", {})).setdefault("behaviors", {})
    missing = 0
    for sample in rejudged.get("samples") or []:
        if sample.get("status") != "ok" or not isinstance(sample.get("reply"), str):
            continue
        record = records.get(str(sample.get("id")))
        verdicts = sample.setdefault("behaviors", {})
        explanations = sample.setdefault("explanations", {})
        if record is None:
            missing += 1
            for name in names:
                verdicts[name] = None
            continue
        flags = sample.get("flags") or []
        reply = Reply(
            text=sample["reply"],
            done_reason=sample.get("done_reason"),
            input_truncated="input_truncated" in flags,
            record_keys=tuple(str(key) for key in record),
        )
        for name in names:
            detector = _detector_name(report, name)
            if reply.input_truncated:
                verdicts[name] = None
                explanations[name] = "not judged: the server cut the input to num_ctx"
                continue
            verdict = BUILTIN_DETECTORS[detector](record, reply)
            verdicts[name] = verdict.shown
            explanations[name] = verdict.explanation
    samples = rejudged.get("samples") or []
    for name in names:
        rows = [
            s for s in samples if name in (s.get("behaviors") or {}) or s.get("status") == "error"
        ]
        rejudged["behaviors"][name] = summarize_behavior(rows, name)
        entry = info.setdefault(name, {})
        if isinstance(entry, dict):
            entry.update(detector=_detector_name(report, name), detectors_version=DETECTORS_VERSION)
    rejudged["run"]["rejudged_from_detectors_version"] = detectors_version(report)
    rejudged["run"]["detectors_version"] = DETECTORS_VERSION
    return rejudged, missing


def _detector_name(report: Mapping[str, Any], behavior: str) -> str:
    info = ((report.get("run") or {}).get("behaviors") or {}).get(behavior)
    if isinstance(info, Mapping) and isinstance(info.get("detector"), str):
        return str(info["detector"])
    return behavior
