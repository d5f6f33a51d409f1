"""The llama.cpp engine behind the embedded server, and Ollama's prompt-truncation rule.

`LlamaCppEngine` loads a GGUF file with xllamacpp, which starts llama.cpp's own HTTP server on
a random loopback port, protected by a random API key. The engine talks to it with an async
httpx client: llama.cpp's native endpoints give exact control (template rendering,
tokenization, completion on a token list, per-request sampling) and its slots serve several
requests at once, while the Ollama front (app.py) never blocks its event loop.

`Engine` is the protocol the front needs, so the front can be tested with a fake engine.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import httpx

from mimicry.core.samples import context_shift_prompt_limit

logger = logging.getLogger(__name__)

DoneReason = Literal["stop", "length"]
LogLevel = Literal["debug", "info", "warning", "error"]

"""Ollama's default `num_keep` (api.DefaultOptions): tokens always kept at the prompt's start."""

# llama.cpp's log verbosity: messages at or below this level are printed (1 = errors only).
_LLAMA_VERBOSITY: Final[Mapping[LogLevel, int]] = {
    "debug": 4,
    "info": 3,
    "warning": 1,
    "error": 1,
}


class EngineError(RuntimeError):
    """llama.cpp failed or answered something unexpected."""

    def __init__(self, message: str, *, status_code: int = 500) -> None:
        super().__init__(message)
        self.status_code = status_code


def truncate_prompt(
    tokens: Sequence[int], *, num_ctx: int, num_keep: int, adds_bos: bool
) -> list[int]:
    """Cut a tokenized prompt the way Ollama does when it does not fit in `num_ctx`.

    Ollama (llm/llama_server.go, `completionPromptForRequest`) leaves a prompt of up to
    `num_ctx - 1` tokens alone. A longer one keeps its first `num_keep` tokens (one more when
    the tokenizer adds a BOS token; a negative `num_keep` means all of them; never more than
    `num_ctx - 1`), then drops the tokens right after them until the prompt is
    `context_shift_prompt_limit(num_ctx, num_keep)` tokens long: the start and the end
    survive, the middle goes.
    """
    if num_ctx <= 1 or len(tokens) <= num_ctx - 1:
        return list(tokens)
    keep = len(tokens) if num_keep < 0 else num_keep
    if adds_bos:
        keep += 1
    keep = min(keep, num_ctx - 1)
    limit = context_shift_prompt_limit(num_ctx, keep)
    discard = len(tokens) - limit
    return [*tokens[:keep], *tokens[keep + discard :]]


@dataclass(frozen=True)
class SamplingOptions:
    """Per-request sampling, with Ollama's defaults (api.DefaultOptions), not llama.cpp's."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    typical_p: float = 1.0
    repeat_last_n: int = 64
    repeat_penalty: float = 1.1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    mirostat: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    seed: int = -1
    stop: tuple[str, ...] = ()

    def to_llama(self) -> dict[str, Any]:
        """The llama.cpp `/completion` fields for these options (same names, stop as a list)."""
        fields = asdict(self)
        fields["stop"] = list(self.stop)
        return fields


@dataclass(frozen=True)
class CompletionChunk:
    """A piece of generated text; the last chunk has `done` set and the counts and timings."""

    text: str
    tokens: tuple[int, ...] = ()
    done: bool = False
    done_reason: DoneReason | None = None
    prompt_eval_count: int = 0
    prompt_eval_ms: float = 0.0
    eval_count: int = 0
    eval_ms: float = 0.0


class Engine(Protocol):
    """What the Ollama front needs from a model engine."""

    @property
    def slot_context(self) -> int:
        """The context size of one parallel slot: the largest `num_ctx` a request can get."""
        ...

    @property
    def parallel(self) -> int:
        """How many requests the engine generates for at once."""
        ...

    @property
    def adds_bos(self) -> bool:
        """Whether tokenization prepends a BOS token (Ollama keeps one more token then)."""
        ...

    async def start(self) -> None:
        """Get ready to serve (called once, in the serving event loop)."""
        ...

    async def aclose(self) -> None:
        """Release what `start` acquired."""
        ...

    async def render_chat(self, messages: Sequence[Mapping[str, str]]) -> str:
        """Apply the model's chat template to messages, ending with the assistant's turn."""
        ...

    async def tokenize(self, text: str) -> list[int]:
        """Tokenize a rendered prompt (special tokens parsed, BOS added if the model wants)."""
        ...

    @property
    def settings(self) -> Mapping[str, int]:
        """How the engine runs (threads, slots, context...), as reported by /api/version."""
        ...

    def complete(
        self,
        prompt: Sequence[int],
        *,
        sampling: SamplingOptions,
        max_tokens: int,
        json_schema: Mapping[str, Any] | None,
        stream: bool = True,
    ) -> AsyncIterator[CompletionChunk]:
        """Generate up to `max_tokens` tokens after `prompt`, as chunks.

        With `stream` false the engine may yield the whole reply as one final chunk: nobody
        reads the pieces, so nothing has to be done per token while the model computes.
        """
        ...


