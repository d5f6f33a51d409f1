"""Statistics for pass rates. One function per quantity, explicit about empty input.

Intervals come from scipy (``binomtest(...).proportion_ci(method="wilson")``), not a hand-written
formula.
"""

from __future__ import annotations

import math

CONFIDENCE = 0.95


def rate(passed: int, n: int) -> float | None:
    """The pass rate, or None when nothing was judged (an empty rate is not 0)."""
    _check_counts(passed, n)
    return passed / n if n else None


def wilson_interval(
    passed: int, n: int, confidence: float = CONFIDENCE
) -> tuple[float, float] | None:
    """The Wilson score interval for ``passed`` successes out of ``n``; None when ``n`` is 0."""
    _check_counts(passed, n)
    if n == 0:
        return None
    from scipy.stats import binomtest  # imported when first needed: it takes most of a second

    ci = binomtest(passed, n).proportion_ci(confidence_level=confidence, method="wilson")
    return (_clip(float(ci.low)), _clip(float(ci.high)))


def _clip(x: float) -> float:
    return 0.0 if x < 0.0 or math.isnan(x) else min(x, 1.0)


def _check_counts(passed: int, n: int) -> None:
    if n < 0 or passed < 0 or passed > n:
        raise ValueError(f"counts out of range: passed={passed!r}, n={n!r}; need 0 <= passed <= n")
