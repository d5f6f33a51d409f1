"""The suite's options: one table, one resolution function, one frozen settings object.

Every option is a command-line flag and an ini key of the same name (``--num-predict`` and
``mimicry_num_predict``). Precedence is resolved in exactly one place, :func:`resolve`: the command
line, then the ini file, then (for the host only) the ``OLLAMA_HOST`` environment variable, then the
built-in default. This module imports neither pytest nor ollama; the plugin registers the table.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mimicry.core.prompt import DEFAULT_TEMPLATE, TEMPLATES

DEFAULT_MODEL = "qwen2:0.5b"
DEFAULT_DATASET = "lmsys/lmsys-arena-human-preference-55k"
DEFAULT_SAMPLES = 100


class CacheMode(enum.Enum):
    """How the persistent response cache is used."""

    USE = "use"  # read hits, ask the model on a miss, store the reply
    REFRESH = "refresh"  # always ask the model, overwrite the stored reply
    OFF = "off"  # neither read nor write
    REPLAY = "replay"  # never ask the model: a miss is an error


class Backend(enum.Enum):
    """Where replies come from."""

    AUTO = "auto"  # the named/default Ollama if it answers, else the embedded model (see README)
    OLLAMA = "ollama"  # an Ollama-compatible server; never fall back
    EMBEDDED = "embedded"  # always start the embedded llama.cpp server


class SettingsError(ValueError):
    """A bad option value. The message names the option, the value, what is accepted and the fix."""


@dataclass(frozen=True)
class OptionSpec:
    """One option: its flag, ini key, built-in default (as text, like ini values) and help."""

    name: str  # the attribute on Settings; flag is --name-with-dashes, ini key mimicry_name
    default: str | None
    help: str
    metavar: str = "VALUE"
    multiple: bool = False  # may be given several times (one value per line in the ini file)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def ini(self) -> str:
        return "mimicry_" + self.name


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("model", DEFAULT_MODEL, "model name as the server knows it", "NAME"),
    OptionSpec(
        "ollama_host",
        None,
        "Ollama server URL (default: $OLLAMA_HOST, else http://127.0.0.1:11434); repeat it to "
        "spread the samples over several servers serving the same model",
        "URL",
        multiple=True,
    ),
    OptionSpec(
        "concurrency",
        "auto",
        "requests the run keeps in flight, in sample order, while tests judge the replies "
        "already in (use about the server's parallel slots); auto: the number of xdist workers "
        "(1 without xdist)",
        "K|auto",
    ),
    OptionSpec(
        "backend",
        Backend.AUTO.value,
        "auto: the Ollama server if one answers, else the embedded model; "
        "ollama: never fall back; embedded: always the embedded model",
        "|".join(b.value for b in Backend),
    ),
    OptionSpec(
        "dataset",
        DEFAULT_DATASET,
        "Hugging Face dataset id, local .jsonl/.json/.csv/.parquet file, or 'sample' (the 32 "
        "rows shipped with the package); default: the hub dataset when it can be had, else the "
        "bundled sample",
        "ID_OR_PATH|sample",
    ),
    OptionSpec("dataset_split", "train", "dataset split", "SPLIT"),
    OptionSpec(
        "samples",
        str(DEFAULT_SAMPLES),
        "how many rows to evaluate (a seeded, reproducible selection), or 'all'",
        "N|all",
    ),
    OptionSpec("sample_seed", "0", "seed of the sample selection", "SEED"),
    OptionSpec(
        "sample_ids",
        None,
        "comma-separated dataset ids to evaluate instead of a selection",
        "ID,ID",
    ),
    OptionSpec("report_json", None, "write the machine-readable report here", "PATH"),
    OptionSpec(
        "prompt_template",
        DEFAULT_TEMPLATE,
        "how a row becomes the prompt: " + ", ".join(sorted(TEMPLATES)),
        "NAME",
    ),
    OptionSpec("temperature", "0", "sampling temperature sent with every request", "T"),
    OptionSpec("seed", "42", "sampling seed sent with every request", "SEED"),
    OptionSpec("num_predict", "1024", "cap on reply length in tokens (num_predict)", "TOKENS"),
    OptionSpec(
        "num_ctx",
        "auto",
        "context window sent with every request; auto: sized to the selected rows, "
        "within the model's context length",
        "TOKENS|auto",
    ),
    OptionSpec(
        "response_cache_mode",
        CacheMode.USE.value,
        "use: reuse stored replies; refresh: ask again and overwrite; off: no cache; "
        "replay: never ask the model, a missing reply is an error",
        "|".join(m.value for m in CacheMode),
    ),
    OptionSpec(
        "response_cache_dir",
        None,
        "where replies are cached (default: under pytest's cache dir)",
        "DIR",
    ),
    OptionSpec(
        "request_timeout",
        "300",
        "deadline of each request attempt, from connecting to the reply's last byte: an "
        "attempt still unfinished then is abandoned, its connection closed, and retried like "
        "any timeout",
        "SECONDS",
    ),
    OptionSpec(
        "retries", "3", "retries after a failed request (connection errors, timeouts, 5xx)", "N"
    ),
    OptionSpec(
        "max_errors",
        "0",
        "error budget: samples whose request still failed, as a count (5) or a share (2%%, 0.02); "
        "more than this makes the exit status 75",
        "N|SHARE",
    ),
    OptionSpec(
        "embedded_gguf",
        None,
        "GGUF file for the embedded server (default: bundled SmolLM2-135M)",
        "PATH",
    ),
    OptionSpec("embedded_model_name", None, "name the embedded server gives the GGUF file", "NAME"),
    OptionSpec(
        "embedded_threads",
        "auto",
        "llama.cpp threads of the embedded server; auto: one per CPU other processes leave free "
        "at start. The thread count changes llama.cpp's arithmetic, so greedy replies: it is part "
        "of the cache key; pin it for baselines",
        "N|auto",
    ),
    OptionSpec(
        "judge_model",
        None,
        "a second model that judge-based behaviors ask (answers_prompt); checked before the run, "
        "its digest recorded in the report",
        "NAME",
    ),
    OptionSpec(
        "repeat",
        "1",
        "ask each sample K times, with seeds seed, seed+1, ... (use a temperature above 0)",
        "K",
    ),
    OptionSpec("baseline", None, "compare this run with a saved report, sample by sample", "PATH"),
    OptionSpec("save_baseline", None, "save this run's report as a baseline file", "PATH"),
    OptionSpec(
        "gate",
        None,
        "fail the run (exit 1) unless a rate meets a threshold: 'copies_braces>=0.30', "
        "'truncates.upper<=0.5', 'copies_braces@0.8>=0.3' (may be repeated)",
        "GATE",
        multiple=True,
    ),
    OptionSpec(
        "max_regression",
        None,
        "with --baseline, fail the run when a behavior moved by more than TOL in the forbidden "
        "direction and McNemar's test says so: 'preserves_keys:0.05[:down|up|any]' (repeatable)",
        "BEHAVIOR:TOL[:DIR]",
        multiple=True,
    ),
    OptionSpec("alpha", "0.05", "significance level of --max-regression", "ALPHA"),
    OptionSpec(
        "min_consistency",
        "0.5",
        "with --repeat, a sample passes when at least this share of its repeats pass",
        "SHARE",
    ),
    OptionSpec(
        "report_md",
        None,
        "write a Markdown summary (also appended to $GITHUB_STEP_SUMMARY)",
        "PATH",
    ),
    OptionSpec("report_html", None, "write a self-contained HTML report with charts", "PATH"),
)
OPTIONS_BY_NAME: dict[str, OptionSpec] = {o.name: o for o in OPTIONS}


@dataclass(frozen=True)
class ErrorBudget:
    """How many failed samples a run may have and still count as complete."""

    count: int | None = 0  # an absolute number, or
    share: float | None = None  # a share of the evaluated samples

    def allows(self, errors: int, samples: int) -> bool:
        if self.share is not None:
            return errors <= self.share * samples
        return errors <= (self.count or 0)

    def describe(self) -> str:
        if self.share is not None:
            return f"{self.share:.1%} of samples"
        return f"{self.count} sample(s)"


@dataclass(frozen=True)
class Settings:
    """The resolved options of one run (frozen; resolved once on the controller and each worker)."""

    model: str
    # empty: not given (then OLLAMA_HOST, then the default, see client.resolve_host)
    ollama_hosts: tuple[str, ...]
    backend: Backend
    dataset: str
    dataset_split: str
    samples: int | None  # None: all rows
    sample_seed: int
    sample_ids: tuple[str, ...] | None
    report_json: Path | None
    prompt_template: str
    temperature: float
    seed: int
    num_predict: int
    num_ctx: int | None  # None: auto
    response_cache_mode: CacheMode
    response_cache_dir: Path | None
    request_timeout: float
    retries: int
    max_errors: ErrorBudget
    embedded_gguf: Path | None
    embedded_model_name: str | None
    embedded_threads: int | None  # None: auto
    judge_model: str | None
    concurrency: int | None  # None: auto
    repeat: int
    baseline: Path | None
    save_baseline: Path | None
    gates: tuple[Any, ...]  # mimicry.core.gates.ThresholdGate
    regressions: tuple[Any, ...]  # mimicry.core.gates.RegressionGate
    alpha: float
    min_consistency: float
    report_md: Path | None
    report_html: Path | None
    given: frozenset[str] = field(default=frozenset())  # option names the user set (CLI or ini)

    def was_given(self, name: str) -> bool:
        """Whether the user set this option (on the command line or in the ini file)."""
        return name in self.given


_T = TypeVar("_T", int, float)
_E = TypeVar("_E", bound=enum.Enum)


def resolve(cli: Mapping[str, object], ini: Mapping[str, str | None]) -> Settings:
    """Resolve every option: the command line, then the ini file, then the built-in default.

    ``cli`` holds parsed command-line values where ``None`` means "not given"; ``ini`` holds the raw
    ini strings where ``None`` or ``""`` means "not set". Raises :class:`SettingsError` naming the
    offending option and value.
    """
    raw: dict[str, str | None] = {}
    given: set[str] = set()
    for opt in OPTIONS:
        cli_value = cli.get(opt.name)
        ini_value = ini.get(opt.name)
        if cli_value is not None:
            if isinstance(cli_value, list | tuple):
                raw[opt.name] = "\n".join(str(v) for v in cli_value)
            else:
                raw[opt.name] = str(cli_value)
            given.add(opt.name)
        elif ini_value not in (None, ""):
            raw[opt.name] = ini_value
            given.add(opt.name)
        else:
            raw[opt.name] = opt.default

    def text(name: str) -> str | None:
        return raw[name]

    def req(name: str) -> str:
        value = raw[name]
        assert value is not None, name  # every option read with req() has a built-in default
        return value

    samples_text = req("samples").strip().lower()
    samples = None if samples_text == "all" else _int("samples", samples_text, minimum=1)
    ids_text = text("sample_ids")
    sample_ids = None
    if ids_text is not None:
        sample_ids = tuple(s.strip() for s in ids_text.split(",") if s.strip())
        if not sample_ids:
            raise SettingsError(
                f"--sample-ids {ids_text!r}: no ids given; pass e.g. --sample-ids 30192,53567"
            )
    template = req("prompt_template")
    if template not in TEMPLATES:
        raise SettingsError(
            f"--prompt-template {template!r}: unknown template; "
            f"choose one of {', '.join(sorted(TEMPLATES))}"
        )
    num_ctx_text = req("num_ctx").strip().lower()
    gates, regressions, alpha = _gates(text("gate"), text("max_regression"), req("alpha"), given)
    min_consistency = _float("min_consistency", req("min_consistency"), minimum=0.0)
    if min_consistency > 1:
        raise SettingsError(f"--min-consistency {min_consistency!r}: must be between 0 and 1")
    if regressions and text("baseline") is None:
        raise SettingsError(
            "--max-regression needs a baseline to compare with: pass --baseline PATH "
            "(a report saved earlier with --save-baseline or --report-json)"
        )
    return Settings(
        model=req("model"),
        ollama_hosts=tuple(
            h.strip() for h in (text("ollama_host") or "").splitlines() if h.strip()
        ),
        backend=_enum(Backend, "backend", req("backend")),
        dataset=req("dataset"),
        dataset_split=req("dataset_split"),
        samples=samples,
        sample_seed=_int("sample_seed", req("sample_seed")),
        sample_ids=sample_ids,
        report_json=_path(text("report_json")),
        prompt_template=template,
        temperature=_float("temperature", req("temperature"), minimum=0.0),
        seed=_int("seed", req("seed")),
        num_predict=_int("num_predict", req("num_predict"), minimum=1),
        num_ctx=None if num_ctx_text == "auto" else _int("num_ctx", num_ctx_text, minimum=64),
        response_cache_mode=_enum(CacheMode, "response_cache_mode", req("response_cache_mode")),
        response_cache_dir=_path(text("response_cache_dir")),
        request_timeout=_float("request_timeout", req("request_timeout"), minimum=0.001),
        retries=_int("retries", req("retries"), minimum=0),
        max_errors=parse_error_budget(req("max_errors")),
        embedded_gguf=_path(text("embedded_gguf")),
        embedded_model_name=text("embedded_model_name"),
        embedded_threads=_int_or_auto("embedded_threads", req("embedded_threads")),
        judge_model=text("judge_model"),
        concurrency=_int_or_auto("concurrency", req("concurrency")),
        repeat=_int("repeat", req("repeat"), minimum=1),
        baseline=_path(text("baseline")),
        save_baseline=_path(text("save_baseline")),
        gates=gates,
        regressions=regressions,
        alpha=alpha,
        min_consistency=min_consistency,
        report_md=_path(text("report_md")),
        report_html=_path(text("report_html")),
        given=frozenset(given),
    )


def _gates(
    gate_text: str | None, regression_text: str | None, alpha_text: str, given: set[str]
) -> tuple[tuple[Any, ...], tuple[Any, ...], float]:
    """Parse gate strings (one per line) with the messages of mimicry.core.gates."""
    from mimicry.core.gates import GateError, parse_alpha, parse_gate, parse_regression

    def source(name: str) -> str:
        return OPTIONS_BY_NAME[name].flag

    try:
        alpha = parse_alpha(alpha_text, source=source("alpha"))
        gates = tuple(
            parse_gate(line.strip(), source=source("gate"))
            for line in (gate_text or "").splitlines()
            if line.strip()
        )
        regressions = tuple(
            parse_regression(line.strip(), alpha=alpha, source=source("max_regression"))
            for line in (regression_text or "").splitlines()
            if line.strip()
        )
    except GateError as exc:
        raise SettingsError(str(exc)) from None
    return gates, regressions, alpha


def parse_error_budget(value: str) -> ErrorBudget:
    """``"5"`` is a count, ``"2%"`` or ``"0.02"`` a share of the evaluated samples."""
    text = value.strip()
    flag = OPTIONS_BY_NAME["max_errors"].flag
    try:
        if text.endswith("%"):
            share = float(text[:-1]) / 100
        elif "." in text:
            share = float(text)
        else:
            count = int(text)
            if count < 0:
                raise ValueError
            return ErrorBudget(count=count)
    except ValueError:
        raise SettingsError(
            f"{flag} {value!r}: expected a count (5), a percentage (2%) or a share (0.02)"
        ) from None
    if not 0.0 <= share <= 1.0:
        raise SettingsError(f"{flag} {value!r}: a share must be between 0 and 1 (0% to 100%)")
    return ErrorBudget(count=None, share=share)


def _flag(name: str) -> str:
    return OPTIONS_BY_NAME[name].flag


def _convert(
    name: str, value: str, convert: Callable[[str], _T], kind: str, minimum: _T | None = None
) -> _T:
    try:
        result = convert(value.strip())
    except ValueError:
        raise SettingsError(f"{_flag(name)} {value!r}: expected {kind}") from None
    if minimum is not None and result < minimum:
        raise SettingsError(f"{_flag(name)} {value!r}: must be at least {minimum}")
    return result


def _int_or_auto(name: str, value: str) -> int | None:
    """A positive int, or None for ``auto``."""
    return None if value.strip().lower() == "auto" else _int(name, value, minimum=1)


def _int(name: str, value: str, minimum: int | None = None) -> int:
    return _convert(name, value, int, "a whole number", minimum)


def _float(name: str, value: str, minimum: float | None = None) -> float:
    return _convert(name, value, float, "a number", minimum)


def _enum(cls: type[_E], name: str, value: str) -> _E:
    try:
        return cls(value.strip().lower())
    except ValueError:
        accepted = ", ".join(str(m.value) for m in cls)
        raise SettingsError(
            f"{_flag(name)} {value!r}: unknown value; choose one of {accepted}"
        ) from None


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None