@dataclass(frozen=True)
class EngineConfig:
    """How to load the model into llama.cpp."""

    gguf: Path
    parallel: int = 1
    ctx_size: int = 8192  # per slot
    threads: int = 1  # for generation and for prompt processing alike
    log_level: LogLevel = "warning"


def _llama_error_message(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error)
        if error is not None:
            return str(error)
    return response.text[:500]


class LlamaCppEngine:
    """llama.cpp (through xllamacpp) serving one GGUF model with `parallel` slots."""

    def __init__(self, config: EngineConfig) -> None:
        """Load the model; this blocks for as long as llama.cpp takes (well under a second
        for the bundled 98 MB SmolLM2)."""
        import xllamacpp  # the [embedded] extra: imported only when an engine is built

        if config.parallel < 1:
            raise ValueError(f"parallel={config.parallel!r}: must be at least 1")
        if config.ctx_size < 16:
            raise ValueError(f"ctx_size={config.ctx_size!r}: must be at least 16 tokens")
        if config.threads < 1:
            raise ValueError(f"threads={config.threads!r}: must be at least 1")
        params = xllamacpp.CommonParams()
        params.model.path = str(config.gguf)
        # llama.cpp splits n_ctx evenly across the slots.
        params.n_ctx = config.ctx_size * config.parallel
        params.n_parallel = config.parallel
        params.cpuparams.n_threads = config.threads
        params.cpuparams_batch.n_threads = config.threads
        # llama.cpp keeps finished prompts in host memory (up to 8 GiB by default) to reuse
        # them; every sample's prompt is new, so that cache only grows: keep memory flat
        params.cache_ram_mib = 0
        params.verbosity = _LLAMA_VERBOSITY[config.log_level]
        params.ui = False
        # llama.cpp's own server listens on loopback; the key keeps other local users out.
        self._api_key = secrets.token_urlsafe(24)
        params.api_keys = [self._api_key]
        try:
            self._server = xllamacpp.Server(params)
        except Exception as exc:
            raise EngineError(
                f"llama.cpp could not load {str(config.gguf)!r}: {exc}; check that the file "
                "is a complete GGUF model (re-download it) and that there is enough memory "
                f"for ctx_size={config.ctx_size} x parallel={config.parallel}"
            ) from exc
        self._base_url: str = self._server.listening_address
        self._config = config
        self._settings = {
            "threads": config.threads,
            "threads_batch": config.threads,
            "parallel": config.parallel,
            "ctx_size": config.ctx_size,
            "n_batch": int(params.n_batch),
            "n_ubatch": int(params.n_ubatch),
        }
        self._slot_context = config.ctx_size
        self._adds_bos = False
        self._client: httpx.AsyncClient | None = None

    @property
    def slot_context(self) -> int:
        """The context size of one slot."""
        return self._slot_context

    @property
    def parallel(self) -> int:
        """The number of slots."""
        return self._config.parallel

    @property
    def adds_bos(self) -> bool:
        """Whether tokenization prepends a BOS token (known after `start`)."""
        return self._adds_bos

    @property
    def settings(self) -> Mapping[str, int]:
        """Threads, slots and batch sizes llama.cpp was started with."""
        return {**self._settings, "ctx_size": self._slot_context}

    async def start(self) -> None:
        """Open the HTTP client (in the serving event loop) and read llama.cpp's settings."""
        self._client = httpx.AsyncClient(
            base_url=self._base_url,
            headers={"Authorization": f"Bearer {self._api_key}"},
            # Generation can take minutes; connecting to loopback cannot.
            timeout=httpx.Timeout(None, connect=10.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
            trust_env=False,
        )
        props = await self._get_json("/props")
        settings = props.get("default_generation_settings")
        if isinstance(settings, dict) and isinstance(settings.get("n_ctx"), int):
            self._slot_context = settings["n_ctx"]
        self._adds_bos = len(await self.tokenize("")) > 0

    async def aclose(self) -> None:
        """Close the HTTP client (llama.cpp itself stops with the process)."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("LlamaCppEngine.start() must be awaited before use")
        return self._client

    async def _get_json(self, path: str) -> dict[str, Any]:
        try:
            response = await self._http().get(path)
        except httpx.HTTPError as exc:
            raise EngineError(f"llama.cpp did not answer GET {path}: {exc}") from exc
        return self._json(response, path)

    async def _post_json(self, path: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        try:
            response = await self._http().post(path, json=payload)
        except httpx.HTTPError as exc:
            raise EngineError(f"llama.cpp did not answer POST {path}: {exc}") from exc
        return self._json(response, path)

    @staticmethod
    def _json(response: httpx.Response, path: str) -> dict[str, Any]:
        if response.status_code != 200:
            # llama.cpp answers 400 for requests it rejects (e.g. a bad JSON schema).
            status = 400 if response.status_code == 400 else 500
            raise EngineError(
                f"llama.cpp rejected {path}: {_llama_error_message(response)}",
                status_code=status,
            )
        payload = response.json()
        if not isinstance(payload, dict):
            raise EngineError(f"llama.cpp answered {path} with {type(payload).__name__}")
        return payload

    async def render_chat(self, messages: Sequence[Mapping[str, str]]) -> str:
        """Render messages with the GGUF's chat template (llama.cpp `/apply-template`)."""
        payload = await self._post_json("/apply-template", {"messages": list(messages)})
        prompt = payload.get("prompt")
        if not isinstance(prompt, str):
            raise EngineError("llama.cpp /apply-template answered without a prompt")
        return prompt

    async def tokenize(self, text: str) -> list[int]:
        """Tokenize with special tokens parsed and BOS added when the model wants it."""
        payload = await self._post_json(
            "/tokenize", {"content": text, "add_special": True, "parse_special": True}
        )
        tokens = payload.get("tokens")
        if not isinstance(tokens, list):
            raise EngineError("llama.cpp /tokenize answered without tokens")
        return [int(t) for t in tokens]

    async def complete(
        self,
        prompt: Sequence[int],
        *,
        sampling: SamplingOptions,
        max_tokens: int,
        json_schema: Mapping[str, Any] | None,
        stream: bool = True,
    ) -> AsyncIterator[CompletionChunk]:
        """A completion of a token list from llama.cpp's `/completion`.

        Streamed (SSE) when `stream` is true; otherwise one request, one answer, and one
        final chunk. Not streaming matters on a small machine: per-token events cost CPU in
        llama.cpp's HTTP thread and in this process while llama.cpp's compute threads want
        every core. Closing the iterator early (or cancelling the task awaiting it) closes
        the connection, which makes llama.cpp stop generating for this request and free its
        slot, streamed or not.
        """
        payload: dict[str, Any] = {
            "prompt": list(prompt),
            "n_predict": max_tokens,
            "stream": stream,
            "return_tokens": True,
            "cache_prompt": True,
            **sampling.to_llama(),
        }
        if json_schema is not None:
            payload["json_schema"] = dict(json_schema)
        if not stream:
            event = await self._post_json("/completion", payload)
            if "error" in event:
                raise EngineError(f"llama.cpp failed during generation: {event['error']}")
            chunk = _chunk_from_event(event)
            if not chunk.done:
                raise EngineError("llama.cpp answered the completion without a final result")
            yield chunk
            return
        try:
            async with self._http().stream("POST", "/completion", json=payload) as response:
                if response.status_code != 200:
                    await response.aread()
                    status = 400 if response.status_code == 400 else 500
                    raise EngineError(
                        f"llama.cpp rejected the completion: {_llama_error_message(response)}",
                        status_code=status,
                    )
                async for line in response.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    try:
                        event = json.loads(line[len("data: ") :])
                    except ValueError as exc:
                        raise EngineError(f"llama.cpp sent a malformed event: {exc}") from exc
                    if "error" in event:
                        raise EngineError(f"llama.cpp failed mid-generation: {event['error']}")
                    chunk = _chunk_from_event(event)
                    yield chunk
                    if chunk.done:
                        return
        except httpx.HTTPError as exc:
            raise EngineError(f"llama.cpp connection failed during generation: {exc}") from exc
        raise EngineError("llama.cpp ended the completion stream without a final event")


def _chunk_from_event(event: Mapping[str, Any]) -> CompletionChunk:
    text = str(event.get("content") or "")
    tokens = tuple(int(t) for t in event.get("tokens") or ())
    if not event.get("stop"):
        return CompletionChunk(text=text, tokens=tokens)
    timings = event.get("timings") or {}
    # stop_type: "eos" (end-of-generation token), "word" (a stop string), "limit" (n_predict).
    reason: DoneReason = "length" if event.get("stop_type") == "limit" else "stop"
    return CompletionChunk(
        text=text,
        tokens=tokens,
        done=True,
        done_reason=reason,
        prompt_eval_count=int(event.get("tokens_evaluated") or 0),
        prompt_eval_ms=float(timings.get("prompt_ms") or 0.0),
        eval_count=int(timings.get("predicted_n") or event.get("tokens_predicted") or 0),
        eval_ms=float(timings.get("predicted_ms") or 0.0),
    )


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity mask; every CPU where there is none)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return list(range(os.cpu_count() or 1))


