"""Gates: declared pass conditions on a run, parsed from strings into small frozen objects.

Two kinds, each with ``.fails(...) -> str | None`` (None when the gate passes, else the message
with the evidence) and ``.evaluate(...) -> GateOutcome`` (the evidence either way).

Threshold gates (``--gate``), on the current run alone::

    BEHAVIOR[.STATISTIC][@SHARE] OP VALUE

- ``BEHAVIOR``: a behavior's name (a built-in one or the name of a user's behavior test: letters,
  digits and underscores). A name the run did not measure fails the gate, with the names it did
  measure and the closest one.
- ``STATISTIC``: ``rate`` (the default), ``lower`` or ``upper``: the bounds of the rate's 95%
  interval (Wilson; cluster-robust with repeats), so ``copies_braces.lower>=0.30`` asks that
  the rate is at least 30% with 95% confidence, not just in this sample.
- ``@SHARE``: for runs with ``--repeat K``: a sample passes when at least ``SHARE`` of its judged
  repeats pass, and the rate is over samples (``copies_braces@0.8>=0.30``: at least 30% of the
  samples copy the braces in at least 80% of their repeats). Without ``@SHARE`` a run with
  repeats is gated on the rate over all observations, with the cluster-robust interval.
- ``OP``: ``>=``, ``<=``, ``>`` or ``<``.
- ``VALUE`` and ``SHARE``: a number between 0 and 1, or a percentage (``0.3``, ``30%``).

Regression gates (``--max-regression``), on the paired comparison with a baseline::

    BEHAVIOR:TOLERANCE[:DIRECTION]

``DIRECTION`` is the forbidden move: ``down`` (the default: the rate must not drop), ``up`` or
``any``. A behavior regresses when its rate moved by more than ``TOLERANCE`` (a rate difference,
``0.05`` or ``5%``) in the forbidden direction *and* McNemar's exact test on the samples judged
in both runs gives ``p < alpha`` (``--alpha``, default 0.05). Both are needed: the tolerance
keeps a significant but negligible move from failing a large run, the test keeps noise from
failing a small one.

A gate with no evidence (the behavior was not measured, or no sample was judged) fails: a CI
gate must not pass on nothing. Bad strings raise :class:`GateError` naming the offending text
and the accepted forms.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal, cast

from mimicry.core.compare import (
    Comparison,
    RateEstimate,
    clustered_rate,
    consistency_rate,
    format_ids,
    format_p,
    has_repeats,
    printable,
    verdicts_by_sample,
)

DEFAULT_ALPHA = 0.05

Op = Literal[">=", "<=", ">", "<"]
Statistic = Literal["rate", "lower", "upper"]
Direction = Literal["up", "down", "any"]
GateKind = Literal["threshold", "regression"]

OPS: tuple[Op, ...] = (">=", "<=", ">", "<")
STATISTICS: tuple[Statistic, ...] = ("rate", "lower", "upper")
DIRECTIONS: tuple[Direction, ...] = ("down", "up", "any")

THRESHOLD_FORMS = (
    "BEHAVIOR>=VALUE or BEHAVIOR<=VALUE (also > and <), e.g. 'copies_braces>=0.30'; "
    "BEHAVIOR.lower>=VALUE or BEHAVIOR.upper<=VALUE to gate on the 95% interval's bound; "
    "BEHAVIOR@SHARE>=VALUE with --repeat, a sample passing when at least SHARE of its repeats "
    "pass; VALUE and SHARE between 0 and 1 or as a percentage (0.3 or 30%)"
)
REGRESSION_FORMS = (
    "BEHAVIOR:TOLERANCE[:DIRECTION], e.g. 'preserves_keys:0.05' or 'truncates:5%:up'; "
    "TOLERANCE between 0 and 1 or as a percentage; DIRECTION the forbidden move: "
    "down (default), up or any"
)

_NUMBER = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)%?")
_THRESHOLD = re.compile(
    r"(?P<behavior>[^.@<>=!:\s]+)"
    r"(?:\.(?P<statistic>[^@<>=!\s]*))?"
    r"(?:@(?P<share>[^<>=!\s]*))?"
    r"\s*(?P<op>[<>=!]+)\s*"
    r"(?P<value>.*)"
)


class GateError(ValueError):
    """A gate string that cannot be parsed; the message names it and lists the accepted forms."""


@dataclass(frozen=True)
class GateOutcome:
    """One gate's verdict with the evidence (the message says why, pass or fail)."""

    gate: str
    kind: GateKind
    passed: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "kind": self.kind,
            "passed": self.passed,
            "message": self.message,
        }


