"""The paired comparison of two reports and its statistics (McNemar, Newcombe, clustered rates).

``make_report`` / ``make_sample`` build reports through the real ``build_report``, so these tests
read the same shape the plugin writes; test_gates, test_reports and test_cli import them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import binomtest

from mimicry.core.behaviors import BUILTIN_BEHAVIORS as BEHAVIORS
from mimicry.core.compare import (
    Comparison,
    ReportError,
    _wilson_fractional,
    check_report,
    clustered_rate,
    compare_reports,
    consistency_rate,
    consistent_verdict,
    has_repeats,
    load_report,
    mcnemar_exact_p,
    paired_difference_interval,
    pass_share,
    render_comparison,
    verdicts_by_sample,
)
from mimicry.core.report import RunResults, build_report
from mimicry.core.stats import wilson_interval
from mimicry.synthetic import COLUMNS

RECORD_KEYS = COLUMNS
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


# -- report factory (shared with the other report tests) -----------------------------------------


def make_sample(
    sample_id: str | int,
    verdicts: Mapping[str, bool | None] | bool = False,
    *,
    index: int = 0,
    reply: str | None = "{'id': 1}",
    prompt_chars: int | None = 1000,
    error: str | None = None,
) -> dict[str, Any]:
    """One sample dict as samples.py writes it; a bool gives every behavior that verdict."""
    if isinstance(verdicts, bool):
        verdicts = dict.fromkeys(BEHAVIORS, verdicts)
    if error is not None:
        behaviors: dict[str, bool | None] = dict.fromkeys(BEHAVIORS)
    else:
        behaviors = {name: verdicts.get(name, False) for name in BEHAVIORS}
    return {
        "id": str(sample_id),
        "index": index,
        "status": "error" if error is not None else "ok",
        "error": error,
        "prompt_chars": prompt_chars,
        "cached": False,
        "behaviors": behaviors,
        "measures": {"kept_keys": ["id"], "shorter_than_input": True} if error is None else {},
        "flags": [],
        "explanations": {},
        "reply": None if error is not None else reply,
        "done_reason": "stop",
        "prompt_eval_count": 100,
        "eval_count": 20,
    }


def make_report(
    samples: Iterable[Mapping[str, Any]],
    *,
    model: str = "qwen2:0.5b",
    digest: str = DIGEST_A,
    options: Mapping[str, Any] | None = None,
    prompt_template: str = "python-repr",
    dataset: str = "train-first32.jsonl",
    sample_ids: Sequence[Any] | None = None,
    complete: bool = True,
    behaviors: Sequence[str] = BEHAVIORS,
) -> dict[str, Any]:
    """A report built by ``build_report`` from sample dicts (repeats kept as given)."""
    samples = [dict(s) for s in samples]
    results = RunResults()
    for sample in samples:
        results.add_sample(sample)
        key = (str(sample["id"]), int(sample.get("repeat") or 0))
        for name in behaviors:
            verdict = (sample.get("behaviors") or {}).get(name)
            outcome = {True: "shown", False: "not shown", None: "not judged"}[verdict]
            if sample["status"] == "error":
                outcome = "error"
            results.add_outcome(key, name, outcome, "", name if name in BEHAVIORS else None)
    ids = list(dict.fromkeys(s["id"] for s in samples))
    run = {
        "run_id": "test",
        "backend": "ollama",
        "model": model,
        "model_digest": digest,
        "host": "http://127.0.0.1:11434",
        "options": dict(
            options or {"temperature": 0, "seed": 0, "num_predict": 512, "num_ctx": 4096}
        ),
        "prompt_template": prompt_template,
        "dataset": {
            "id_or_path": dataset,
            "split": "train",
            "n_rows": 32,
            "sample_ids": list(sample_ids or ids),
        },
        "started_at": "2026-01-01T00:00:00+00:00",
        "duration_s": 1.5,
        "complete": complete,
        "exit_status": 0,
        "errors": sum(1 for s in samples if s["status"] == "error"),
    }
    report = build_report(run, results, {}, RECORD_KEYS)
    if has_repeats(samples):  # RunResults keeps one dict per id; a --repeat run lists them all
        report["samples"] = samples
    return report


def report_from_flags(flags: Mapping[str, Sequence[bool]], **kwargs: Any) -> dict[str, Any]:
    """A report whose sample ``i`` has ``flags[behavior][i]`` (ids "0", "1", ...)."""
    n = len(next(iter(flags.values())))
    samples = [
        make_sample(i, {name: bool(values[i]) for name, values in flags.items()}, index=i)
        for i in range(n)
    ]
    return make_report(samples, **kwargs)


# -- McNemar ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("b", "c", "expected"),
    [
        (1, 9, 0.021484375),  # 2 * (C(10,0) + C(10,1)) / 2^10 = 22/1024
        (9, 1, 0.021484375),
        (0, 5, 0.0625),  # 2 / 2^5
        (2, 8, 0.109375),  # 2 * (1 + 10 + 45) / 1024
        (0, 6, 0.03125),  # 2 / 64: the fewest discordant pairs that can reach p < 0.05
        (5, 5, 1.0),
        (0, 0, 1.0),  # nothing flipped: no evidence of change
    ],
)
def test_mcnemar_exact_matches_hand_worked_tables(b: int, c: int, expected: float) -> None:
    assert mcnemar_exact_p(b, c) == pytest.approx(expected, rel=1e-12)


def _exact_two_sided(b: int, c: int) -> Fraction:
    n = b + c
    tail = sum(Fraction(math.comb(n, k), 2**n) for k in range(min(b, c) + 1))
    return min(Fraction(1), 2 * tail)


def test_mcnemar_matches_exact_binomial_sums_and_scipy() -> None:
    for b in range(0, 25):
        for c in range(0, 25):
            p = mcnemar_exact_p(b, c)
            if b + c:
                assert p == pytest.approx(float(_exact_two_sided(b, c)), rel=1e-9)
                assert p == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-12)
            assert p == mcnemar_exact_p(c, b)


def test_mcnemar_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="discordant counts"):
        mcnemar_exact_p(-1, 3)


# -- Newcombe's paired interval ------------------------------------------------------------------


def test_newcombe_matches_the_published_example() -> None:
    # Fagerland, Lydersen & Laake, "Statistical Analysis of Contingency Tables" (2017), ch. 8:
    # complete response before/after consolidation (Cavo et al. 2012), table [[59, 6], [16, 80]];
    # Newcombe square-and-add: estimate -0.0621, 95% CI -0.1186 to -0.0046. Here "current" is
    # the first measurement: 6 pass only now (fail -> pass), 16 passed only before.
    low, high = paired_difference_interval(59, 16, 6, 80)  # type: ignore[misc]

    assert low == pytest.approx(-0.1186, abs=5e-5)
    assert high == pytest.approx(-0.0046, abs=5e-5)


def test_newcombe_is_antisymmetric_and_contains_the_estimate() -> None:
    for table in [(10, 3, 7, 20), (0, 0, 5, 0), (5, 0, 0, 5), (1, 9, 0, 0), (30, 2, 2, 30)]:
        both, b, c, neither = table
        n = sum(table)
        low, high = paired_difference_interval(*table)  # type: ignore[misc]
        mirrored = paired_difference_interval(both, c, b, neither)

        assert -1 <= low <= (c - b) / n <= high <= 1
        assert mirrored == pytest.approx((-high, -low))


def test_newcombe_of_no_pairs_is_none() -> None:
    assert paired_difference_interval(0, 0, 0, 0) is None


# -- simulations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "p"), [(50, 0.3), (100, 0.7), (200, 0.1)])
def test_wilson_covers_the_true_rate_about_95_percent_of_the_time(n: int, p: float) -> None:
    rng = np.random.default_rng(20260101 + n)
    table = [wilson_interval(k, n) for k in range(n + 1)]
    hits = [table[k][0] <= p <= table[k][1] for k in rng.binomial(n, p, size=2000)]  # type: ignore[index]

    assert 0.93 <= np.mean(hits) <= 0.97


def _simulate_pairs(
    rng: np.random.Generator, n: int, p_base: float, p_fall: float, p_rise: float
) -> tuple[int, int, int, int]:
    """One paired run: baseline verdicts, then each sample flips with the given chances."""
    base = rng.random(n) < p_base
    u = rng.random(n)
    cur = np.where(base, u >= p_fall, u < p_rise)
    both = int(np.sum(base & cur))
    b = int(np.sum(base & ~cur))
    c = int(np.sum(~base & cur))
    return both, b, c, n - both - b - c


def test_mcnemar_rejects_about_alpha_when_nothing_changed() -> None:
    # Nothing changed: each sample has its own pass chance, the same in both runs. The exact test
    # is conservative (its discrete size stays below alpha: about 3-4% here), so the bound asked
    # is [1%, 6%]: more than 6% would be a real excess of false alarms at 2000 runs (4 s.e.).
    rng = np.random.default_rng(4)
    cache: dict[tuple[int, int], float] = {}
    rejections = 0
    runs = 2000
    for _ in range(runs):
        chance = rng.beta(2, 2, size=100)
        base = rng.random(100) < chance
        cur = rng.random(100) < chance
        key = (int(np.sum(base & ~cur)), int(np.sum(~base & cur)))
        if key not in cache:
            cache[key] = mcnemar_exact_p(*key)
        rejections += cache[key] < 0.05

    assert 0.01 <= rejections / runs <= 0.06


def test_mcnemar_detects_a_real_drop() -> None:
    # 30% of passing samples fall, 2% of failing ones rise: a drop of about 14 points in 100
    rng = np.random.default_rng(5)
    rejections = sum(
        mcnemar_exact_p(b, c) < 0.05
        for _, b, c, _ in (_simulate_pairs(rng, 100, 0.5, 0.3, 0.02) for _ in range(300))
    )

    assert rejections / 300 > 0.8


def test_newcombe_covers_the_true_paired_difference() -> None:
    rng = np.random.default_rng(6)
    p_base, p_fall, p_rise = 0.5, 0.3, 0.1
    true_diff = (p_base * (1 - p_fall) + (1 - p_base) * p_rise) - p_base
    hits = 0
    for _ in range(1000):
        low, high = paired_difference_interval(*_simulate_pairs(rng, 100, p_base, p_fall, p_rise))  # type: ignore[misc]
        hits += low <= true_diff <= high

    assert 0.93 <= hits / 1000 <= 0.98


def test_clustered_interval_covers_where_the_naive_one_does_not() -> None:
    # 100 samples asked 5 times; each sample has its own pass chance (Beta(1, 1)), so repeats of
    # a sample are alike and the 500 observations hold far less than 500 samples' information.
    rng = np.random.default_rng(8)
    clustered_hits = naive_hits = 0
    runs = 500
    for _ in range(runs):
        passes = rng.binomial(5, rng.beta(1, 1, size=100))
        grouped = {str(i): [True] * int(s) + [False] * (5 - int(s)) for i, s in enumerate(passes)}
        low, high = clustered_rate(grouped).ci95  # type: ignore[misc]
        clustered_hits += low <= 0.5 <= high
        n_low, n_high = wilson_interval(int(passes.sum()), 500)  # type: ignore[misc]
        naive_hits += n_low <= 0.5 <= n_high

    assert 0.92 <= clustered_hits / runs <= 0.97
    assert naive_hits / runs < 0.85


# -- repeated observations ----------------------------------------------------------------------


def test_clustered_se_of_single_observations_is_the_binomial_one() -> None:
    grouped = {str(i): [i % 4 == 0] for i in range(40)}  # 10 of 40 pass
    est = clustered_rate(grouped)

    assert est.rate == 0.25
    assert est.se == pytest.approx(math.sqrt(0.25 * 0.75 / 39))


def test_clustered_se_matches_a_hand_worked_example() -> None:
    # samples: 2 of 2, 0 of 2, 1 of 2 -> p = 0.5; residuals s - p*m: 1, -1, 0
    # se^2 = 3/2 * 2 / 6^2 = 1/12
    est = clustered_rate({"a": [True, True], "b": [False, False], "c": [True, False]})

    assert (est.passed, est.n, est.clusters) == (3, 6, 3)
    assert est.se == pytest.approx(math.sqrt(1 / 12))
    assert est.ci95 is not None
    assert est.ci95[0] < 0.5 < est.ci95[1]


def test_clustered_rate_ignores_nulls_and_needs_two_samples_for_an_interval() -> None:
    assert clustered_rate({}).rate is None
    one = clustered_rate({"a": [True, None, False]})
    assert (one.passed, one.n, one.ci95, one.se) == (1, 2, None, None)


def test_clustered_interval_at_the_edges_is_not_degenerate() -> None:
    est = clustered_rate({str(i): [True, True, True] for i in range(20)})

    assert est.rate == 1.0
    assert est.se == 0.0
    assert est.ci95 is not None
    assert est.ci95[0] < 0.9


def test_fractional_wilson_equals_scipy_wilson_for_whole_counts() -> None:
    for n in (1, 7, 30, 101):
        for k in range(n + 1):
            assert _wilson_fractional(k / n, n, 0.95) == pytest.approx(
                wilson_interval(k, n), abs=1e-12
            )


def test_consistency_share_and_verdicts() -> None:
    assert pass_share([True, True, False, None]) == pytest.approx(2 / 3)
    assert pass_share([None, None]) is None
    assert consistent_verdict([True, True, True, True, False], 0.8) is True
    assert consistent_verdict([True, True, True, False, False], 0.8) is False
    assert consistent_verdict([None], 0.5) is None
    with pytest.raises(ValueError, match="min_share"):
        consistent_verdict([True], 0)


def test_consistency_rate_counts_samples_not_repeats() -> None:
    grouped = {"a": [True] * 5, "b": [True] * 4 + [False], "c": [True, False, False, False, False]}

    est = consistency_rate(grouped, 0.8)

    assert (est.passed, est.n) == (2, 3)


def test_verdicts_by_sample_groups_repeats_and_treats_errors_as_null() -> None:
    samples = [
        make_sample(1, True),
        make_sample(1, False),
        make_sample(2, error="timeout"),
    ]

    grouped = verdicts_by_sample(samples, "copies_braces")

    assert grouped == {"1": [True, False], "2": [None]}
    assert has_repeats(samples)
    assert not has_repeats(samples[1:])


# -- compare_reports -----------------------------------------------------------------------------


def test_identical_runs_show_no_change_and_no_warning() -> None:
    report = report_from_flags({"copies_braces": [True, False, True, True]})

    comparison = compare_reports(report, report)

    row = comparison.behavior("copies_braces")
    assert row is not None
    assert (row.n, row.b, row.c, row.difference, row.mcnemar_p) == (4, 0, 0, 0.0, 1.0)
    assert comparison.warnings == ()
    assert comparison.only_in_baseline == comparison.only_in_current == ()


def test_flips_are_counted_both_ways_with_their_ids() -> None:
    base = report_from_flags({"copies_braces": [True] * 10 + [False] * 10})
    cur = report_from_flags({"copies_braces": [False] * 9 + [True] + [True] + [False] * 9})

    row = compare_reports(base, cur).behavior("copies_braces")

    assert row is not None
    assert row.pass_to_fail == tuple(str(i) for i in range(9))
    assert row.fail_to_pass == ("10",)
    assert (row.both_passed, row.neither_passed) == (1, 9)
    assert row.mcnemar_p == pytest.approx(0.021484375)
    assert row.baseline.rate == 0.5
    assert row.current.rate == 0.1
    assert row.difference == pytest.approx(-0.4)
    assert row.difference_ci95 is not None
    assert row.difference_ci95[1] < 0


def test_only_common_samples_are_compared_and_the_rest_is_reported() -> None:
    base = make_report([make_sample(i, True, index=i) for i in range(6)])
    cur = make_report([make_sample(i, False, index=i) for i in range(3, 9)])

    comparison = compare_reports(base, cur)

    assert comparison.common_ids == ("3", "4", "5")
    assert comparison.only_in_baseline == ("0", "1", "2")
    assert comparison.only_in_current == ("6", "7", "8")
    row = comparison.behavior("truncates")
    assert row is not None
    assert row.n == 3
    assert row.b == 3
    assert any(d.kind == "selection" and d.severity == "warning" for d in comparison.differences)


def test_a_sample_judged_in_one_run_only_is_left_out_and_listed() -> None:
    base = make_report(
        [make_sample(1, True), make_sample(2, {"truncates": None}), make_sample(3, True)]
    )
    cur = make_report([make_sample(1, True), make_sample(2, True), make_sample(3, error="timeout")])

    row = compare_reports(base, cur).behavior("truncates")

    assert row is not None
    assert row.n == 1
    assert row.judged_only_in_baseline == ("3",)
    assert row.judged_only_in_current == ("2",)


def test_differences_in_options_template_dataset_and_model_are_flagged() -> None:
    base = make_report([make_sample(1, True)])
    cur = make_report(
        [make_sample(1, True)],
        model="qwen2.5:0.5b",
        digest=DIGEST_B,
        options={"temperature": 0.7, "seed": 0, "num_predict": 512, "num_ctx": 8192},
        prompt_template="chat",
        dataset="other.jsonl",
        complete=False,
    )

    comparison = compare_reports(base, cur)

    kinds = {(d.kind, d.severity) for d in comparison.differences}
    assert ("options", "warning") in kinds
    assert ("prompt_template", "warning") in kinds
    assert ("dataset", "warning") in kinds
    assert ("completeness", "warning") in kinds
    assert ("model", "note") in kinds
    options = next(d for d in comparison.differences if d.kind == "options")
    assert "num_ctx 4096 -> 8192" in options.message
    assert "temperature 0 -> 0.7" in options.message


def test_a_moved_dataset_file_is_a_note_not_a_warning() -> None:
    base = make_report([make_sample(1, True)], dataset="/home/me/data/train.jsonl")
    cur = make_report([make_sample(1, True)], dataset="/ci/checkout/data/train.jsonl")

    (diff,) = compare_reports(base, cur).differences

    assert (diff.kind, diff.severity) == ("dataset", "note")


def test_same_tag_with_new_weights_is_noted() -> None:
    base = make_report([make_sample(1, True)])
    cur = make_report([make_sample(1, True)], digest=DIGEST_B)

    (diff,) = compare_reports(base, cur).differences

    assert diff.kind == "model"
    assert "different weights" in diff.message


def test_behaviors_measured_in_one_run_only_are_not_compared() -> None:
    base = make_report([make_sample(1, True)])
    cur = make_report([make_sample(1, True)], behaviors=("copies_braces",))

    comparison = compare_reports(base, cur)

    assert [b.behavior for b in comparison.behaviors] == ["copies_braces"]
    assert any(d.kind == "behaviors" for d in comparison.differences)


def test_repeated_runs_are_compared_on_consistency_verdicts() -> None:
    base = make_report([make_sample("s", True) for _ in range(5)])
    cur = make_report([make_sample("s", i < 3) for i in range(5)])  # 3 of 5 repeats pass

    strict = compare_reports(base, cur, min_share=0.8).behavior("copies_braces")
    lenient = compare_reports(base, cur, min_share=0.6).behavior("copies_braces")

    assert strict is not None
    assert strict.pass_to_fail == ("s",)
    assert lenient is not None
    assert lenient.pass_to_fail == ()


def test_comparison_to_dict_is_plain_json() -> None:
    base = report_from_flags({"copies_braces": [True, False]})
    cur = report_from_flags({"copies_braces": [False, True]})

    data = compare_reports(base, cur).to_dict()

    assert json.loads(json.dumps(data)) == data
    assert data["behaviors"]["copies_braces"]["pass_to_fail"] == ["0"]


def test_render_comparison_shows_the_table_warnings_and_flipped_ids() -> None:
    base = report_from_flags({"copies_braces": [True] * 10 + [False] * 10})
    cur = report_from_flags(
        {"copies_braces": [False] * 9 + [True] * 2 + [False] * 9},
        model="qwen2.5:0.5b",
        options={"temperature": 1, "seed": 0, "num_predict": 512, "num_ctx": 4096},
    )

    lines = render_comparison(compare_reports(base, cur), max_ids=3)
    text = "\n".join(lines)

    assert "baseline qwen2:0.5b (digest aaaaaaaaaaaa) -> current qwen2.5:0.5b" in text
    assert any(line.startswith("WARNING: the model options differ") for line in lines)
    row = next(line for line in lines if line.startswith("copies_braces"))
    assert row.split() == [
        "copies_braces",
        "20",
        "50.0%",
        "10.0%",
        "-40.0",
        "[-61.3,",
        "-11.6]",
        "9",
        "1",
        "0.0215",
    ]
    assert "copies_braces pass->fail: 0, 1, 2 (+6 more)" in text


def test_render_comparison_escapes_control_characters_in_ids() -> None:
    base = make_report([make_sample("a\x1b[31mred", True)])
    cur = make_report([make_sample("a\x1b[31mred", False)])

    text = "\n".join(render_comparison(compare_reports(base, cur)))

    assert "\x1b" not in text
    assert "a\\x1b[31mred" in text


# -- loading -------------------------------------------------------------------------------------


def test_load_report_round_trips_a_written_report(tmp_path: Path) -> None:
    report = make_report([make_sample(1, True, reply="lone \udc80 surrogate")])
    path = tmp_path / "r.json"
    with path.open("w", encoding="utf-8", errors="surrogatepass") as fh:
        json.dump(report, fh, ensure_ascii=True)

    loaded = load_report(path)

    assert loaded["samples"][0]["reply"] == "lone \udc80 surrogate"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "the top level is list"),
        ('{"run": {}}', "no schema_version"),
        ('{"schema_version": 3, "run": {}, "behaviors": {}, "samples": []}', "schema_version 3"),
        ('{"schema_version": 1, "run": {}, "behaviors": {}}', "'samples' is missing"),
        ('{"schema_version": 1, "run": {}, "behaviors": {}, "samples": [3]}', "samples[0]"),
        (
            '{"schema_version": 1, "run": {}, "behaviors": {}, "samples": [{"id": "1", '
            '"behaviors": {"truncates": "yes"}}]}',
            "samples[0].behaviors is not an object of true, false or null",
        ),
        (
            '{"schema_version": 1, "run": {"options": []}, "behaviors": {}, "samples": []}',
            "run.options is not an object",
        ),
        (
            '{"schema_version": 1, "run": {}, "behaviors": {"x": {}}, "samples": []}',
            "behaviors['x'] is not an object with counts",
        ),
        (
            '{"schema_version": 1, "run": {}, "samples": [], "behaviors": '
            '{"x": {"n": 2, "passed": 1, "rate": "half", "ci95": null}}}',
            "behaviors['x'] is not an object with counts",
        ),
        ("[" * 100_000, "nested too deeply"),
    ],
)
def test_load_report_says_what_is_wrong(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "report.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")

    with pytest.raises(ReportError, match="report.json") as info:
        load_report(path)

    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_check_report_accepts_a_built_report() -> None:
    report = make_report([make_sample(1, True)])

    assert check_report(report) is report
    assert isinstance(compare_reports(report, report), Comparison)


def test_a_different_planned_selection_is_flagged_even_when_the_judged_samples_agree() -> None:
    base = make_report([make_sample(1, True)], sample_ids=["1", "2"])
    cur = make_report([make_sample(1, True)], sample_ids=["1", "3"])
    unlisted = make_report([make_sample(1, True)])
    del unlisted["run"]["dataset"]["sample_ids"]

    (diff,) = compare_reports(base, cur).differences

    assert (diff.kind, diff.severity) == ("selection", "warning")
    assert "planned different sample selections" in diff.message
    assert compare_reports(base, unlisted).differences == ()
