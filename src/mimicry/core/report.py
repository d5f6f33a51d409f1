"""Collecting a run's results into its report, and rendering the report for the terminal.

:class:`RunResults` is the one controller-side object results are aggregated in (fed from
``pytest_runtest_logreport``, so it sees the same results with or without xdist). It knows
nothing of which behaviors exist: a behavior is whatever test reported a verdict under that name.
:func:`build_report` turns it into the JSON report (``schema_version`` 2).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from mimicry.core.behaviors import BUILTIN_BEHAVIORS, DETECTORS_VERSION, RAW_MEASURES, definition
from mimicry.core.stats import rate, wilson_interval

#: Built-in behaviors a judge model decides, with their definitions (see mimicry.core.judge).
JUDGED_BEHAVIORS: Mapping[str, str] = {
    "answers_prompt": "The reply answers the record's prompt (responds to its request, in any "
    "format) rather than imitating the record or saying something unrelated, as a judge model "
    "reads it.",
}

SCHEMA_VERSION = 2
#: Report versions this version reads (1: before open behaviors; its samples lack records).
READABLE_SCHEMA_VERSIONS = (1, 2)

SampleKey = tuple[str, int]
#: A test's outcome as a verdict: shown, not shown, not judged, or an error in the test.
Outcome = Literal["shown", "not shown", "not judged", "error"]
OUTCOME_VERDICTS: Mapping[Outcome, bool | None] = {
    "shown": True,
    "not shown": False,
    "not judged": None,
    "error": None,
}


def sample_key(sample: Mapping[str, Any]) -> SampleKey:
    """How a sample result is identified: its dataset id and its repeat number."""
    return (str(sample.get("id")), int(sample.get("repeat") or 0))


class RunResults:
    """Every sample result of a run and every behavior's verdict on it.

    Samples are keyed by ``(id, repeat)``: with ``--repeat K`` a dataset row has K results.
    """

    def __init__(self) -> None:
        self.samples: dict[SampleKey, dict[str, Any]] = {}
        self.outcomes: dict[SampleKey, dict[str, tuple[Outcome, str]]] = {}
        self.detectors: dict[str, str | None] = {}

    def add_sample(self, sample: Mapping[str, Any]) -> None:
        """Take a sample result (reply, measures, flags). An error recorded by one worker never
        hides a reply another worker got."""
        key = sample_key(sample)
        known = self.samples.get(key)
        if known is None or (known.get("status") == "error" and sample.get("status") == "ok"):
            self.samples[key] = dict(sample)

    def add_outcome(
        self,
        key: SampleKey,
        behavior: str,
        outcome: Outcome,
        message: str = "",
        detector: str | None = None,
    ) -> None:
        """Take one behavior test's outcome on one sample."""
        self.outcomes.setdefault(key, {})[behavior] = (outcome, message)
        if detector is not None or behavior not in self.detectors:
            self.detectors[behavior] = detector

    @property
    def error_count(self) -> int:
        """Samples without a reply."""
        return sum(1 for s in self.samples.values() if s.get("status") == "error")

    @property
    def test_error_count(self) -> int:
        """Behavior tests that raised on a sample that had its reply (a broken test, not a
        measurement and not the server's doing)."""
        return sum(
            1
            for key, outcomes in self.outcomes.items()
            if self.samples.get(key, {}).get("status") == "ok"
            for outcome, _ in outcomes.values()
            if outcome == "error"
        )

    def behaviors(self) -> list[str]:
        """The behaviors measured: the built-in ones in their order, then the others by name."""
        names = set(self.detectors)
        return [n for n in BUILTIN_BEHAVIORS if n in names] + sorted(names - set(BUILTIN_BEHAVIORS))

    def merged_samples(self) -> list[dict[str, Any]]:
        """Each sample result with its verdicts, explanations and test errors, in run order."""
        merged = []
        for key, sample in self.samples.items():
            entry = dict(sample)
            verdicts: dict[str, bool | None] = {}
            explanations: dict[str, str] = {}
            errors: dict[str, str] = {}
            for behavior, (outcome, message) in self.outcomes.get(key, {}).items():
                verdicts[behavior] = OUTCOME_VERDICTS[outcome]
                if outcome == "error":
                    errors[behavior] = message
                elif message:
                    explanations[behavior] = message
            entry["behaviors"] = verdicts
            entry["explanations"] = explanations
            entry["test_errors"] = errors
            merged.append(entry)
        merged.sort(
            key=lambda s: (
                s.get("index") is None,
                s.get("index") or 0,
                s.get("repeat") or 0,
                str(s.get("id")),
            )
        )
        return merged


