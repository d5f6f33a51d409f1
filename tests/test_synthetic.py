from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest
from scipy import stats

from mimicry.dataset import DatasetSpec, load_rows
from mimicry.synthetic import (
    COLUMNS,
    LOG_LENGTH_MEAN,
    LOG_LENGTH_SD,
    MAX_TURNS,
    TEXT_COLUMNS,
    generate_rows,
    main,
    write_dataset,
)

#: Rows drawn for the distribution checks (about 0.4 s to generate).
DISTRIBUTION_ROWS = 4000
#: How far each quantile of the generated lengths may be from the real rows' quantile. The 32
#: real rows pin their own quantiles only loosely (the log-normal fit is off by 3% to 9%), so
#: this checks "the same distribution", not a coincidence of digits.
QUANTILE_TOLERANCE = 0.15
QUANTILES = (25, 50, 75, 90)


@pytest.fixture(scope="module")
def real_rows(real_rows_path: Path) -> Any:
    return load_rows(DatasetSpec(str(real_rows_path)))


@pytest.fixture(scope="module")
def real_lengths(real_rows: Any) -> list[int]:
    return sorted(len(str(row)) for row in real_rows)


@pytest.fixture(scope="module")
def generated() -> list[dict[str, Any]]:
    return list(generate_rows(DISTRIBUTION_ROWS, seed=0))


def _quantile(values: list[int], q: int) -> float:
    return float(statistics.quantiles(values, n=100, method="inclusive")[q - 1])


def test_rows_read_back_with_the_real_schema(real_rows: Any, tmp_path: Path) -> None:
    path = write_dataset(tmp_path / "rows.jsonl", n_rows=40, seed=1)
    ds = load_rows(DatasetSpec(str(path)))
    expected = list(generate_rows(40, seed=1))

    assert ds.column_names == real_rows.column_names == list(COLUMNS)
    assert ds.features == real_rows.features
    assert len(ds) == 40
    for row, made in zip(ds, expected, strict=True):
        assert str(row) == str(made)  # the prompt the suite sends is the generated row's repr
        assert [type(v) for v in row.values()] == [type(v) for v in real_rows[0].values()]


def test_parquet_and_jsonl_give_the_same_rows(tmp_path: Path) -> None:
    jsonl = load_rows(DatasetSpec(str(write_dataset(tmp_path / "r.jsonl", n_rows=30, seed=2))))
    parquet = load_rows(DatasetSpec(str(write_dataset(tmp_path / "r.parquet", n_rows=30, seed=2))))

    assert parquet.features == jsonl.features
    assert [str(r) for r in parquet] == [str(r) for r in jsonl]


def test_rows_have_the_real_shape(generated: list[dict[str, Any]]) -> None:
    ids = [row["id"] for row in generated]
    assert ids == sorted(set(ids))
    for row in generated:
        assert tuple(row) == COLUMNS
        turns = [json.loads(row[column]) for column in TEXT_COLUMNS]
        assert all(isinstance(t, list) and all(isinstance(s, str) for s in t) for t in turns)
        assert len({len(t) for t in turns}) == 1, "prompt and responses have as many turns"
        assert 1 <= len(turns[0]) <= MAX_TURNS
        assert row["model_a"] != row["model_b"]
        assert row["winner_model_a"] + row["winner_model_b"] + row["winner_tie"] == 1
        for column in TEXT_COLUMNS:
            # encoded as the real rows are: compact separators, ASCII only
            assert '","' in row[column] or len(turns[0]) == 1
            assert row[column].isascii()


def test_same_seed_same_file_other_seed_other_rows(tmp_path: Path) -> None:
    first = write_dataset(tmp_path / "a.jsonl", n_rows=200, seed=7).read_bytes()
    again = write_dataset(tmp_path / "b.jsonl", n_rows=200, seed=7).read_bytes()
    other = write_dataset(tmp_path / "c.jsonl", n_rows=200, seed=8).read_bytes()

    assert first == again
    assert first != other


def test_the_fitted_parameters_are_the_real_rows_fit(real_lengths: list[int]) -> None:
    logs = [math.log(n) for n in real_lengths]

    assert statistics.fmean(logs) == pytest.approx(LOG_LENGTH_MEAN, abs=1e-3)
    assert statistics.stdev(logs) == pytest.approx(LOG_LENGTH_SD, abs=1e-3)


@pytest.mark.parametrize("q", QUANTILES)
def test_length_quantiles_match_the_real_rows(
    q: int, real_lengths: list[int], generated: list[dict[str, Any]]
) -> None:
    lengths = [len(str(row)) for row in generated]
    real, made = _quantile(real_lengths, q), _quantile(lengths, q)

    assert made == pytest.approx(real, rel=QUANTILE_TOLERANCE), (
        f"{q}th percentile of len(str(row)): generated {made:.0f}, real {real:.0f}"
    )


def test_lengths_are_distributed_like_the_real_rows(
    real_lengths: list[int], generated: list[dict[str, Any]]
) -> None:
    lengths = [len(str(row)) for row in generated]

    assert 2_000 <= statistics.median(lengths) <= 3_000
    assert sum(n > 30_000 for n in lengths) >= 0.003 * len(lengths), "a long tail past 30,000"
    # two-sample Kolmogorov-Smirnov: no evidence that the two come from different distributions
    assert stats.ks_2samp(real_lengths, lengths).pvalue > 0.2


def test_turn_counts_are_like_the_real_rows(
    real_rows: Any, generated: list[dict[str, Any]]
) -> None:
    real_single = sum(len(json.loads(r["prompt"])) == 1 for r in real_rows) / len(real_rows)
    single = sum(len(json.loads(r["prompt"])) == 1 for r in generated) / len(generated)
    longest = max(generated, key=lambda r: len(str(r)))

    assert single == pytest.approx(real_single, abs=0.1)
    assert len(json.loads(longest["prompt"])) >= 5, "long rows are long conversations"


def test_command_line_writes_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rows.jsonl"

    assert main([str(out), "--rows", "25", "--seed", "3"]) == 0
    assert len(out.read_text().splitlines()) == 25
    assert (
        out.read_bytes() == write_dataset(tmp_path / "same.jsonl", n_rows=25, seed=3).read_bytes()
    )
    assert capsys.readouterr().out == f"wrote 25 rows to {out}\n"


def test_command_line_rejects_an_unknown_file_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "rows.csv"), "--rows", "5"]) == 4
    err = capsys.readouterr().err
    assert "unsupported file type '.csv'" in err
    assert ".jsonl or .parquet" in err
    assert not list(tmp_path.iterdir()), "no file, not even a partial one"


def test_zero_rows_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"n_rows=0: must be at least 1"):
        write_dataset(tmp_path / "rows.jsonl", n_rows=0)
    assert not list(tmp_path.iterdir())
