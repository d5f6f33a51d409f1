"""The run plan: the run-wide facts, decided once on the controller before any test runs.

:func:`plan_run` chooses and prepares the dataset (a row store every process reads cheaply),
selects the samples, resolves the host (and decides on the embedded server when no Ollama
answers), preflights the server, the model and the judge model, and sizes ``num_ctx`` (one value
for the whole run, so a real Ollama never reloads the model between requests). The
resulting :class:`RunPlan` is plain data: the plugin hands it to xdist workers through
``workerinput``, so workers never preflight, start servers or choose samples themselves.
This module imports neither pytest nor ollama.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from mimicry.exitcodes import ExitStatus
from mimicry.settings import Backend, Settings

BackendName = Literal["ollama", "embedded"]

#: Characters per token assumed when sizing num_ctx from the longest row. Real tokenizers give
#: 3.2 to 4 for these rows; a low figure over-sizes the window rather than cut.
CHARS_PER_TOKEN_ESTIMATE = 3.0
#: Room kept beyond prompt and reply for the chat template's own tokens.
TEMPLATE_TOKEN_ALLOWANCE = 64
CTX_GRANULARITY = 1024
#: num_ctx when the server does not say the model's context length.
FALLBACK_CONTEXT_LENGTH = 32768
PROBE_TIMEOUT_S = 1.5


class PlanError(Exception):
    """The run cannot start; ``exit_status`` says whether it is a usage or a server problem."""

    def __init__(self, message: str, *, exit_status: ExitStatus) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def usage_error(message: str) -> PlanError:
    return PlanError(message, exit_status=ExitStatus.USAGE_ERROR)


def server_error(message: str) -> PlanError:
    return PlanError(message, exit_status=ExitStatus.SERVER_UNUSABLE)


@dataclass(frozen=True)
class RunPlan:
    """Everything a worker needs to reproduce the controller's view of the run (plain data)."""

    run_id: str
    started_at: str
    backend: BackendName
    host: str
    hosts: list[str]  # every server; sample i goes to hosts[i % len(hosts)]
    model: str
    model_info: dict[str, Any]
    options: dict[str, Any]
    prompt_template: str
    dataset: dict[str, Any]  # id_or_path, split, n_rows, label, bundled
    rows_path: str  # the row store every process reads the rows from
    indices: list[int]
    sample_ids: list[str]
    cache_dir: str | None
    cache_mode: str
    num_ctx_source: str  # "auto" or "option"
    concurrency: int
    judge: dict[str, Any] | None = None  # {"model", "model_info"} with --judge-model
    embedded: dict[str, Any] | None = None  # how to start the embedded server, when it is used
    package_version: str = field(default_factory=lambda: _package_version())
    notes: list[str] = field(default_factory=list)

    @property
    def num_ctx(self) -> int:
        return int(self.options["num_ctx"])

    @property
    def model_digest(self) -> str:
        return str(self.model_info.get("digest", ""))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunPlan:
        return cls(**dict(data))

    def report_run(self) -> dict[str, Any]:
        """The ``run`` section of the JSON report (without duration and completion)."""
        return {
            "run_id": self.run_id,
            "backend": self.backend,
            "model": self.model,
            "model_digest": self.model_digest,
            "model_info": self.model_info,
            "judge_model": None if self.judge is None else self.judge["model"],
            "judge_model_info": None if self.judge is None else self.judge["model_info"],
            "host": self.host,
            "hosts": self.hosts,
            "options": self.options,
            "num_ctx_source": self.num_ctx_source,
            "concurrency": self.concurrency,
            "prompt_template": self.prompt_template,
            "dataset": {**self.dataset, "sample_ids": self.sample_ids},
            "response_cache_mode": self.cache_mode,
            "started_at": self.started_at,
            "package_version": self.package_version,
            "notes": self.notes,
        }


def _package_version() -> str:
    import mimicry

    return str(mimicry.__version__)


def size_num_ctx(longest_prompt_chars: int, num_predict: int, context_length: int | None) -> int:
    """A context window for the longest selected row and a full reply, within the model's."""
    needed = (
        math.ceil(longest_prompt_chars / CHARS_PER_TOKEN_ESTIMATE)
        + num_predict
        + TEMPLATE_TOKEN_ALLOWANCE
    )
    rounded = math.ceil(needed / CTX_GRANULARITY) * CTX_GRANULARITY
    return min(rounded, context_length or FALLBACK_CONTEXT_LENGTH)


def request_options(settings: Settings, num_ctx: int) -> dict[str, Any]:
    """The options sent with every request (all but num_ctx are part of every cache key)."""
    return {
        "temperature": settings.temperature,
        "seed": settings.seed,
        "num_predict": settings.num_predict,
        "num_ctx": num_ctx,
    }


@dataclass
class PlannedRun:
    """The plan and the open row store."""

    plan: RunPlan
    rows: Any  # mimicry.dataset.RowStore


