"""Gate strings: parsing (with hypothesis) and their verdicts on reports and comparisons."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mimicry.core.behaviors import BUILTIN_BEHAVIORS as BEHAVIORS
from mimicry.core.compare import compare_reports
from mimicry.core.gates import (
    GateError,
    GateOutcome,
    RegressionGate,
    ThresholdGate,
    evaluate_gates,
    parse_alpha,
    parse_gate,
    parse_regression,
    render_gate_outcomes,
)
from tests.core.test_compare import make_report, make_sample, report_from_flags

# -- parsing threshold gates ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("copies_braces>=0.30", ThresholdGate("copies_braces>=0.30", "copies_braces", ">=", 0.3)),
        ("truncates<=50%", ThresholdGate("truncates<=50%", "truncates", "<=", 0.5)),
        ("  truncates < .5 ", ThresholdGate("truncates < .5", "truncates", "<", 0.5)),
        (
            "copies_braces.lower>=0.3",
            ThresholdGate("copies_braces.lower>=0.3", "copies_braces", ">=", 0.3, "lower"),
        ),
        (
            "truncates.upper<=0.5",
            ThresholdGate("truncates.upper<=0.5", "truncates", "<=", 0.5, "upper"),
        ),
        (
            "copies_braces@0.8>=0.30",
            ThresholdGate("copies_braces@0.8>=0.30", "copies_braces", ">=", 0.3, "rate", 0.8),
        ),
        (
            "copies_braces.lower@80%>1%",
            ThresholdGate("copies_braces.lower@80%>1%", "copies_braces", ">", 0.01, "lower", 0.8),
        ),
        (
            "rewrites_prompt.rate>=0",
            ThresholdGate("rewrites_prompt.rate>=0", "rewrites_prompt", ">=", 0.0),
        ),
    ],
)
def test_threshold_gates_parse(text: str, expected: ThresholdGate) -> None:
    assert parse_gate(text) == expected


def test_percent_and_fraction_give_the_same_threshold() -> None:
    assert parse_gate("truncates<=33.3%").threshold == parse_gate("truncates<=0.333").threshold


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "copies_braces>=1.5",
            "--gate 'copies_braces>=1.5': the threshold must be between 0 and 1",
        ),
        ("copies_braces>=150%", "the threshold must be between 0 and 1"),
        (
            "copy-braces>=0.3",
            "'copy-braces' is not a behavior name (letters, digits and underscores",
        ),
        ("copies_braces=>0.3", "'=>' is not a comparison here; did you mean >="),
        ("copies_braces==0.3", "'==' is not a comparison here"),
        ("copies_braces.median>=0.3", "'median' is not a statistic; use rate, lower or upper"),
        ("copies_braces>=abc", "the threshold 'abc' is not a number"),
        ("copies_braces>=-0.1", "the threshold '-0.1' is not a number"),
        ("copies_braces>=nan", "the threshold 'nan' is not a number"),
        ("copies_braces@0>=0.3", "the share after @ must be above 0"),
        ("copies_braces@2>=0.3", "the share after @ must be between 0 and 1"),
        ("preserves_keys:0.05", "is a regression gate: --max-regression"),
        ("copies_braces", "expected a behavior, a comparison and a value"),
        ("", "expected a behavior, a comparison and a value"),
        ("copies_braces>=" + "1" * 5000, "is not a usable number"),
    ],
)
def test_bad_threshold_gates_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(GateError) as info:
        parse_gate(text)

    message = str(info.value)
    assert problem in message
    assert message.startswith(f"--gate {text!r}")
    assert "accepted: BEHAVIOR>=VALUE" in message


def test_the_option_name_in_errors_can_be_the_ini_key() -> None:
    with pytest.raises(GateError, match=r"^mimicry_gate 'x-y>=1': 'x-y' is not a behavior name"):
        parse_gate("x-y>=1", source="mimicry_gate")


# -- parsing regression gates and alpha ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("preserves_keys:0.05", RegressionGate("preserves_keys:0.05", "preserves_keys", 0.05)),
        ("truncates:5%:up", RegressionGate("truncates:5%:up", "truncates", 0.05, "up")),
        (
            " copies_braces : 0 : ANY ",
            RegressionGate("copies_braces:0:ANY", "copies_braces", 0.0, "any"),
        ),
    ],
)
def test_regression_gates_parse(text: str, expected: RegressionGate) -> None:
    assert parse_regression(text) == expected


def test_regression_gate_takes_alpha() -> None:
    assert parse_regression("truncates:0.1", alpha=0.01).alpha == 0.01


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("preserves_keys", "expected a behavior and a tolerance separated by ':'"),
        ("preserves_keys:0.05:down:1", "expected a behavior and a tolerance"),
        (":0.05", "expected a behavior and a tolerance"),
        ("preserves_keys:1", "the tolerance must be below 1"),
        ("preserves_keys:5", "the tolerance must be between 0 and 1"),
        ("preserves_keys:0.05:sideways", "'sideways' is not a direction; use down, up or any"),
        ("keys!:0.05", "'keys!' is not a behavior name"),
    ],
)
def test_bad_regression_gates_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(GateError) as info:
        parse_regression(text)

    assert problem in str(info.value)
    assert str(info.value).startswith(f"--max-regression {text!r}")


@pytest.mark.parametrize("text", ["0", "1", "1.5", "-0.05", "abc", "", "5%"])
def test_bad_alpha(text: str) -> None:
    with pytest.raises(GateError, match=r"^--alpha"):
        parse_alpha(text)


def test_alpha_parses() -> None:
    assert parse_alpha(" 0.01 ") == 0.01


# -- parsing properties --------------------------------------------------------------------------


@given(st.text())
def test_parsing_arbitrary_text_raises_only_gate_errors(text: str) -> None:
    for parse in (parse_gate, parse_regression, parse_alpha):
        message = None
        try:
            parse(text)
        except GateError as exc:
            message = str(exc)
        assert message is None or repr(text) in message


_GATE_ALPHABET = st.sampled_from(list("0123456789.%@:<>=! _-abcdeklnoprstuwyADN\t\udc80"))


@given(st.text(alphabet=_GATE_ALPHABET, max_size=40))
def test_parsing_gate_like_text_raises_only_gate_errors(text: str) -> None:
    for parse in (parse_gate, parse_regression, parse_alpha):
        try:
            parse(text)
        except GateError:
            pass


_DECIMALS = st.fractions(min_value=0, max_value=1, max_denominator=10_000).map(
    lambda f: f"{float(f):.4f}"
)


@given(st.sampled_from(BEHAVIORS), st.sampled_from([">=", "<=", ">", "<"]), _DECIMALS)
def test_valid_threshold_gates_round_trip(behavior: str, op: str, value: str) -> None:
    gate = parse_gate(f"{behavior} {op} {value}")

    assert (gate.behavior, gate.op) == (behavior, op)
    assert gate.threshold == float(Fraction(value))


@given(st.sampled_from(BEHAVIORS), st.floats(min_value=1.0001, max_value=1e6))
def test_thresholds_above_one_are_refused(behavior: str, value: float) -> None:
    with pytest.raises(GateError, match="must be between 0 and 1"):
        parse_gate(f"{behavior}>={value:.4f}")


# -- threshold gates on reports ------------------------------------------------------------------


def _report(passing: int, total: int) -> dict[str, object]:
    return report_from_flags({name: [i < passing for i in range(total)] for name in BEHAVIORS})


def test_a_threshold_gate_passes_at_the_threshold_and_fails_below() -> None:
    report = _report(15, 50)  # 30%

    assert parse_gate("copies_braces>=0.30").fails(report) is None
    assert parse_gate("copies_braces>=30%").fails(report) is None
    message = parse_gate("copies_braces>0.30").fails(report)
    assert message is not None
    assert message.startswith("gate 'copies_braces>0.30' failed: rate 30.0% is below")
    assert "15 of 50 samples, 95% CI [19.1%, 43.8%]" in message


def test_the_failure_message_says_by_how_much() -> None:
    outcome = parse_gate("truncates<=0.2").evaluate(_report(15, 50))

    assert not outcome.passed
    assert "rate 30.0% is above the threshold 20.0% by 10.0 points" in outcome.message


def test_a_bound_gate_uses_the_wilson_bound() -> None:
    report = _report(15, 50)  # 30%, CI [19.1%, 43.8%]

    assert parse_gate("copies_braces>=0.25").fails(report) is None
    lower = parse_gate("copies_braces.lower>=0.25").evaluate(report)
    assert not lower.passed
    assert "95% lower bound 19.1% is below the threshold 25.0%" in lower.message
    assert parse_gate("copies_braces.upper<=0.45").fails(report) is None


def test_a_gate_on_an_unmeasured_behavior_fails() -> None:
    report = make_report([make_sample(1, True)], behaviors=("copies_braces",))

    message = parse_gate("truncates<=0.5").fails(report)

    assert message is not None
    assert "'truncates' was not measured in this run (measured: copies_braces)" in message
    typo = parse_gate("copies_brace>=0.5").fails(report)
    assert typo is not None
    assert "did you mean 'copies_braces'?" in typo


def test_a_gate_with_no_judged_sample_fails() -> None:
    report = make_report([make_sample(1, {"truncates": None}), make_sample(2, error="timeout")])

    message = parse_gate("truncates<=0.5").fails(report)

    assert message is not None
    assert "no sample was judged for truncates (1 null, 1 errors)" in message


def test_repeats_gate_on_clustered_rates_or_on_consistency() -> None:
    samples = []
    for sample_id, passes in (("a", 5), ("b", 4), ("c", 1), ("d", 0)):
        samples += [make_sample(sample_id, i < passes) for i in range(5)]
    report = make_report(samples)

    pooled = parse_gate("copies_braces>=0.5").evaluate(report)  # 10 of 20 observations
    consistent = parse_gate("copies_braces@0.8>=0.5").evaluate(report)  # a and b: 2 of 4
    strict = parse_gate("copies_braces@100%>=0.5").evaluate(report)  # only a: 1 of 4

    assert pooled.passed
    assert "10 of 20 observations in 4 samples, cluster-robust se" in pooled.message
    assert consistent.passed
    assert "2 of 4 samples" in consistent.message
    assert not strict.passed


# -- regression gates on comparisons -------------------------------------------------------------


def _comparison(base: list[bool], cur: list[bool]):  # type: ignore[no-untyped-def]
    return compare_reports(
        report_from_flags({"preserves_keys": base}), report_from_flags({"preserves_keys": cur})
    )


def test_a_significant_drop_beyond_the_tolerance_fails_with_evidence() -> None:
    # 10 samples fall, 1 rises out of 40: -22.5 points, McNemar p = 0.0117
    base = [True] * 20 + [False] * 20
    cur = [False] * 10 + [True] * 10 + [True] + [False] * 19
    gate = parse_regression("preserves_keys:0.05")

    message = gate.fails(_comparison(base, cur))

    assert message is not None
    assert message.startswith(
        "gate 'preserves_keys:0.05' failed: preserves_keys fell from 50.0% to 27.5%"
    )
    assert "(22.5 points) on 40 paired samples" in message
    assert "McNemar exact p = 0.0117 (10 pass->fail, 1 fail->pass)" in message
    assert "a drop beyond the 5.0-point tolerance and significant (p < alpha 0.05)" in message
    assert "flipped pass->fail: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in message


def test_a_drop_that_is_not_significant_passes() -> None:
    # 3 fall, 0 rise out of 10: -30 points but p = 0.25
    outcome = parse_regression("preserves_keys:0.05").evaluate(
        _comparison([True] * 5 + [False] * 5, [False] * 3 + [True] * 2 + [False] * 5)
    )

    assert outcome.passed
    assert "not significant (p >= alpha 0.05)" in outcome.message


def test_a_significant_drop_within_the_tolerance_passes() -> None:
    # 1000 samples, 40 fall, 10 rise: -3 points, p far below 0.05
    base = [True] * 500 + [False] * 500
    cur = [False] * 40 + [True] * 460 + [True] * 10 + [False] * 490
    outcome = parse_regression("preserves_keys:0.05").evaluate(_comparison(base, cur))

    assert outcome.passed
    assert "within the 5.0-point tolerance" in outcome.message


@pytest.mark.parametrize(("direction", "fails"), [("down", False), ("up", True), ("any", True)])
def test_the_direction_decides_which_move_is_forbidden(direction: str, fails: bool) -> None:
    base = [False] * 20 + [True] * 20
    cur = [True] * 10 + [False] * 10 + [True] * 20  # 10 rise: +25 points, p = 0.002
    gate = parse_regression(f"preserves_keys:0.05:{direction}")

    message = gate.fails(_comparison(base, cur))

    assert (message is not None) is fails
    if fails:
        assert "a rise" in message or "a move" in message  # type: ignore[operator]
        assert "flipped fail->pass: 0, 1, 2" in message  # type: ignore[operator]


def test_alpha_is_honoured() -> None:
    base = [True] * 20 + [False] * 20
    cur = [False] * 10 + [True] * 10 + [True] + [False] * 19  # p = 0.0117
    comparison = _comparison(base, cur)

    assert parse_regression("preserves_keys:0.05", alpha=0.05).fails(comparison) is not None
    assert parse_regression("preserves_keys:0.05", alpha=0.01).fails(comparison) is None


def test_a_regression_gate_without_shared_evidence_fails() -> None:
    comparison = compare_reports(
        make_report([make_sample(1, True)]), make_report([make_sample(2, True)])
    )

    message = parse_regression("preserves_keys:0.05").fails(comparison)

    assert message is not None
    assert "no sample was judged for preserves_keys in both runs" in message


# -- evaluating and rendering --------------------------------------------------------------------


def test_evaluate_gates_keeps_order_and_needs_a_comparison_for_regressions() -> None:
    report = _report(15, 50)
    gates = [parse_gate("copies_braces>=0.5"), parse_gate("truncates<=0.5")]

    outcomes = evaluate_gates(gates, report)

    assert [(o.gate, o.passed) for o in outcomes] == [
        ("copies_braces>=0.5", False),
        ("truncates<=0.5", True),
    ]
    with pytest.raises(GateError, match="needs a baseline"):
        evaluate_gates([parse_regression("truncates:0.1")], report)


def test_render_gate_outcomes_lists_failures_first() -> None:
    outcomes = [
        GateOutcome("truncates<=0.5", "threshold", True, "fine"),
        GateOutcome("copies_braces>=0.5", "threshold", False, "rate 30.0% is below\x1b[0m"),
    ]

    lines = render_gate_outcomes(outcomes)

    assert lines == [
        "gates: 1 passed, 1 failed",
        "  FAILED copies_braces>=0.5: rate 30.0% is below\\x1b[0m",
        "  passed truncates<=0.5: fine",
    ]
    assert render_gate_outcomes([]) == []
