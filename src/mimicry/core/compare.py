"""Paired comparison of two runs' reports, sample by sample, and the statistics it needs.

Both runs judged the same dataset rows, so the comparison is paired: each behavior's verdicts are
matched by sample id on the samples judged (True or False) in both runs, and the question is
whether the samples that flipped one way outnumber those that flipped the other way by more than
chance allows. An unpaired test (two independent proportions) would throw that pairing away and
lose most of its power.

- Rates carry 95% Wilson intervals (:func:`mimicry.core.stats.wilson_interval`).
- The difference ``current - baseline`` carries Newcombe's hybrid score interval for paired
  proportions (Newcombe 1998, "Improved confidence intervals for the difference between binomial
  proportions based on paired data", Statistics in Medicine 17:2635, method 10): it combines the
  two Wilson intervals with the estimated correlation of the pairs, stays inside [-1, 1], needs no
  iteration and is close to nominal coverage for small samples (Tango's score interval is similar
  but needs a root search; statsmodels, which has neither, is not a dependency).
- The p-value is McNemar's exact test: under "nothing changed" each discordant pair is equally
  likely to have flipped either way, so ``b ~ Binomial(b + c, 1/2)`` (scipy ``binomtest``,
  two-sided). Exact rather than chi-squared because eval runs often have few discordant pairs.

Repeated observations (``--repeat K``: each sample asked K times with different seeds) appear in
a report as several sample entries with the same ``id``. Pure helpers below turn them into a
per-sample share of passing repeats, a per-sample verdict ("passes when at least ``min_share`` of
its judged repeats pass") and a rate over all observations with a cluster-robust standard error.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mimicry.core.report import READABLE_SCHEMA_VERSIONS
from mimicry.core.stats import CONFIDENCE, normal_quantile, wilson_interval

#: Default share of a sample's judged repeats that must pass for the sample to pass, when runs
#: with repeats are compared. With one observation per sample the share is 0 or 1, so any
#: value in (0, 1] gives the plain verdict.
DEFAULT_MIN_SHARE = 0.5

RateMethod = Literal["wilson", "cluster-robust"]
DifferenceKind = Literal[
    "model",
    "backend",
    "dataset",
    "selection",
    "options",
    "prompt_template",
    "completeness",
    "errors",
    "behaviors",
    "repeats",
    "detectors",
]
Severity = Literal["warning", "note"]
Verdict = bool | None


class ReportError(ValueError):
    """A file is not a readable mimicry report (schema_version 1)."""


# -- loading -------------------------------------------------------------------------------------


def load_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a JSON report written by ``--report-json``.

    Raises :class:`ReportError` with one line saying what is wrong (missing file, bad JSON,
    another schema) and what was expected.
    """
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"cannot read report {name!r}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"cannot read report {name!r}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(
            f"{name!r} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "expected a report written by --report-json"
        ) from None
    except RecursionError:
        raise ReportError(f"{name!r} is nested too deeply to be a mimicry report") from None
    return check_report(data, name)


def check_report(data: object, source: str = "report") -> dict[str, Any]:
    """Check the parts of a report that comparing and gating rely on; return it as a dict."""
    if not isinstance(data, dict):
        raise ReportError(
            f"{source!r} is not a mimicry report: the top level is {type(data).__name__}, "
            "expected an object written by --report-json"
        )
    version = data.get("schema_version")
    if version not in READABLE_SCHEMA_VERSIONS:
        found = (
            "no schema_version" if "schema_version" not in data else f"schema_version {version!r}"
        )
        raise ReportError(
            f"{source!r} is not a mimicry report this version can read: {found}, "
            f"expected schema_version {' or '.join(map(str, READABLE_SCHEMA_VERSIONS))} "
            "(write it with --report-json)"
        )
    for key, kind in (("run", dict), ("behaviors", dict), ("samples", list)):
        if not isinstance(data.get(key), kind):
            raise ReportError(
                f"{source!r} is not a complete mimicry report: {key!r} is missing or not "
                f"{'an object' if kind is dict else 'a list'}"
            )
    for key in ("options", "dataset"):
        if not isinstance(data["run"].get(key, {}), dict):
            raise _incomplete(source, f"run.{key} is not an object")
    for position, sample in enumerate(data["samples"]):
        if not isinstance(sample, dict) or not isinstance(sample.get("id"), str | int):
            raise _incomplete(source, f"samples[{position}] is not an object with an 'id'")
        verdicts = sample.get("behaviors", {})
        if not isinstance(verdicts, dict) or any(
            v not in (True, False, None) for v in verdicts.values()
        ):
            raise _incomplete(
                source, f"samples[{position}].behaviors is not an object of true, false or null"
            )
    for name, row in data["behaviors"].items():
        if not isinstance(row, dict) or not _is_row(row):
            raise _incomplete(
                source,
                f"behaviors[{name!r}] is not an object with counts n, passed, a rate and ci95",
            )
    return data