def _cpu_times(cpus: Sequence[int]) -> tuple[int, int] | None:
    """(busy, total) jiffies of these CPUs since boot, from /proc/stat; None where unreadable."""
    wanted = {f"cpu{n}" for n in cpus}
    busy = total = 0
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            for line in fh:
                name, _, rest = line.partition(" ")
                if name not in wanted:
                    continue
                # user nice system idle iowait irq softirq steal (guest time is inside user)
                fields = [int(v) for v in rest.split()[:8]]
                idle = fields[3] + fields[4]
                busy += sum(fields) - idle
                total += sum(fields)
    except (OSError, ValueError, IndexError):
        return None
    return (busy, total) if total else None


def busy_cpus(cpus: Sequence[int], seconds: float = 0.25) -> float | None:
    """How many of `cpus` other processes keep busy, averaged over `seconds` (None: unknown).

    Measured from /proc/stat; this process's own CPU time in the window is left out.
    """
    before = _cpu_times(cpus)
    own_before = time.process_time()
    time.sleep(seconds)
    after = _cpu_times(cpus)
    own = time.process_time() - own_before
    if before is None or after is None or after[1] <= before[1]:
        return None
    busy_share = (after[0] - before[0]) / (after[1] - before[1])
    return max(0.0, busy_share * len(cpus) - own / seconds)


