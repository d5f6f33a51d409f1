from __future__ import annotations

import pytest

from mimicry.core.stats import rate, wilson_interval


def test_rate_of_nothing_is_none_not_zero() -> None:
    assert rate(0, 0) is None
    assert wilson_interval(0, 0) is None


def test_wilson_matches_a_hand_worked_value() -> None:
    # 8 of 10: p=0.8, z=1.95996; centre (0.8 + z²/20)/(1 + z²/10) = 0.7167, half-width 0.2253
    low, high = wilson_interval(8, 10)  # type: ignore[misc]

    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)


def test_wilson_at_the_edges_stays_in_0_1() -> None:
    assert wilson_interval(0, 5)[0] == 0.0  # type: ignore[index]
    assert wilson_interval(5, 5)[1] == 1.0  # type: ignore[index]


@pytest.mark.parametrize(("passed", "n"), [(-1, 3), (4, 3), (0, -1)])
def test_counts_out_of_range(passed: int, n: int) -> None:
    with pytest.raises(ValueError, match="counts out of range"):
        rate(passed, n)