def _incomplete(source: str, problem: str) -> ReportError:
    return ReportError(f"{source!r} is not a complete mimicry report: {problem}")


def _is_row(row: Mapping[str, Any]) -> bool:
    """A behavior row as build_report writes it (the figures tables and gates show)."""

    def count(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    def number(value: object) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    ci = row.get("ci95")
    return (
        count(row.get("n"))
        and count(row.get("passed"))
        and all(count(row[k]) for k in ("null", "errors") if k in row)
        and (row.get("rate") is None or number(row.get("rate")))
        and (ci is None or (isinstance(ci, list) and len(ci) == 2 and all(map(number, ci))))
    )


# -- statistics ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RateEstimate:
    """A pass rate with its 95% interval.

    ``method`` is ``"wilson"`` for one observation per sample (``n`` samples) and
    ``"cluster-robust"`` for repeated observations (``n`` observations in ``clusters`` samples,
    with the standard error ``se`` that accounts for repeats of one sample being alike).
    """

    passed: int
    n: int
    rate: float | None
    ci95: tuple[float, float] | None
    method: RateMethod = "wilson"
    clusters: int | None = None
    se: float | None = None

    @classmethod
    def wilson(cls, passed: int, n: int) -> RateEstimate:
        """``passed`` of ``n`` independent observations, with the Wilson score interval."""
        ci = wilson_interval(passed, n)
        return cls(passed=passed, n=n, rate=passed / n if n else None, ci95=ci)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RateEstimate:
        """A behavior row of the JSON report (``n``, ``passed``, ``rate``, ``ci95``)."""
        ci = row.get("ci95")
        return cls(
            passed=int(row.get("passed") or 0),
            n=int(row.get("n") or 0),
            rate=row.get("rate"),
            ci95=(float(ci[0]), float(ci[1]))
            if isinstance(ci, list | tuple) and len(ci) == 2
            else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "n": self.n,
            "rate": self.rate,
            "ci95": list(self.ci95) if self.ci95 is not None else None,
            "method": self.method,
            "clusters": self.clusters,
            "se": self.se,
        }


def mcnemar_exact_p(b: int, c: int) -> float:
    """McNemar's exact two-sided p-value for ``b`` and ``c`` discordant pairs (1.0 when none)."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b!r}, c={c!r}")
    if b + c == 0:
        return 1.0
    from scipy.stats import binomtest  # imported when a comparison needs it: it is slow to load

    return min(1.0, float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue))


def paired_difference_interval(
    both: int, b: int, c: int, neither: int, confidence: float = CONFIDENCE
) -> tuple[float, float] | None:
    """Newcombe's hybrid score interval (1998, method 10) for ``current - baseline``.

    The 2x2 table of paired verdicts: ``both`` passed in both runs, ``b`` passed in the baseline
    only (pass -> fail), ``c`` passed in the current run only (fail -> pass), ``neither``
    passed in neither. None when there are no pairs.
    """
    counts = (both, b, c, neither)
    if min(counts) < 0:
        raise ValueError(f"counts must be >= 0, got {counts!r}")
    n = sum(counts)
    if n == 0:
        return None
    current_passed, baseline_passed = both + c, both + b
    p1, p2 = current_passed / n, baseline_passed / n
    l1, u1 = _wilson(current_passed, n, confidence)
    l2, u2 = _wilson(baseline_passed, n, confidence)
    phi = _pair_correlation(both, b, c, neither)
    diff = p1 - p2
    lower = diff - math.sqrt(
        max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    )
    upper = diff + math.sqrt(
        max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2)
    )
    return (max(-1.0, lower), min(1.0, upper))


def _wilson(passed: int, n: int, confidence: float) -> tuple[float, float]:
    ci = wilson_interval(passed, n, confidence)
    assert ci is not None  # n > 0 here
    return ci


def _pair_correlation(a: int, b: int, c: int, d: int) -> float:
    """Newcombe's estimate of the correlation between the paired verdicts.

    The numerator ``ad - bc`` is reduced by ``n/2`` when positive (0 when that crosses zero), as
    Newcombe prescribes for method 10; 0 when a margin is empty.
    """
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    if margins == 0:
        return 0.0
    n = a + b + c + d
    cross = a * d - b * c
    if cross > n / 2:
        numerator = cross - n / 2
    elif cross >= 0:
        numerator = 0.0
    else:
        numerator = float(cross)
    return numerator / math.sqrt(margins)


# -- repeated observations -----------------------------------------------------------------------


def verdicts_by_sample(
    samples: Iterable[Mapping[str, Any]], behavior: str
) -> dict[str, list[Verdict]]:
    """Each sample id's verdicts for ``behavior``, one per observation (repeats share an id).

    A sample with ``status: "error"`` contributes None (no verdict), like a null verdict.
    """
    grouped: dict[str, list[Verdict]] = {}
    for sample in samples:
        grouped.setdefault(str(sample.get("id")), []).append(_verdict(sample, behavior))
    return grouped


def has_repeats(samples: Iterable[Mapping[str, Any]]) -> bool:
    """Whether some sample id occurs more than once (a run with ``--repeat``)."""
    seen: set[str] = set()
    for sample in samples:
        key = str(sample.get("id"))
        if key in seen:
            return True
        seen.add(key)
    return False


def pass_share(verdicts: Sequence[Verdict]) -> float | None:
    """The share of judged repeats that passed; None when no repeat was judged."""
    judged = [v for v in verdicts if v is not None]
    return sum(judged) / len(judged) if judged else None


def consistent_verdict(verdicts: Sequence[Verdict], min_share: float) -> Verdict:
    """Whether at least ``min_share`` of the judged repeats passed (None: none was judged)."""
    _check_share(min_share)
    share = pass_share(verdicts)
    if share is None:
        return None
    # tolerate float noise: 4 of 5 repeats must meet a declared share of 0.8
    return share >= min_share - 1e-12


def consistency_rate(grouped: Mapping[str, Sequence[Verdict]], min_share: float) -> RateEstimate:
    """The share of samples that pass consistently, with a Wilson interval over samples."""
    verdicts = [consistent_verdict(v, min_share) for v in grouped.values()]
    judged = [v for v in verdicts if v is not None]
    return RateEstimate.wilson(sum(judged), len(judged))


def clustered_rate(
    grouped: Mapping[str, Sequence[Verdict]], confidence: float = CONFIDENCE
) -> RateEstimate:
    """The pass rate over all judged observations, with a cluster-robust (by sample) error.

    Repeats of one sample are alike, so they carry less information than as many independent
    samples. The standard error is the cluster-robust (sandwich) one of the ratio estimator
    ``p = sum(passed_i) / sum(judged_i)``:
    ``se^2 = G / (G - 1) * sum((passed_i - p * judged_i)^2) / (sum judged_i)^2`` over the ``G``
    samples with a judged repeat. The interval is Wilson's at the effective sample size
    ``p(1 - p) / se^2`` (Korn and Graubard 1998), kept between ``G`` and the number of
    observations, which behaves at rates near 0 and 1 where ``p +- z se`` collapses.
    ``se`` and the interval are None with fewer than 2 judged samples.
    """
    counts = [
        (sum(1 for v in vs if v), sum(1 for v in vs if v is not None)) for vs in grouped.values()
    ]
    counts = [(s, m) for s, m in counts if m > 0]
    passed = sum(s for s, _ in counts)
    n = sum(m for _, m in counts)
    clusters = len(counts)
    if n == 0:
        return RateEstimate(0, 0, None, None, "cluster-robust", clusters=0, se=None)
    p = passed / n
    if clusters < 2:
        return RateEstimate(passed, n, p, None, "cluster-robust", clusters=clusters, se=None)
    spread = sum((s - p * m) ** 2 for s, m in counts)
    se = math.sqrt(clusters / (clusters - 1) * spread) / n
    if se > 0 and 0 < p < 1:
        n_eff = min(max(p * (1 - p) / se**2, float(clusters)), float(n))
    else:
        n_eff = float(clusters)  # no spread to measure: as if repeats were identical
    return RateEstimate(
        passed,
        n,
        p,
        _wilson_fractional(p, n_eff, confidence),
        "cluster-robust",
        clusters=clusters,
        se=se,
    )


def _wilson_fractional(p: float, n: float, confidence: float) -> tuple[float, float]:
    """The Wilson score interval for a rate ``p`` at a (possibly fractional) sample size ``n``.

    scipy's ``binomtest`` needs whole counts, so the effective-size interval is the score formula
    itself; with whole counts it equals :func:`mimicry.core.stats.wilson_interval` (tested).
    """
    z = normal_quantile(confidence)
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def _check_share(min_share: float) -> None:
    if not 0 < min_share <= 1:
        raise ValueError(f"min_share must be in (0, 1], got {min_share!r}")


def _verdict(sample: Mapping[str, Any], behavior: str) -> Verdict:
    if sample.get("status") == "error":
        return None
    verdicts = sample.get("behaviors")
    value = verdicts.get(behavior) if isinstance(verdicts, Mapping) else None
    return None if value is None else bool(value)


# -- the comparison ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunDifference:
    """One way the two runs differ besides the model's answers; warnings say the comparison may
    measure something else than the model."""

    kind: DifferenceKind
    severity: Severity
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "severity": self.severity, "message": self.message}


@dataclass(frozen=True)
class RunInfo:
    """Who answered in one run: enough to label it in tables and plots."""

    model: str
    model_digest: str
    backend: str
    dataset: str
    samples: int
    started_at: str

    @classmethod
    def of(cls, report: Mapping[str, Any]) -> RunInfo:
        run = report.get("run") or {}
        dataset = run.get("dataset") or {}
        return cls(
            model=str(run.get("model", "?")),
            model_digest=str(run.get("model_digest") or ""),
            backend=str(run.get("backend") or ""),
            dataset=str(dataset.get("id_or_path", "?")),
            samples=len({str(s.get("id")) for s in report.get("samples", [])}),
            started_at=str(run.get("started_at") or ""),
        )

    def label(self) -> str:
        """``model (digest 0123456789ab)``: the tag alone does not identify the weights."""
        digest = self.model_digest.removeprefix("sha256:")[:12]
        return f"{self.model} (digest {digest})" if digest else self.model

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "model_digest": self.model_digest,
            "backend": self.backend,
            "dataset": self.dataset,
            "samples": self.samples,
            "started_at": self.started_at,
        }


@dataclass(frozen=True)
class BehaviorComparison:
    """One behavior compared on the samples judged in both runs.

    ``pass_to_fail`` (McNemar's ``b``) lists the samples that showed the behavior in the
    baseline but not in the current run; ``fail_to_pass`` (``c``) the reverse.
    ``judged_only_in_baseline`` / ``_current`` are common samples that one run could not judge
    (null verdict or error); they are left out of every figure here.
    """

    behavior: str
    n: int
    baseline: RateEstimate
    current: RateEstimate
    difference: float | None
    difference_ci95: tuple[float, float] | None
    both_passed: int
    neither_passed: int
    pass_to_fail: tuple[str, ...]
    fail_to_pass: tuple[str, ...]
    mcnemar_p: float
    judged_only_in_baseline: tuple[str, ...] = ()
    judged_only_in_current: tuple[str, ...] = ()

    @property
    def b(self) -> int:
        """McNemar's b: pass -> fail."""
        return len(self.pass_to_fail)

    @property
    def c(self) -> int:
        """McNemar's c: fail -> pass."""
        return len(self.fail_to_pass)

    def to_dict(self) -> dict[str, Any]:
        return {
            "behavior": self.behavior,
            "n": self.n,
            "baseline": self.baseline.to_dict(),
            "current": self.current.to_dict(),
            "difference": self.difference,
            "difference_ci95": list(self.difference_ci95) if self.difference_ci95 else None,
            "difference_method": "newcombe-paired",
            "both_passed": self.both_passed,
            "neither_passed": self.neither_passed,
            "pass_to_fail": list(self.pass_to_fail),
            "fail_to_pass": list(self.fail_to_pass),
            "mcnemar_p": self.mcnemar_p,
            "judged_only_in_baseline": list(self.judged_only_in_baseline),
            "judged_only_in_current": list(self.judged_only_in_current),
        }


@dataclass(frozen=True)
class Comparison:
    """A baseline report and a current report, compared sample by sample."""

    baseline: RunInfo
    current: RunInfo
    behaviors: tuple[BehaviorComparison, ...]
    common_ids: tuple[str, ...]
    only_in_baseline: tuple[str, ...]
    only_in_current: tuple[str, ...]
    differences: tuple[RunDifference, ...] = ()
    min_share: float = DEFAULT_MIN_SHARE
    repeats: bool = False

    @property
    def warnings(self) -> tuple[RunDifference, ...]:
        return tuple(d for d in self.differences if d.severity == "warning")

    def behavior(self, name: str) -> BehaviorComparison | None:
        """The comparison of one behavior, or None when it was not measured in both runs."""
        return next((b for b in self.behaviors if b.behavior == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline.to_dict(),
            "current": self.current.to_dict(),
            "common_samples": len(self.common_ids),
            "only_in_baseline": list(self.only_in_baseline),
            "only_in_current": list(self.only_in_current),
            "differences": [d.to_dict() for d in self.differences],
            "min_share": self.min_share,
            "repeats": self.repeats,
            "behaviors": {b.behavior: b.to_dict() for b in self.behaviors},
        }


def compare_reports(
    baseline: Mapping[str, Any],
    current: Mapping[str, Any],
    *,
    min_share: float = DEFAULT_MIN_SHARE,
) -> Comparison:
    """Compare two reports on the samples present in both, behavior by behavior.

    Behaviors are those measured in both reports (in the current report's order). With repeated
    observations a sample's verdict is :func:`consistent_verdict` at ``min_share``.
    """
    _check_share(min_share)
    baseline, current, notes = _same_detectors(baseline, current)
    base_samples = list(baseline.get("samples", []))
    cur_samples = list(current.get("samples", []))
    base_ids = _ordered_ids(base_samples)
    cur_ids = _ordered_ids(cur_samples)
    base_set, cur_set = set(base_ids), set(cur_ids)
    common = tuple(i for i in cur_ids if i in base_set)
    names = [name for name in current.get("behaviors", {}) if name in baseline.get("behaviors", {})]
    rows = tuple(
        _compare_behavior(name, base_samples, cur_samples, common, min_share) for name in names
    )
    repeats = has_repeats(base_samples) or has_repeats(cur_samples)
    return Comparison(
        baseline=RunInfo.of(baseline),
        current=RunInfo.of(current),
        behaviors=rows,
        common_ids=common,
        only_in_baseline=tuple(i for i in base_ids if i not in cur_set),
        only_in_current=tuple(i for i in cur_ids if i not in base_set),
        differences=(*notes, *run_differences(baseline, current)),
        min_share=min_share,
        repeats=repeats,
    )


def _same_detectors(
    baseline: Mapping[str, Any], current: Mapping[str, Any]
) -> tuple[Mapping[str, Any], Mapping[str, Any], list[RunDifference]]:
    """Both reports judged by the current detectors: re-judged from their stored replies when
    either was judged by another version (a detector change is not a model change)."""
    from mimicry.core.rejudge import detectors_version, needs_rejudging, rejudge

    if not (needs_rejudging(baseline) or needs_rejudging(current)):
        return baseline, current, []
    versions = (detectors_version(baseline), detectors_version(current))
    records: dict[str, Any] = {
        **(baseline.get("records") or {}),
        **(current.get("records") or {}),
    }
    missing = 0
    rejudged = []
    for report in (baseline, current):
        new, lost = rejudge(report, records)
        rejudged.append(new)
        missing += lost
    from mimicry.core.behaviors import DETECTORS_VERSION

    message = (
        f"the runs were judged by detectors v{versions[0]} (baseline) and v{versions[1]} "
        f"(current): both runs' stored replies were re-judged with the current detectors "
        f"(v{DETECTORS_VERSION}) so that a detector change does not read as a model change"
    )
    if missing:
        message += f"; {missing} sample(s) had no record to re-judge against and count as null"
    return rejudged[0], rejudged[1], [RunDifference("detectors", "note", message)]


def _compare_behavior(
    name: str,
    base_samples: Sequence[Mapping[str, Any]],
    cur_samples: Sequence[Mapping[str, Any]],
    common: Sequence[str],
    min_share: float,
) -> BehaviorComparison:
    base = verdicts_by_sample(base_samples, name)
    cur = verdicts_by_sample(cur_samples, name)
    both = neither = 0
    pass_to_fail: list[str] = []
    fail_to_pass: list[str] = []
    only_base: list[str] = []
    only_cur: list[str] = []
    for sample_id in common:
        before = consistent_verdict(base[sample_id], min_share)
        after = consistent_verdict(cur[sample_id], min_share)
        if before is None or after is None:
            if before is not None:
                only_base.append(sample_id)
            elif after is not None:
                only_cur.append(sample_id)
            continue
        if before and after:
            both += 1
        elif before:
            pass_to_fail.append(sample_id)
        elif after:
            fail_to_pass.append(sample_id)
        else:
            neither += 1
    b, c = len(pass_to_fail), len(fail_to_pass)
    n = both + neither + b + c
    baseline_rate = RateEstimate.wilson(both + b, n)
    current_rate = RateEstimate.wilson(both + c, n)
    return BehaviorComparison(
        behavior=name,
        n=n,
        baseline=baseline_rate,
        current=current_rate,
        difference=(c - b) / n if n else None,
        difference_ci95=paired_difference_interval(both, b, c, neither),
        both_passed=both,
        neither_passed=neither,
        pass_to_fail=tuple(pass_to_fail),
        fail_to_pass=tuple(fail_to_pass),
        mcnemar_p=mcnemar_exact_p(b, c),
        judged_only_in_baseline=tuple(only_base),
        judged_only_in_current=tuple(only_cur),
    )


def _ordered_ids(samples: Iterable[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(str(s.get("id")) for s in samples))


def run_differences(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> list[RunDifference]:
    """Everything besides the model's answers that differs between the runs, most serious first."""
    base_run: Mapping[str, Any] = baseline.get("run") or {}
    cur_run: Mapping[str, Any] = current.get("run") or {}
    found: list[RunDifference] = []
    found += _selection_differences(baseline, current)
    found += _dataset_differences(base_run, cur_run)
    found += _option_differences(base_run, cur_run)
    if base_run.get("prompt_template") != cur_run.get("prompt_template"):
        found.append(
            RunDifference(
                "prompt_template",
                "warning",
                f"the prompt templates differ ({_short(base_run.get('prompt_template'))} in the "
                f"baseline, {_short(cur_run.get('prompt_template'))} now): the models were not "
                "asked the same thing",
            )
        )
    for label, run in (("baseline", base_run), ("current", cur_run)):
        if run.get("complete") is False:
            reason = run.get("incomplete_reason") or "not every planned sample was evaluated"
            found.append(
                RunDifference(
                    "completeness",
                    "warning",
                    f"the {label} run is incomplete: {_short(reason, 120)}",
                )
            )
    if has_repeats(baseline.get("samples", [])) != has_repeats(current.get("samples", [])):
        which = "baseline" if has_repeats(baseline.get("samples", [])) else "current"
        found.append(
            RunDifference(
                "repeats",
                "warning",
                f"only the {which} run repeated samples (--repeat): its verdicts are per-sample "
                "consistency verdicts, the other run's single answers",
            )
        )
    found += _model_differences(base_run, cur_run)
    base_behaviors = set(baseline.get("behaviors", {}))
    cur_behaviors = set(current.get("behaviors", {}))
    for label, names in (
        ("baseline", base_behaviors - cur_behaviors),
        ("current", cur_behaviors - base_behaviors),
    ):
        if names:
            found.append(
                RunDifference(
                    "behaviors",
                    "note",
                    f"measured in the {label} run only, not compared: {', '.join(sorted(names))}",
                )
            )
    for label, run in (("baseline", base_run), ("current", cur_run)):
        errors = run.get("errors")
        if isinstance(errors, int) and errors > 0:
            found.append(
                RunDifference(
                    "errors", "note", f"the {label} run had {errors} sample(s) without a reply"
                )
            )
    return found


def _selection_differences(
    baseline: Mapping[str, Any], current: Mapping[str, Any]
) -> list[RunDifference]:
    base_ids = set(_ordered_ids(baseline.get("samples", [])))
    cur_ids = set(_ordered_ids(current.get("samples", [])))
    base_planned = _planned_ids(baseline)
    cur_planned = _planned_ids(current)
    # reports that do not list their planned selection are judged by their samples alone
    same_plan = base_planned is None or cur_planned is None or base_planned == cur_planned
    if base_ids == cur_ids and same_plan:
        return []
    common = len(base_ids & cur_ids)
    if not common:
        message = (
            "the runs share no sample: nothing can be compared (same --dataset, --samples and "
            "--sample-seed, or --sample-ids, select the same rows)"
        )
    else:
        message = (
            f"the runs judged different samples: {common} in both, "
            f"{len(base_ids - cur_ids)} only in the baseline, {len(cur_ids - base_ids)} only in "
            f"the current run; compared on the {common} common samples only"
        )
    if base_ids == cur_ids:
        message = "the runs planned different sample selections (run.dataset.sample_ids differ)"
    return [RunDifference("selection", "warning", message)]


def _planned_ids(report: Mapping[str, Any]) -> frozenset[str] | None:
    ids = ((report.get("run") or {}).get("dataset") or {}).get("sample_ids")
    return frozenset(str(i) for i in ids) if isinstance(ids, list) else None


def _dataset_differences(
    base_run: Mapping[str, Any], cur_run: Mapping[str, Any]
) -> list[RunDifference]:
    base = base_run.get("dataset") or {}
    cur = cur_run.get("dataset") or {}
    found = []
    b_src, c_src = base.get("id_or_path"), cur.get("id_or_path")
    if b_src != c_src:
        # a committed baseline names its file by another path on a laptop than in CI
        same_file = (
            isinstance(b_src, str)
            and isinstance(c_src, str)
            and Path(b_src).name == Path(c_src).name
            and base.get("n_rows") == cur.get("n_rows")
        )
        found.append(
            RunDifference(
                "dataset",
                "note" if same_file else "warning",
                f"the datasets are named differently: {_short(b_src)} in the baseline, "
                f"{_short(c_src)} now" + (" (same file name and row count)" if same_file else ""),
            )
        )
    for key in ("split", "n_rows"):
        if key in base and key in cur and base[key] != cur[key]:
            found.append(
                RunDifference(
                    "dataset",
                    "warning",
                    f"dataset {key} differs: {_short(base[key])} in the baseline, "
                    f"{_short(cur[key])} now",
                )
            )
    return found


def _option_differences(
    base_run: Mapping[str, Any], cur_run: Mapping[str, Any]
) -> list[RunDifference]:
    base = base_run.get("options") or {}
    cur = cur_run.get("options") or {}
    changed = [
        f"{key} {_short(base.get(key))} -> {_short(cur.get(key))}"
        for key in sorted(set(base) | set(cur))
        if base.get(key) != cur.get(key)
    ]
    if not changed:
        return []
    return [
        RunDifference(
            "options",
            "warning",
            "the model options differ (baseline -> current): " + ", ".join(changed),
        )
    ]


def _model_differences(
    base_run: Mapping[str, Any], cur_run: Mapping[str, Any]
) -> list[RunDifference]:
    found = []
    b_model, c_model = base_run.get("model"), cur_run.get("model")
    b_digest, c_digest = base_run.get("model_digest") or "", cur_run.get("model_digest") or ""
    if b_model != c_model:
        found.append(
            RunDifference(
                "model",
                "note",
                f"different models: {_short(b_model)} in the baseline, {_short(c_model)} now",
            )
        )
    elif b_digest and c_digest and b_digest != c_digest:
        found.append(
            RunDifference(
                "model",
                "note",
                f"same model tag {_short(c_model)} but different weights "
                f"(digest {str(b_digest)[:19]} -> {str(c_digest)[:19]})",
            )
        )
    b_engine = (base_run.get("model_info") or {}).get("engine") or {}
    c_engine = (cur_run.get("model_info") or {}).get("engine") or {}
    if b_engine.get("threads") and c_engine.get("threads") and b_engine != c_engine:
        found.append(
            RunDifference(
                "model",
                "warning",
                f"the embedded engine ran with {b_engine.get('threads')} thread(s) in the baseline "
                f"and {c_engine.get('threads')} now: llama.cpp's arithmetic, and so greedy "
                "replies, depend on it (pin --embedded-threads for baselines)",
            )
        )
    b_backend, c_backend = base_run.get("backend"), cur_run.get("backend")
    if b_backend and c_backend and b_backend != c_backend:
        found.append(
            RunDifference(
                "backend",
                "note",
                f"different backends: {_short(b_backend)} in the baseline, {_short(c_backend)} now",
            )
        )
    return found


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- terminal rendering --------------------------------------------------------------------------


def render_comparison(comparison: Comparison, *, max_ids: int = 10) -> list[str]:
    """The terminal section of a comparison: who is compared, warnings, one row per behavior,
    then the flipped sample ids. Shared by the plugin and ``python -m mimicry compare``."""
    lines = [
        f"comparison: baseline {printable(comparison.baseline.label())} -> current "
        f"{printable(comparison.current.label())}",
        f"{len(comparison.common_ids)} samples in both runs"
        + _only_in(comparison.only_in_baseline, comparison.only_in_current),
    ]
    if comparison.repeats:
        lines.append(
            f"(repeated runs: a sample passes when at least {comparison.min_share:.0%} of its "
            "judged repeats pass)"
        )
    for diff in comparison.differences:
        lines.append(
            f"{'WARNING' if diff.severity == 'warning' else 'note'}: {printable(diff.message, 300)}"
        )
    lines.append(
        f"{'behavior':<18}{'n':>6}{'baseline':>10}{'current':>10}{'diff':>8}  "
        f"{'95% CI (points)':<17}{'p->f':>6}{'f->p':>6}{'McNemar p':>11}"
    )
    for row in comparison.behaviors:
        lines.append(
            f"{row.behavior:<18}{row.n:>6}{_pct(row.baseline.rate):>10}{_pct(row.current.rate):>10}"
            f"{_points(row.difference):>8}  {_points_interval(row.difference_ci95):<17}"
            f"{row.b:>6}{row.c:>6}{format_p(row.mcnemar_p):>11}"
        )
    for row in comparison.behaviors:
        for label, ids in (("pass->fail", row.pass_to_fail), ("fail->pass", row.fail_to_pass)):
            if ids:
                lines.append(f"  {row.behavior} {label}: {format_ids(ids, max_ids)}")
        unjudged = row.judged_only_in_baseline + row.judged_only_in_current
        if unjudged:
            lines.append(
                f"  {row.behavior}: {len(unjudged)} common sample(s) judged in one run only (null "
                f"or error in the other), left out: {format_ids(unjudged, max_ids)}"
            )
    return lines


def _only_in(base_only: Sequence[str], cur_only: Sequence[str]) -> str:
    parts = []
    if base_only:
        parts.append(f"{len(base_only)} only in the baseline")
    if cur_only:
        parts.append(f"{len(cur_only)} only in the current run")
    return f" ({', '.join(parts)}; not compared)" if parts else ""


def printable(text: str, limit: int = 80) -> str:
    """``text`` with control characters and lone surrogates escaped, cut to ``limit`` characters."""
    safe = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    return safe if len(safe) <= limit else safe[: limit - 3] + "..."


def format_ids(ids: Sequence[str], limit: int = 10) -> str:
    """Sample ids for a line of text: the first ``limit``, then how many more."""
    shown = ", ".join(printable(i, 40) for i in ids[:limit])
    return shown + (f" (+{len(ids) - limit} more)" if len(ids) > limit else "")


def format_p(p: float) -> str:
    """A p-value with enough digits to compare with alpha, and no false zero."""
    if p < 0.0001:
        return "<0.0001"
    return f"{p:.4f}" if p < 0.1 else f"{p:.3f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _points(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f}"


def _points_interval(ci: tuple[float, float] | None) -> str:
    return "-" if ci is None else f"[{ci[0] * 100:+.1f}, {ci[1] * 100:+.1f}]"