def summarize_behavior(samples: Iterable[Mapping[str, Any]], behavior: str) -> dict[str, Any]:
    """Counts, rate and 95% Wilson interval of one behavior over the samples that ran it.

    ``n`` counts judged samples (True or False). Nulls (not judged) and errors (no reply, or the
    test itself raised) are counted apart and are neither passes nor failures.
    """
    passed = judged = nulls = errors = 0
    for sample in samples:
        verdicts = sample.get("behaviors") or {}
        if behavior not in verdicts and sample.get("status") != "error":
            continue
        if sample.get("status") == "error" or behavior in (sample.get("test_errors") or {}):
            errors += 1
            continue
        verdict = verdicts.get(behavior)
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


def summarize_measure(samples: Iterable[Mapping[str, Any]], measure: str) -> dict[str, Any]:
    """The rate of a true/false per-sample measure over the samples with a reply."""
    values = [(s.get("measures") or {}).get(measure) for s in samples if s.get("status") == "ok"]
    flags = [bool(v) for v in values if v is not None]
    ci = wilson_interval(sum(flags), len(flags))
    return {
        "n": len(flags),
        "passed": sum(flags),
        "rate": rate(sum(flags), len(flags)),
        "ci95": list(ci) if ci else None,
    }


def key_preservation(
    samples: Iterable[Mapping[str, Any]], keys: Iterable[str]
) -> dict[str, float | None]:
    """How often each record key survives as a key of the imitation, over judged samples."""
    keys = list(keys)
    kept = dict.fromkeys(keys, 0)
    judged = 0
    for sample in samples:
        if sample.get("status") != "ok" or "input_truncated" in (sample.get("flags") or []):
            continue
        judged += 1
        for key in (sample.get("measures") or {}).get("kept_keys", []):
            if key in kept:
                kept[key] += 1
    return {key: rate(count, judged) for key, count in kept.items()}


def behavior_info(results: RunResults) -> dict[str, dict[str, Any]]:
    """What judged each behavior: a built-in detector (with the detectors' version and its
    definition) or the user's own test (``detector`` null)."""
    info: dict[str, dict[str, Any]] = {}
    for name in results.behaviors():
        detector = results.detectors.get(name)
        entry: dict[str, Any] = {"detector": detector}
        if detector is not None and detector in BUILTIN_BEHAVIORS:
            entry["detectors_version"] = DETECTORS_VERSION
            entry["definition"] = definition(detector)
        elif detector is not None and detector in JUDGED_BEHAVIORS:
            entry["judged_by"] = "the judge model (run.judge_model)"
            entry["definition"] = JUDGED_BEHAVIORS[detector]
        info[name] = entry
    return info


def build_report(
    run: Mapping[str, Any],
    results: RunResults,
    records: Mapping[str, Mapping[str, Any]],
    record_keys: Sequence[str] = (),
) -> dict[str, Any]:
    """The JSON report of a run (see README, "The JSON report").

    ``records``: the evaluated rows by id, kept in the report so that its replies can be
    re-judged and shown beside their record without the dataset.
    """
    samples = results.merged_samples()
    repeated = any(s.get("repeat") for s in samples)
    behaviors: dict[str, Any] = {}
    for name in results.behaviors():
        ran = [s for s in samples if name in s["behaviors"] or s.get("status") == "error"]
        behaviors[name] = summarize_behavior(ran, name)
        if repeated:
            behaviors[name].update(_clustered(ran, name))
    return {
        "schema_version": SCHEMA_VERSION,
        "run": {
            **run,
            "detectors_version": DETECTORS_VERSION,
            "behaviors": behavior_info(results),
        },
        "behaviors": behaviors,
        "measures": {name: summarize_measure(samples, name) for name in RAW_MEASURES},
        "key_preservation": key_preservation(samples, record_keys),
        "records": {str(k): dict(v) for k, v in records.items()},
        "samples": samples,
    }