def server_answers(host: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether an Ollama-compatible server answers ``GET /api/version`` at ``host``."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{host}/api/version", timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (OSError, ValueError, urllib.error.URLError):
        return False


def plan_run(
    settings: Settings,
    *,
    cache_dir: Path | None,
    workers: int,
    environ: Mapping[str, str] | None = None,
    dry_run: bool = False,
) -> PlannedRun:
    """Decide the run-wide facts. Raises :class:`PlanError` with one clear message.

    ``workers`` is the number of processes that will run tests (xdist workers, or 1).
    ``cache_dir`` is where replies are kept (None: decided later by the caller). ``dry_run``
    (``--collect-only`` and the like) plans without a server.
    """
    from mimicry.client import resolve_host
    from mimicry.dataset import DatasetError, choose_dataset, open_rows, select_indices

    env = dict(os.environ if environ is None else environ)
    try:
        choice = choose_dataset(
            settings.dataset if settings.was_given("dataset") else None,
            settings.dataset_split,
            env,
        )
        rows = open_rows(choice, environ=env)
        ids = [str(value) for value in rows.ids]
        indices = select_indices(
            ids,
            samples=settings.samples,
            samples_given=settings.was_given("samples"),
            seed=settings.sample_seed,
            sample_ids=settings.sample_ids,
        )
        _check_unique_ids(choice.spec.id_or_path, ids, indices)
        # the window fits the selected rows; a stored reply is reused by any run whose window
        # would have held its whole exchange (mimicry.run.replies.reusable), so the selection
        # decides the window without deciding which replies are reused
        longest = rows.longest_of(indices)  # an unreadable selected row is a clear error here
    except DatasetError as exc:
        raise usage_error(str(exc)) from None
    try:
        resolved = [resolve_host(h, env) for h in settings.ollama_hosts] or [
            resolve_host(None, env)
        ]
    except ValueError as exc:
        raise usage_error(str(exc)) from None
    hosts = list(dict.fromkeys(h for h, _ in resolved))
    host, explicit = hosts[0], any(given for _, given in resolved)
    notes = [choice.note] if choice.note else []
    common: dict[str, Any] = {
        "run_id": uuid.uuid4().hex[:12],
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "prompt_template": settings.prompt_template,
        "dataset": {
            "id_or_path": choice.spec.id_or_path,
            "split": choice.spec.split,
            "n_rows": len(rows),
            "label": choice.label,
            "bundled": choice.bundled,
        },
        "rows_path": str(rows.path),
        "indices": indices,
        "sample_ids": [ids[i] for i in indices],
        "cache_dir": None if cache_dir is None else str(cache_dir),
        "cache_mode": settings.response_cache_mode.value,
        "num_ctx_source": "option" if settings.num_ctx else "auto",
    }
    if dry_run:
        num_ctx = settings.num_ctx or size_num_ctx(longest, settings.num_predict, None)
        plan = RunPlan(
            backend="ollama",
            host=host,
            hosts=hosts,
            model=settings.model,
            model_info={},
            options=request_options(settings, num_ctx),
            concurrency=settings.concurrency or max(1, workers),
            notes=notes,
            **common,
        )
        return PlannedRun(plan, rows)

    backend = _choose_backend(settings, host, explicit)
    if backend == "embedded":
        return _plan_embedded(settings, common, notes, rows, workers, longest, host)
    info = _preflight(settings, host, settings.model, env)
    for other in hosts[1:]:
        other_info = _preflight(settings, other, settings.model, env)
        if other_info.get("digest") != info.get("digest"):
            raise usage_error(
                f"--ollama-host {other!r} serves {settings.model!r} with digest "
                f"{str(other_info.get('digest'))[:12]}…, but {host!r} serves "
                f"{str(info.get('digest'))[:12]}…: every host must serve the same model "
                "(run the same `ollama pull` on each)"
            )
    judge = None
    if settings.judge_model is not None:
        judge = {
            "model": settings.judge_model,
            "model_info": _preflight(settings, host, settings.judge_model, env),
        }
    context_length = info.get("context_length")
    num_ctx = settings.num_ctx or size_num_ctx(longest, settings.num_predict, context_length)
    if settings.num_ctx and context_length and settings.num_ctx > context_length:
        notes.append(
            f"--num-ctx {settings.num_ctx} is above the model's context length {context_length}"
        )
    plan = RunPlan(
        backend="ollama",
        host=host,
        hosts=hosts,
        model=settings.model,
        model_info=info,
        options=request_options(settings, num_ctx),
        concurrency=settings.concurrency or max(1, workers),
        judge=judge,
        notes=notes,
        **common,
    )
    return PlannedRun(plan, rows)


def _check_unique_ids(dataset: str, ids: list[str], indices: list[int]) -> None:
    """Refuse a selection in which two rows have the same id: results, records, baselines and
    ``--sample-ids`` name a sample by its id, so one row's verdicts would land on the other's."""
    from mimicry.dataset import DatasetError

    first: dict[str, int] = {}
    for index in indices:
        earlier = first.setdefault(ids[index], index)
        if earlier != index:
            raise DatasetError(
                f"--dataset {dataset!r}: rows {earlier} and {index} have the same id "
                f"{ids[index]!r}; a run names its samples by id, so the selected rows' ids must "
                "be unique: fix the file, or choose rows with --sample-ids"
            )


def _choose_backend(settings: Settings, host: str, explicit: bool) -> BackendName:
    if settings.backend is Backend.EMBEDDED:
        return "embedded"
    if settings.backend is Backend.OLLAMA or explicit:
        return "ollama"
    return "ollama" if server_answers(host) else "embedded"


def _plan_embedded(
    settings: Settings,
    common: dict[str, Any],
    notes: list[str],
    rows: Any,
    workers: int,
    longest: int,
    host: str,
) -> PlannedRun:
    """The plan of a run on the embedded model. Its server is started by the run, and only
    when a reply has to be asked (:meth:`mimicry.run.session.EvalRun.ensure_server`)."""
    from mimicry.embedded import embedded_available, embedded_model_info
    from mimicry.embedded.model import BUNDLED_MODEL_NAME

    why_not = embedded_available() if settings.embedded_gguf is None else None
    if why_not is not None:
        raise server_error(
            f"no Ollama server answers at {host!r} and the embedded model is not installed: "
            f"{why_not}"
        )
    model_name = settings.embedded_model_name
    if settings.embedded_gguf is not None and model_name is None and settings.was_given("model"):
        model_name = settings.model
    if (
        settings.embedded_gguf is None
        and settings.was_given("model")
        and settings.model != BUNDLED_MODEL_NAME
    ):
        where = (
            ""
            if settings.backend is Backend.EMBEDDED
            else f"no Ollama server answers at {host!r} and "
        )
        raise server_error(
            f"--model {settings.model!r}: {where}the embedded server serves only the bundled "
            f"{BUNDLED_MODEL_NAME!r}. Start Ollama (or pass --ollama-host), drop --model to "
            "measure the bundled model, or pass --embedded-gguf PATH for your own GGUF file"
        )
    from mimicry.embedded.engine import default_threads
    from mimicry.embedded.launcher import slots_for

    concurrency = settings.concurrency or max(1, workers)
    num_ctx = settings.num_ctx or size_num_ctx(longest, settings.num_predict, None)
    # llama.cpp's arithmetic, and so a greedy reply, depends on its thread count: it is decided
    # here, recorded with the model and part of every cache key (see EvalRun.cache_digest)
    threads = settings.embedded_threads or default_threads().threads
    embedded = {
        "gguf": None if settings.embedded_gguf is None else str(settings.embedded_gguf),
        "model_name": model_name,
        "parallel": slots_for(concurrency),
        "ctx_size": num_ctx,
        "threads": threads,
    }
    try:
        info = embedded_model_info(_embedded_spec(embedded))
    except (OSError, ValueError) as exc:
        raise server_error(f"the embedded model cannot be read: {exc}") from None
    info = {**info, "engine": {"threads": threads, "slots": embedded["parallel"]}}
    model = str(info.get("name") or model_name or BUNDLED_MODEL_NAME)
    judge = None
    if settings.judge_model is not None:
        if settings.judge_model != model:
            raise server_error(
                f"--judge-model {settings.judge_model!r}: the embedded server serves only "
                f"{model!r}; name it as the judge, or point the run at Ollama (--ollama-host)"
            )
        judge = {"model": model, "model_info": info}
    notes.append(
        f"embedded backend: {model} served by llama.cpp with {threads} thread(s) (GGUF sha256 "
        f"{info.get('digest')}); these are that model's numbers, not {settings.model}'s"
    )
    plan = RunPlan(
        backend="embedded",
        host="",
        hosts=[],
        model=model,
        model_info=info,
        options=request_options(settings, num_ctx),
        concurrency=concurrency,
        judge=judge,
        embedded=embedded,
        notes=notes,
        **common,
    )
    return PlannedRun(plan, rows)


def _embedded_spec(embedded: Mapping[str, Any]) -> Any:
    from mimicry.embedded import EmbeddedSpec

    gguf = embedded.get("gguf")
    threads = embedded.get("threads")
    return EmbeddedSpec(
        gguf=None if gguf is None else Path(gguf),
        model_name=embedded.get("model_name"),
        parallel=int(embedded.get("parallel") or 1),
        ctx_size=int(embedded.get("ctx_size") or 8192),
        threads=int(threads) if threads else None,
    )


def start_embedded(embedded: Mapping[str, Any]) -> Any:
    """Start the embedded server the plan describes; raises :class:`PlanError` when it fails."""
    from mimicry.embedded import EmbeddedServer, EmbeddedServerError

    server = EmbeddedServer(_embedded_spec(embedded))
    try:
        server.start()
    except EmbeddedServerError as exc:
        raise server_error(str(exc)) from None
    return server


def _preflight(settings: Settings, host: str, model: str, env: Mapping[str, str]) -> dict[str, Any]:
    from mimicry.client import ModelClient, OllamaError, RetryPolicy, auth_headers

    retry = RetryPolicy(attempts=2, timeout_s=min(settings.request_timeout, 30.0))
    try:
        with ModelClient(host, retry=retry, headers=auth_headers(env)) as client:
            info = client.preflight(model)
    except OllamaError as exc:
        raise server_error(str(exc)) from None
    return info.to_dict()