@dataclass(frozen=True)
class ThresholdGate:
    """``BEHAVIOR[.STATISTIC][@SHARE] OP VALUE`` on the current run (see the module docs)."""

    text: str
    behavior: str
    op: Op
    threshold: float
    statistic: Statistic = "rate"
    min_share: float | None = None

    def estimate(self, report: Mapping[str, Any]) -> RateEstimate | None:
        """The rate this gate looks at, or None when the behavior was not measured."""
        row = (report.get("behaviors") or {}).get(self.behavior)
        if not isinstance(row, Mapping):
            return None
        samples = report.get("samples") or []
        if self.min_share is not None:
            return consistency_rate(verdicts_by_sample(samples, self.behavior), self.min_share)
        if has_repeats(samples):
            return clustered_rate(verdicts_by_sample(samples, self.behavior))
        # the table's own figures, so the gate message and the terminal table agree
        return RateEstimate.from_row(row)

    def evaluate(self, report: Mapping[str, Any]) -> GateOutcome:
        """Check the gate against a report (the JSON report's dict)."""
        estimate = self.estimate(report)
        if estimate is None:
            return self._outcome(
                False, _not_measured(self.behavior, list(report.get("behaviors") or {}))
            )
        if estimate.n == 0 or estimate.rate is None:
            row = (report.get("behaviors") or {}).get(self.behavior) or {}
            return self._outcome(
                False,
                f"no sample was judged for {self.behavior} ({row.get('null', 0)} null, "
                f"{row.get('errors', 0)} errors): there is no evidence to pass on",
            )
        value = _statistic(estimate, self.statistic)
        if value is None:
            return self._outcome(
                False,
                f"the {self.statistic} bound of {self.behavior} is unknown "
                f"({_evidence(estimate)}); "
                "at least 2 samples are needed for an interval",
            )
        passed = _holds(value, self.op, self.threshold)
        what = "rate" if self.statistic == "rate" else f"95% {self.statistic} bound"
        if passed:
            message = f"{what} {value:.1%} {self.op} {self.threshold:.1%} ({_evidence(estimate)})"
        else:
            side = "below" if self.op in (">=", ">") else "above"
            gap = abs(value - self.threshold) * 100
            message = (
                f"{what} {value:.1%} is {side} the threshold {self.threshold:.1%}"
                + (f" by {gap:.1f} points" if gap >= 0.05 else "")
                + f" ({_evidence(estimate)})"
            )
        return self._outcome(passed, message)

    def fails(self, report: Mapping[str, Any]) -> str | None:
        """None when the gate passes; else the message with the evidence."""
        outcome = self.evaluate(report)
        return None if outcome.passed else f"gate {self.text!r} failed: {outcome.message}"

    def _outcome(self, passed: bool, message: str) -> GateOutcome:
        return GateOutcome(self.text, "threshold", passed, message)


@dataclass(frozen=True)
class RegressionGate:
    """``BEHAVIOR:TOLERANCE[:DIRECTION]`` on a paired comparison (see the module docs)."""

    text: str
    behavior: str
    tolerance: float
    direction: Direction = "down"
    alpha: float = DEFAULT_ALPHA

    def evaluate(self, comparison: Comparison) -> GateOutcome:
        """Check the gate against the comparison of the current run with its baseline."""
        row = comparison.behavior(self.behavior)
        if row is None:
            measured = [b.behavior for b in comparison.behaviors]
            return self._outcome(False, _not_measured(self.behavior, measured, "in both runs"))
        if row.n == 0 or row.difference is None:
            return self._outcome(
                False,
                f"no sample was judged for {self.behavior} in both runs "
                f"({len(comparison.common_ids)} common samples): there is no evidence to pass on",
            )
        diff = row.difference
        moved = {
            "down": diff < -self.tolerance,
            "up": diff > self.tolerance,
            "any": abs(diff) > self.tolerance,
        }[self.direction]
        significant = row.mcnemar_p < self.alpha
        ci = row.difference_ci95
        if diff:
            verb = "rose" if diff > 0 else "fell"
            change = (
                f"{verb} from {row.baseline.rate or 0.0:.1%} to {row.current.rate or 0.0:.1%} "
                f"({abs(diff) * 100:.1f} points)"
            )
        else:
            change = f"unchanged at {row.current.rate or 0.0:.1%}"
        evidence = (
            f"{self.behavior} {change} on {row.n} paired samples"
            + (
                f", 95% CI of the difference [{ci[0] * 100:+.1f}, {ci[1] * 100:+.1f}] points"
                if ci
                else ""
            )
            + f"; McNemar exact p = {format_p(row.mcnemar_p)}"
            f" ({row.b} pass->fail, {row.c} fail->pass)"
        )
        forbidden = {"down": "a drop", "up": "a rise", "any": "a move"}[self.direction]
        tolerance = f"{self.tolerance * 100:.1f}-point tolerance"
        if moved and significant:
            flipped, label = (
                (row.pass_to_fail, "pass->fail") if diff < 0 else (row.fail_to_pass, "fail->pass")
            )
            message = (
                f"{evidence}: {forbidden} beyond the {tolerance} and significant "
                f"(p < alpha {self.alpha:g}); flipped {label}: {format_ids(flipped)}"
            )
            return self._outcome(False, message)
        if moved:
            reason = (
                f"{forbidden} beyond the {tolerance} but not significant "
                f"(p >= alpha {self.alpha:g})"
            )
        else:
            reason = f"within the {tolerance} for {forbidden}"
        return self._outcome(True, f"{evidence}: {reason}")

    def fails(self, comparison: Comparison) -> str | None:
        """None when the gate passes; else the message with the evidence."""
        outcome = self.evaluate(comparison)
        return None if outcome.passed else f"gate {self.text!r} failed: {outcome.message}"

    def _outcome(self, passed: bool, message: str) -> GateOutcome:
        return GateOutcome(self.text, "regression", passed, message)


