"""Statistics for pass rates. One function per quantity, explicit about empty input.

The Wilson interval's normal quantile comes from the standard library's
``statistics.NormalDist`` (no scipy import: workers and quick runs should not pay for it).
"""

from __future__ import annotations

import math
from functools import cache
from statistics import NormalDist

CONFIDENCE = 0.95


def rate(passed: int, n: int) -> float | None:
    """The pass rate, or None when nothing was judged (an empty rate is not 0)."""
    _check_counts(passed, n)
    return passed / n if n else None


def wilson_interval(
    passed: int | float, n: int | float, confidence: float = CONFIDENCE
) -> tuple[float, float] | None:
    """The Wilson score interval for ``passed`` successes out of ``n``; None when ``n`` is 0.

    ``n`` may be fractional (an effective sample size).
    """
    if n < 0 or passed < 0 or passed > n:
        raise ValueError(f"counts out of range: passed={passed!r}, n={n!r}; need 0 <= passed <= n")
    if n == 0:
        return None
    z = normal_quantile(confidence)
    p = passed / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if passed == 0 else _clip(centre - half)
    high = 1.0 if passed == n else _clip(centre + half)
    return (low, high)


@cache
def normal_quantile(confidence: float = CONFIDENCE) -> float:
    """The two-sided standard normal quantile for ``confidence`` (1.96 for 0.95)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence!r}: must be strictly between 0 and 1")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def _clip(x: float) -> float:
    return 0.0 if x < 0.0 or math.isnan(x) else min(x, 1.0)


def _check_counts(passed: int, n: int) -> None:
    if n < 0 or passed < 0 or passed > n:
        raise ValueError(f"counts out of range: passed={passed!r}, n={n!r}; need 0 <= passed <= n")
