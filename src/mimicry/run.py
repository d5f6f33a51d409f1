"""The run plan: the run-wide facts, decided once on the controller before any test runs.

:func:`plan_run` resolves the host (and starts the embedded server when no Ollama answers),
preflights the server and model, loads the dataset, selects the samples and sizes ``num_ctx``.
The resulting :class:`RunPlan` is plain data: the plugin hands it to xdist workers through
``workerinput``, so workers never preflight, start servers or choose samples themselves.
This module imports neither pytest nor ollama (the client module wraps ollama).
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

from mimicry import __version__
from mimicry.dataset import DatasetSpec, estimate_prompt_chars, load_rows, select_indices
from mimicry.settings import Backend, Settings

BackendName = Literal["ollama", "embedded"]

#: Characters per token assumed when sizing num_ctx from the longest selected prompt. Real
#: tokenizers give 3.2 to 4 for these rows; a low figure over-sizes the window rather than cut.
CHARS_PER_TOKEN_ESTIMATE = 3.0
#: Room kept beyond prompt and reply for the chat template's own tokens.
TEMPLATE_TOKEN_ALLOWANCE = 64
CTX_GRANULARITY = 1024
#: num_ctx when the server does not say the model's context length.
FALLBACK_CONTEXT_LENGTH = 32768
PROBE_TIMEOUT_S = 1.5


class PlanError(Exception):
    """The run cannot start; ``exit_code`` says whether it is a usage (4) or server (3) problem."""

    def __init__(self, message: str, *, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def usage_error(message: str) -> PlanError:
    return PlanError(message, exit_code=4)


def server_error(message: str) -> PlanError:
    return PlanError(message, exit_code=3)


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
    dataset: dict[str, Any]  # id_or_path, split, n_rows
    indices: list[int]
    sample_ids: list[Any]
    cache_dir: str | None
    cache_mode: str
    num_ctx_source: str  # "auto" or "option"
    package_version: str = __version__
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
            "host": self.host,
            "hosts": self.hosts,
            "options": self.options,
            "num_ctx_source": self.num_ctx_source,
            "prompt_template": self.prompt_template,
            "dataset": {**self.dataset, "sample_ids": self.sample_ids},
            "response_cache_mode": self.cache_mode,
            "started_at": self.started_at,
            "package_version": self.package_version,
            "notes": self.notes,
        }


def size_num_ctx(longest_prompt_chars: int, num_predict: int, context_length: int | None) -> int:
    """A context window for the longest selected prompt and a full reply, within the model's."""
    needed = (
        math.ceil(longest_prompt_chars / CHARS_PER_TOKEN_ESTIMATE)
        + num_predict
        + TEMPLATE_TOKEN_ALLOWANCE
    )
    rounded = math.ceil(needed / CTX_GRANULARITY) * CTX_GRANULARITY
    return min(rounded, context_length or FALLBACK_CONTEXT_LENGTH)


def request_options(settings: Settings, num_ctx: int) -> dict[str, Any]:
    """The options sent with every request (and part of every cache key)."""
    return {
        "temperature": settings.temperature,
        "seed": settings.seed,
        "num_predict": settings.num_predict,
        "num_ctx": num_ctx,
    }


@dataclass
class PlannedRun:
    """The plan, the loaded dataset, and the embedded server to stop at the end (if one started)."""

    plan: RunPlan
    dataset: Any
    server: Any | None  # mimicry.embedded.launcher.EmbeddedServer


