"""Collecting per-sample results into the run's report, and rendering it for the terminal.

:class:`RunResults` is the one controller-side object that results are aggregated in (fed from
``pytest_runtest_logreport``, so it sees the same results with or without xdist).
:func:`build_report` turns it into the JSON report (``schema_version`` 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mimicry.core.behaviors import BEHAVIORS
from mimicry.core.stats import rate, wilson_interval

SCHEMA_VERSION = 1


class RunResults:
    """Every sample result of a run and which behavior tests ran for which sample.

    Samples are keyed by ``(id, repeat)``: with ``--repeat K`` a dataset row has K results.
    """

    def __init__(self) -> None:
        self.samples: dict[tuple[str, int], dict[str, Any]] = {}
        self.ran: dict[str, set[tuple[str, int]]] = {name: set() for name in BEHAVIORS}

    def add(self, payload: Mapping[str, Any]) -> None:
        """Take one test's payload: ``{"behavior", "sample_id", "repeat", "sample": dict | None}``.

        A worker sends the full sample dict with the first test of that sample it reports and
        only the id afterwards, so the sample dict is kept from whichever report carries it.
        """
        key = (str(payload["sample_id"]), int(payload.get("repeat") or 0))
        behavior = payload.get("behavior")
        if behavior in self.ran:
            self.ran[behavior].add(key)
        sample = payload.get("sample")
        if isinstance(sample, Mapping):
            known = self.samples.get(key)
            # an error recorded by one worker never hides a reply another worker got
            if known is None or (known.get("status") == "error" and sample.get("status") == "ok"):
                self.samples[key] = dict(sample)

    @property
    def error_count(self) -> int:
        return sum(1 for s in self.samples.values() if s.get("status") == "error")

    def behaviors_run(self) -> list[str]:
        return [name for name in BEHAVIORS if self.ran[name]]


def sample_key(sample: Mapping[str, Any]) -> tuple[str, int]:
    """How a sample result is identified: its dataset id and its repeat number."""
    return (str(sample.get("id")), int(sample.get("repeat") or 0))


def summarize_behavior(samples: Iterable[Mapping[str, Any]], behavior: str) -> dict[str, Any]:
    """Counts, rate and 95% Wilson interval of one behavior over the given samples.

    ``n`` counts judged samples (True or False). Nulls (not judged: input cut, output capped) and
    errors (no reply) are counted apart and are neither passes nor failures.
    """
    passed = judged = nulls = errors = 0
    for sample in samples:
        if sample.get("status") == "error":
            errors += 1
            continue
        verdict = sample.get("behaviors", {}).get(behavior)
        if verdict is None:
            nulls += 1
        else:
            judged += 1
            passed += bool(verdict)
    ci = wilson_interval(passed, judged)
    return {
        "n": judged,
        "passed": passed,
        "rate": rate(passed, judged),
        "ci95": list(ci) if ci is not None else None,
        "null": nulls,
        "errors": errors,
    }


def key_preservation(
    samples: Iterable[Mapping[str, Any]], keys: Iterable[str]
) -> dict[str, float | None]:
    """How often each record key survives as a key in the reply, over samples judged for it."""
    keys = list(keys)
    kept = dict.fromkeys(keys, 0)
    judged = 0
    for sample in samples:
        if (
            sample.get("status") != "ok"
            or sample.get("behaviors", {}).get("preserves_keys") is None
        ):
            continue
        judged += 1
        for key in sample.get("metrics", {}).get("kept_keys", []):
            if key in kept:
                kept[key] += 1
    return {key: rate(count, judged) for key, count in kept.items()}


def build_report(
    run: Mapping[str, Any], results: RunResults, record_keys: Iterable[str]
) -> dict[str, Any]:
    """The JSON report of a run (see README, "The JSON report")."""
    samples = sorted(
        results.samples.values(),
        key=lambda s: (
            s.get("index") is None,
            s.get("index"),
            s.get("repeat") or 0,
            str(s.get("id")),
        ),
    )
    repeated = any(s.get("repeat") for s in samples)
    behaviors = {}
    for name in results.behaviors_run():
        ran = results.ran[name]
        chosen = [s for s in samples if sample_key(s) in ran]
        behaviors[name] = summarize_behavior(chosen, name)
        if repeated:
            behaviors[name].update(_clustered(chosen, name))
    return {
        "schema_version": SCHEMA_VERSION,
        "run": dict(run),
        "behaviors": behaviors,
        "key_preservation": key_preservation(samples, record_keys),
        "metrics": {"shorter_than_input": _shorter_than_input(samples)},
        "samples": samples,
    }


def _clustered(samples: Iterable[Mapping[str, Any]], behavior: str) -> dict[str, Any]:
    """With repeats, the interval is cluster-robust by sample (repeats of a row are alike)."""
    from mimicry.core.compare import clustered_rate

    grouped: dict[str, list[bool | None]] = {}
    for sample in samples:
        if sample.get("status") == "ok":
            grouped.setdefault(str(sample.get("id")), []).append(
                sample.get("behaviors", {}).get(behavior)
            )
    estimate = clustered_rate(grouped)
    return {
        "ci95": list(estimate.ci95) if estimate.ci95 is not None else None,
        "ci_method": "cluster-robust",
        "clusters": estimate.clusters,
        "se": estimate.se,
    }


def _shorter_than_input(samples: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The original analysis' raw measure: ``len(reply) < len(str(record))``, over ok samples."""
    values = [
        s.get("metrics", {}).get("shorter_than_input") for s in samples if s.get("status") == "ok"
    ]
    flags = [bool(v) for v in values if v is not None]
    ci = wilson_interval(sum(flags), len(flags))
    return {
        "n": len(flags),
        "passed": sum(flags),
        "rate": rate(sum(flags), len(flags)),
        "ci95": list(ci) if ci else None,
    }


def render_table(report: Mapping[str, Any]) -> list[str]:
    """The terminal summary: one row per behavior, then the per-key rates."""
    lines = [
        f"{'behavior':<18}{'n':>6}{'passed':>8}{'rate':>8}  {'95% CI':<15}{'null':>6}{'errors':>8}",
    ]
    for name, row in report["behaviors"].items():
        lines.append(
            f"{name:<18}{row['n']:>6}{row['passed']:>8}{_pct(row['rate']):>8}  "
            f"{_interval(row['ci95']):<15}{row['null']:>6}{row['errors']:>8}"
        )
    raw = report.get("metrics", {}).get("shorter_than_input")
    if raw and raw["n"]:
        lines.append(
            f"{'(shorter_than_input: len(reply) < len(record), the original raw measure)':<0}"
        )
        lines.append(
            f"{'shorter_than_input':<18}{raw['n']:>6}{raw['passed']:>8}{_pct(raw['rate']):>8}  "
            f"{_interval(raw['ci95']):<15}"
        )
    keys = report.get("key_preservation") or {}
    if keys:
        lines.append("key preservation: " + ", ".join(f"{k} {_pct(v)}" for k, v in keys.items()))
    return lines


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _interval(ci: list[float] | None) -> str:
    return "-" if not ci else f"[{ci[0]:.1%}, {ci[1]:.1%}]"