@dataclass(frozen=True)
class ThreadChoice:
    """The default llama.cpp thread count and what it was decided from."""

    threads: int
    cpus: int
    busy: float | None  # CPUs kept busy by other processes at start; None: not measurable

    def describe(self) -> str:
        """One line for the server's log."""
        load = "load unknown" if self.busy is None else f"{self.busy:.1f} busy with other work"
        return f"{self.threads} thread(s): {self.cpus} CPU(s) usable, {load}"


def default_threads(sample_seconds: float = 0.25) -> ThreadChoice:
    """One llama.cpp thread per usable CPU that other processes leave free (at least one).

    llama.cpp's threads wait for each other at every step, so a thread that has to share its
    core holds all of them up. Measured with the bundled SmolLM2 on this project's 2-CPU
    machine (llama.cpp driven directly, 1,500-character prompts): on idle CPUs two threads
    processed prompts at 280-340 tokens/s and generated 66-105 tokens/s, one thread 175 and
    66; with one CPU kept busy by another process, two threads were no slower than one
    (77-85 against 56-118 prompt tokens/s). With the machine overloaded (load average 6-8),
    two threads collapsed: 622 prompt and 256 generated tokens took 77-110 s, where one
    thread under the same load did 1,397 and 256 in 28 s. So a CPU counts as taken only when
    other processes keep it at least 75% busy while the server starts; load that comes later
    is not seen (llama.cpp cannot change its thread count while it serves).
    """
    cpus = usable_cpus()
    busy = busy_cpus(cpus, sample_seconds) if sample_seconds > 0 else None
    taken = 0 if busy is None else int(busy + 0.25)
    return ThreadChoice(threads=max(1, len(cpus) - taken), cpus=len(cpus), busy=busy)