Gate = ThresholdGate | RegressionGate


def parse_gate(text: str, *, source: str = "--gate") -> ThresholdGate:
    """Parse ``BEHAVIOR[.STATISTIC][@SHARE] OP VALUE``; raise :class:`GateError` when malformed.

    ``source`` names where the text came from (the option or ini key) in error messages.
    """
    stripped = text.strip()
    match = _THRESHOLD.fullmatch(stripped)
    if match is None:
        problem = "expected a behavior, a comparison and a value"
        if ":" in stripped:
            problem += " (BEHAVIOR:TOLERANCE is a regression gate: --max-regression)"
        raise _error(source, text, problem, THRESHOLD_FORMS)
    behavior = _behavior(match["behavior"], source, text, THRESHOLD_FORMS)
    op_text = match["op"]
    if op_text not in OPS:
        hint = {"=>": ">=", "=<": "<=", "==": ">= or <=", "=": ">= or <=", "!=": ">= or <="}.get(
            op_text
        )
        raise _error(
            source,
            text,
            f"{op_text!r} is not a comparison here" + (f"; did you mean {hint}?" if hint else ""),
            THRESHOLD_FORMS,
        )
    statistic_text = match["statistic"]
    statistic: Statistic = "rate"
    if statistic_text is not None:
        if statistic_text not in STATISTICS:
            raise _error(
                source,
                text,
                f"{statistic_text!r} is not a statistic; use rate, lower or upper",
                THRESHOLD_FORMS,
            )
        statistic = cast(Statistic, statistic_text)
    share: float | None = None
    if match["share"] is not None:
        share = _fraction(match["share"], "the share after @", source, text, THRESHOLD_FORMS)
        if share == 0:
            raise _error(source, text, "the share after @ must be above 0", THRESHOLD_FORMS)
    threshold = _fraction(match["value"].strip(), "the threshold", source, text, THRESHOLD_FORMS)
    return ThresholdGate(
        text=stripped,
        behavior=behavior,
        op=cast(Op, op_text),
        threshold=threshold,
        statistic=statistic,
        min_share=share,
    )


def parse_regression(
    text: str,
    *,
    alpha: float = DEFAULT_ALPHA,
    source: str = "--max-regression",
) -> RegressionGate:
    """Parse ``BEHAVIOR:TOLERANCE[:DIRECTION]``; raise :class:`GateError` when malformed."""
    stripped = text.strip()
    parts = [p.strip() for p in stripped.split(":")]
    if len(parts) not in (2, 3) or not parts[0]:
        raise _error(
            source, text, "expected a behavior and a tolerance separated by ':'", REGRESSION_FORMS
        )
    behavior = _behavior(parts[0], source, text, REGRESSION_FORMS)
    tolerance = _fraction(parts[1], "the tolerance", source, text, REGRESSION_FORMS)
    if tolerance >= 1:
        raise _error(source, text, "the tolerance must be below 1 (100%)", REGRESSION_FORMS)
    direction: Direction = "down"
    if len(parts) == 3:
        if parts[2].lower() not in DIRECTIONS:
            raise _error(
                source,
                text,
                f"{parts[2]!r} is not a direction; use down, up or any",
                REGRESSION_FORMS,
            )
        direction = cast(Direction, parts[2].lower())
    _check_alpha(alpha)
    return RegressionGate(
        text=":".join(parts),
        behavior=behavior,
        tolerance=tolerance,
        direction=direction,
        alpha=alpha,
    )