def server_answers(host: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether an Ollama-compatible server answers ``GET /api/version`` at ``host``."""
    import httpx

    try:
        response = httpx.get(f"{host}/api/version", timeout=timeout_s)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def plan_run(
    settings: Settings,
    *,
    cache_root: Path | None,
    workers: int,
    environ: Mapping[str, str] | None = None,
    collect_only: bool = False,
) -> PlannedRun:
    """Decide the run-wide facts. Raises :class:`PlanError` with one clear message.

    ``workers`` is the number of processes that will ask for replies (xdist workers, or 1): the
    embedded server gets that many parallel slots. ``cache_root`` None leaves ``cache_dir`` to
    be filled in by the caller (the plugin puts it under pytest's cache dir).
    """
    from mimicry.client import resolve_host
    from mimicry.dataset import DatasetError

    env = dict(os.environ if environ is None else environ)
    spec = DatasetSpec(settings.dataset, settings.dataset_split)
    try:
        ds = load_rows(spec)
        ids = list(ds["id"])
        indices = select_indices(
            ids,
            samples=settings.samples,
            samples_given=settings.was_given("samples"),
            seed=settings.sample_seed,
            sample_ids=settings.sample_ids,
        )
        longest = estimate_prompt_chars(ds, indices, spec)
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
    common: dict[str, Any] = {
        "run_id": uuid.uuid4().hex[:12],
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "prompt_template": settings.prompt_template,
        "dataset": {
            "id_or_path": settings.dataset,
            "split": settings.dataset_split,
            "n_rows": len(ds),
        },
        "indices": indices,
        "sample_ids": [ids[i] for i in indices],
        "cache_dir": _cache_dir(settings, cache_root),
        "cache_mode": settings.response_cache_mode.value,
        "num_ctx_source": "option" if settings.num_ctx else "auto",
    }
    if collect_only:
        num_ctx = settings.num_ctx or size_num_ctx(longest, settings.num_predict, None)
        plan = RunPlan(
            backend="ollama",
            host=host,
            hosts=hosts,
            model=settings.model,
            model_info={},
            options=request_options(settings, num_ctx),
            **common,
        )
        return PlannedRun(plan, ds, None)

    backend = _choose_backend(settings, host, explicit)
    server = None
    notes: list[str] = []
    model = settings.model
    if backend == "embedded":
        server = _start_embedded(settings, host, workers, longest)
        host, model = server.url, server.model_name
        hosts = [host]
    try:
        info = _preflight(settings, host, model, env)
        for other in hosts[1:] if server is None else []:
            other_info = _preflight(settings, other, model, env)
            if other_info.get("digest") != info.get("digest"):
                raise usage_error(
                    f"--ollama-host {other!r} serves {model!r} with digest "
                    f"{str(other_info.get('digest'))[:12]}…, but {host!r} serves "
                    f"{str(info.get('digest'))[:12]}…: every host must serve the same model "
                    "(run the same `ollama pull` on each)"
                )
    except BaseException:
        if server is not None:
            server.stop()
        raise
    if server is not None:
        notes.append(
            f"embedded backend: {model} served by llama.cpp (GGUF sha256 {info.get('digest')}); "
            f"these are that model's numbers, not {settings.model}'s"
        )
    context_length = info.get("context_length")
    num_ctx = settings.num_ctx or size_num_ctx(longest, settings.num_predict, context_length)
    if settings.num_ctx and context_length and settings.num_ctx > context_length:
        notes.append(
            f"--num-ctx {settings.num_ctx} is above the model's context length {context_length}"
        )
    plan = RunPlan(
        backend=backend,
        host=host,
        hosts=hosts,
        model=model,
        model_info=info,
        options=request_options(settings, num_ctx),
        notes=notes,
        **common,
    )
    return PlannedRun(plan, ds, server)


def _cache_dir(settings: Settings, cache_root: Path | None) -> str | None:
    """The response cache's folder: the option, else under ``cache_root`` (None: decided later)."""
    if settings.response_cache_dir is not None:
        return str(settings.response_cache_dir)
    return str(cache_root / "responses") if cache_root is not None else None


def _choose_backend(settings: Settings, host: str, explicit: bool) -> BackendName:
    if settings.backend is Backend.EMBEDDED:
        return "embedded"
    if settings.backend is Backend.OLLAMA or explicit:
        return "ollama"
    return "ollama" if server_answers(host) else "embedded"


def _start_embedded(settings: Settings, host: str, workers: int, longest: int) -> Any:
    from mimicry.embedded.launcher import (
        EmbeddedServer,
        EmbeddedServerError,
        EmbeddedSpec,
        embedded_available,
    )
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
    ctx_size = settings.num_ctx or size_num_ctx(longest, settings.num_predict, None)
    spec = EmbeddedSpec(
        gguf=settings.embedded_gguf,
        model_name=model_name,
        parallel=max(1, workers),
        ctx_size=ctx_size,
    )
    server = EmbeddedServer(spec)
    try:
        server.start()
    except EmbeddedServerError as exc:
        raise server_error(f"the embedded server did not start: {exc}") from None
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
