from __future__ import annotations

import pytest

from mimicry.settings import (
    OPTIONS,
    Backend,
    CacheMode,
    ErrorBudget,
    SettingsError,
    parse_error_budget,
    resolve,
)


def test_defaults_when_nothing_is_given() -> None:
    settings = resolve({}, {})

    assert settings.model == "qwen2:0.5b"
    assert settings.samples == 100
    assert settings.response_cache_mode is CacheMode.USE
    assert settings.backend is Backend.AUTO
    assert settings.num_ctx is None
    assert settings.given == frozenset()


def test_command_line_beats_ini_beats_default() -> None:
    settings = resolve({"seed": 3}, {"seed": "2", "model": "m:1"})

    assert settings.seed == 3
    assert settings.model == "m:1"
    assert settings.was_given("model")
    assert settings.was_given("seed")
    assert not settings.was_given("samples")


def test_every_option_is_a_flag_and_an_ini_key() -> None:
    flags = {o.flag for o in OPTIONS}
    inis = {o.ini for o in OPTIONS}

    assert len(flags) == len(inis) == len(OPTIONS)
    assert "--ollama-host" in flags
    assert "mimicry_ollama_host" in inis


@pytest.mark.parametrize(
    ("value", "budget"),
    [
        ("0", ErrorBudget(count=0)),
        ("5", ErrorBudget(count=5)),
        ("2%", ErrorBudget(None, 0.02)),
        ("0.1", ErrorBudget(None, 0.1)),
    ],
)
def test_error_budget_forms(value: str, budget: ErrorBudget) -> None:
    assert parse_error_budget(value) == budget


def test_error_budget_allows() -> None:
    assert ErrorBudget(count=2).allows(2, 100)
    assert not ErrorBudget(count=2).allows(3, 100)
    assert ErrorBudget(None, 0.1).allows(10, 100)
    assert not ErrorBudget(None, 0.1).allows(11, 100)


@pytest.mark.parametrize(
    ("cli", "message"),
    [
        ({"samples": "0"}, "--samples '0': must be at least 1"),
        ({"temperature": "hot"}, "--temperature 'hot': expected a number"),
        (
            {"backend": "gpu"},
            "--backend 'gpu': unknown value; choose one of auto, ollama, embedded",
        ),
        (
            {"max_errors": "-1"},
            "--max-errors '-1': expected a count (5), a percentage (2%) or a share (0.02)",
        ),
        ({"sample_ids": " , "}, "--sample-ids ' , ': no ids given"),
        ({"num_ctx": "10"}, "--num-ctx '10': must be at least 64"),
    ],
)
def test_bad_values_name_the_option_and_value(cli: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as excinfo:
        resolve(cli, {})
    assert message in str(excinfo.value)


def test_samples_all_and_sample_ids() -> None:
    settings = resolve({"samples": "all", "sample_ids": "30192, 53567"}, {})

    assert settings.samples is None
    assert settings.sample_ids == ("30192", "53567")