def parse_alpha(text: str, *, source: str = "--alpha") -> float:
    """Parse a significance level strictly between 0 and 1 (e.g. ``0.05``)."""
    stripped = text.strip()
    forms = "a number strictly between 0 and 1, e.g. 0.05"
    if not re.fullmatch(r"(?:0?\.\d+|0|1(?:\.0*)?)", stripped):
        raise GateError(f"{source} {text!r}: not a significance level; expected {forms}")
    alpha = float(Fraction(stripped))
    if not 0 < alpha < 1:
        raise GateError(
            f"{source} {text!r}: the significance level must be strictly between 0 and 1"
        )
    return alpha


def evaluate_gates(
    gates: Iterable[Gate], report: Mapping[str, Any], comparison: Comparison | None = None
) -> tuple[GateOutcome, ...]:
    """Every gate's outcome, in declaration order.

    Raises :class:`GateError` for a regression gate without a comparison (a usage problem: a
    ``--max-regression`` needs a baseline).
    """
    outcomes = []
    for gate in gates:
        if isinstance(gate, ThresholdGate):
            outcomes.append(gate.evaluate(report))
        elif comparison is None:
            raise GateError(
                f"--max-regression {gate.text!r} needs a baseline to compare with "
                "(--baseline PATH, or `python -m mimicry compare BASELINE CURRENT`)"
            )
        else:
            outcomes.append(gate.evaluate(comparison))
    return tuple(outcomes)


def render_gate_outcomes(outcomes: Sequence[GateOutcome]) -> list[str]:
    """The terminal section for gates: a count, then one line per gate, failures first."""
    if not outcomes:
        return []
    failed = [o for o in outcomes if not o.passed]
    lines = [f"gates: {len(outcomes) - len(failed)} passed, {len(failed)} failed"]
    for outcome in sorted(outcomes, key=lambda o: o.passed):
        mark = "FAILED" if not outcome.passed else "passed"
        lines.append(f"  {mark} {printable(outcome.gate, 60)}: {printable(outcome.message, 2000)}")
    return lines


def _statistic(estimate: RateEstimate, statistic: Statistic) -> float | None:
    if statistic == "rate":
        return estimate.rate
    if estimate.ci95 is None:
        return None
    return estimate.ci95[0] if statistic == "lower" else estimate.ci95[1]


def _holds(value: float, op: Op, threshold: float) -> bool:
    if op == ">=":
        return value >= threshold
    if op == "<=":
        return value <= threshold
    if op == ">":
        return value > threshold
    return value < threshold


def _evidence(estimate: RateEstimate) -> str:
    ci = estimate.ci95
    interval = f", 95% CI [{ci[0]:.1%}, {ci[1]:.1%}]" if ci else ""
    if estimate.method == "cluster-robust":
        se = (
            f", cluster-robust se {estimate.se * 100:.1f} points" if estimate.se is not None else ""
        )
        return (
            f"{estimate.passed} of {estimate.n} observations in {estimate.clusters} samples"
            f"{se}{interval}"
        )
    return f"{estimate.passed} of {estimate.n} samples{interval}"


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _behavior(name: str, source: str, text: str, forms: str) -> str:
    if _NAME.fullmatch(name):
        return name
    raise _error(
        source,
        text,
        f"{name!r} is not a behavior name (letters, digits and underscores, as in a test name)",
        forms,
    )


def _not_measured(name: str, measured: Sequence[str], where: str = "in this run") -> str:
    """Why a gate on an unmeasured behavior fails, with the behaviors that were measured."""
    import difflib

    close = difflib.get_close_matches(name, measured, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listed = ", ".join(measured) if measured else "none"
    return f"{name!r} was not measured {where} (measured: {listed}){hint}"


def _fraction(token: str, what: str, source: str, text: str, forms: str) -> float:
    """A number in [0, 1], written as a fraction (0.3) or a percentage (30%)."""
    if not _NUMBER.fullmatch(token):
        raise _error(source, text, f"{what} {token!r} is not a number", forms)
    percent = token.endswith("%")
    try:
        value = Fraction(token.removesuffix("%")) / (100 if percent else 1)
    except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits)
        raise _error(
            source, text, f"{what} {token[:20]!r}... is not a usable number", forms
        ) from None
    if not 0 <= value <= 1:
        raise _error(source, text, f"{what} must be between 0 and 1 (or 0% and 100%)", forms)
    # exact decimal -> nearest float, so 30% and 0.3 are the same threshold
    return float(value)


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise GateError(
            f"--alpha {alpha!r}: the significance level must be strictly between 0 and 1"
        )


def _error(source: str, text: str, problem: str, forms: str) -> GateError:
    return GateError(f"{source} {text!r}: {problem} (accepted: {forms})")