def _clustered(samples: Iterable[Mapping[str, Any]], behavior: str) -> dict[str, Any]:
    """With repeats, the interval is cluster-robust by sample (repeats of a row are alike)."""
    from mimicry.core.compare import clustered_rate

    grouped: dict[str, list[bool | None]] = {}
    for sample in samples:
        if sample.get("status") == "ok":
            grouped.setdefault(str(sample.get("id")), []).append(
                (sample.get("behaviors") or {}).get(behavior)
            )
    estimate = clustered_rate(grouped)
    return {
        "ci95": list(estimate.ci95) if estimate.ci95 is not None else None,
        "ci_method": "cluster-robust",
        "clusters": estimate.clusters,
        "se": estimate.se,
    }


def render_table(report: Mapping[str, Any]) -> list[str]:
    """The terminal summary: one row per behavior, the raw measures, then the per-key rates.

    Every behavior the run registered has its row, judged or not (a behavior no sample was
    judged for shows ``n`` 0 and ``-`` for its rate), whatever the number of samples. An
    incomplete run starts with a line saying so and how many samples the rates cover.
    """
    rows: dict[str, Mapping[str, Any]] = dict(report.get("behaviors") or {})
    run = report.get("run") or {}
    registered = list(run.get("behaviors") or {})
    for sample in report.get("samples") or []:
        registered += [name for name in sample.get("behaviors") or {} if name not in rows]
    empty = {"n": 0, "passed": 0, "rate": None, "ci95": None, "null": 0, "errors": 0}
    for name in registered:
        rows.setdefault(str(name), empty)
    width = max([18, *(len(name) + 2 for name in rows)])
    lines = []
    if run.get("complete") is False:
        samples = report.get("samples") or []
        ids = (run.get("dataset") or {}).get("sample_ids")
        planned = f" of {len(ids) * max(1, int(run.get('repeat') or 1))}" if ids else ""
        judged = sum(
            1
            for s in samples
            if s.get("status") != "error"
            and any(v is not None for v in (s.get("behaviors") or {}).values())
        )
        reason = run.get("incomplete_reason")
        because = f" ({reason})" if reason else ""
        lines.append(
            f"INCOMPLETE RUN: {judged}{planned} planned samples judged{because}; the rates cover "
            "only those"
        )
    lines.append(
        f"{'behavior':<{width}}{'n':>6}{'shown':>7}{'rate':>8}  {'95% CI':<17}{'null':>6}"
        f"{'errors':>8}",
    )
    for name, row in rows.items():
        lines.append(
            f"{name:<{width}}{row.get('n', 0):>6}{row.get('passed', 0):>7}"
            f"{_pct(row.get('rate')):>8}  {_interval(row.get('ci95')):<17}"
            f"{row.get('null', 0):>6}{row.get('errors', 0):>8}"
        )
    if not rows:
        lines.append("(no behavior was measured)")
    measures = {k: v for k, v in (report.get("measures") or {}).items() if v.get("n")}
    if measures:
        lines.append("raw measures of the original analysis (over samples with a reply):")
        for name, row in measures.items():
            lines.append(
                f"{name:<{width}}{row['n']:>6}{row['passed']:>7}{_pct(row['rate']):>8}  "
                f"{_interval(row['ci95']):<17}"
            )
    keys = report.get("key_preservation") or {}
    if keys and any(v is not None for v in keys.values()):
        lines.append("key preservation: " + ", ".join(f"{k} {_pct(v)}" for k, v in keys.items()))
    return lines


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _interval(ci: Sequence[float] | None) -> str:
    return "-" if not ci else f"[{ci[0]:.1%}, {ci[1]:.1%}]"
