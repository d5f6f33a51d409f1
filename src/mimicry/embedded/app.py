"""Ollama's HTTP API in front of an `Engine`: the Starlette app of the embedded server.

Where it matters to measurements, the app does what Ollama does (sources in Ollama's repo):

- Chat prompts that do not fit `num_ctx` first lose their oldest messages, keeping system
  messages and the last message (server/prompt.go, `chatPrompt`).
- A tokenized prompt of `num_ctx` tokens or more is then cut: its first `num_keep` tokens
  stay, the tokens after them go, until about half the window is free for the reply
  (llm/llama_server.go, `completionPromptForRequest`); `prompt_eval_count` shows the cut.
- `num_predict` ends generation with `done_reason: "length"`.
- Responses stream as NDJSON unless `"stream": false`; errors are `{"error": "..."}`.

Where it cannot, it says so: llama.cpp's context is fixed at start, so `num_ctx` above the
slot size is clamped to it (and logged), and generation stops with `done_reason: "length"`
when prompt plus reply fill `num_ctx` (Ollama would shift its window and go on).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from mimicry.core.samples import DEFAULT_NUM_KEEP
from mimicry.embedded.engine import (
    CompletionChunk,
    Engine,
    EngineError,
    SamplingOptions,
    truncate_prompt,
)
from mimicry.embedded.model import ServedModel, server_version

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES: Final = 8 * 1024 * 1024
"""Requests with a larger body are refused with 413."""

DEFAULT_NUM_CTX: Final = 4096
"""Ollama's default context window on a machine without a large GPU (capped by the slot)."""

MIN_NUM_CTX: Final = 4  # Ollama raises smaller num_ctx values to 4 as well.

NDJSON: Final = "application/x-ndjson"

# Ollama's options by JSON type (api.Options); the others it knows are accepted and ignored.
_INT_OPTIONS: Final = frozenset(
    {
        "num_keep",
        "seed",
        "num_predict",
        "top_k",
        "repeat_last_n",
        "mirostat",
        "num_ctx",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "num_thread",
    }
)
_FLOAT_OPTIONS: Final = frozenset(
    {
        "top_p",
        "min_p",
        "typical_p",
        "temperature",
        "repeat_penalty",
        "presence_penalty",
        "frequency_penalty",
        "mirostat_tau",
        "mirostat_eta",
        "tfs_z",
    }
)
_BOOL_OPTIONS: Final = frozenset(
    {
        "penalize_newline",
        "numa",
        "low_vram",
        "f16_kv",
        "logits_all",
        "vocab_only",
        "use_mmap",
        "use_mlock",
        "embedding_only",
    }
)
_SAMPLING_FIELDS: Final = frozenset(SamplingOptions.__dataclass_fields__) - {"stop"}


class ApiError(Exception):
    """A request the API refuses, answered as `{"error": message}` with `status_code`."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def error_response(status_code: int, message: str) -> JSONResponse:
    """Ollama's error shape."""
    return JSONResponse({"error": message}, status_code=status_code)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _ms_to_ns(ms: float) -> int:
    return int(round(ms * 1_000_000))


@dataclass(frozen=True)
class RequestOptions:
    """The `options` of a chat or generate request, validated."""

    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    num_ctx: int | None = None
    num_predict: int = -1
    num_keep: int = DEFAULT_NUM_KEEP


_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _without_lone_surrogates(payload: dict[str, Any]) -> dict[str, Any]:
    """Replace lone surrogates (JSON escapes like \\ud800) with U+FFFD, as Go's decoder does.

    They are not valid UTF-8, so llama.cpp could not be sent them. Iterative, because JSON
    nesting may be as deep as the parser allowed.
    """

    def clean(text: str) -> str:
        return _LONE_SURROGATE.sub("\ufffd", text)

    stack: list[dict[str, Any] | list[Any]] = [payload]
    while stack:
        container = stack.pop()
        if isinstance(container, list):
            for index, value in enumerate(container):
                if isinstance(value, str):
                    container[index] = clean(value)
                elif isinstance(value, dict | list):
                    stack.append(value)
            continue
        for key, value in list(container.items()):
            if isinstance(value, str):
                container[key] = clean(value)
            elif isinstance(value, dict | list):
                stack.append(value)
            if _LONE_SURROGATE.search(key):
                container[clean(key)] = container.pop(key)
    return payload


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def parse_options(raw: object) -> RequestOptions:
    """Validate Ollama's `options` object; unknown keys are ignored, as Ollama does."""
    if raw is None:
        return RequestOptions()
    if not isinstance(raw, dict):
        raise ApiError(400, f"'options' must be a JSON object, got {_type_name(raw)}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None:
            continue
        if key in _INT_OPTIONS:
            # JSON has one number type; Ollama truncates floats for integer options.
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ApiError(400, f"option {key!r} must be an integer, got {value!r}")
            try:
                values[key] = int(value)
            except (OverflowError, ValueError):
                raise ApiError(
                    400, f"option {key!r} must be a finite integer, got {value!r}"
                ) from None
        elif key in _FLOAT_OPTIONS:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ApiError(400, f"option {key!r} must be a number, got {value!r}")
            values[key] = float(value)
        elif key in _BOOL_OPTIONS:
            if not isinstance(value, bool):
                raise ApiError(400, f"option {key!r} must be true or false, got {value!r}")
        elif key == "stop":
            if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
                raise ApiError(400, f"option 'stop' must be a list of strings, got {value!r}")
            values[key] = tuple(s for s in value if s)
        else:
            logger.debug("ignoring unknown option %r", key)
    sampling = SamplingOptions(**{k: v for k, v in values.items() if k in _SAMPLING_FIELDS})
    if "stop" in values:
        sampling = replace(sampling, stop=values["stop"])
    return RequestOptions(
        sampling=sampling,
        num_ctx=values.get("num_ctx"),
        num_predict=values.get("num_predict", -1),
        num_keep=values.get("num_keep", DEFAULT_NUM_KEEP),
    )


def parse_format(raw: object) -> Mapping[str, Any] | None:
    """Ollama's `format`: "json" (any JSON object) or a JSON schema, as a llama.cpp schema."""
    if raw is None or raw == "":
        return None
    if raw == "json":
        return {"type": "object"}
    if isinstance(raw, dict):
        return raw
    raise ApiError(400, f'invalid format {raw!r}: expected "json" or a JSON schema object')


def _optional_str(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ApiError(400, f"{key!r} must be a string, got {_type_name(value)}")
    return value


def _optional_bool(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ApiError(400, f"{key!r} must be true or false, got {value!r}")
    return value


def _wants_thinking(value: object) -> bool:
    # `think` is a boolean or an effort level ("low", "medium", "high").
    return value not in (None, False, "", "false", "none")


def parse_messages(raw: object) -> list[dict[str, str]]:
    """Validate chat messages into {role, content} pairs."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ApiError(400, f"'messages' must be a list of message objects, got {_type_name(raw)}")
    messages: list[dict[str, str]] = []
    for index, message in enumerate(raw):
        if not isinstance(message, dict):
            raise ApiError(
                400,
                f"messages[{index}] must be an object like "
                f'{{"role": "user", "content": "..."}}, got {_type_name(message)}',
            )
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise ApiError(
                400,
                f"messages[{index}].role must be a non-empty string such as 'system', "
                f"'user' or 'assistant', got {role!r}",
            )
        content = message.get("content")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise ApiError(
                400, f"messages[{index}].content must be a string, got {_type_name(content)}"
            )
        if message.get("images"):
            raise ApiError(400, "this model is missing data required for image input")
        messages.append({"role": role, "content": content})
    return messages


class _Api:
    """The endpoints, bound to one engine and one served model."""

    def __init__(self, engine: Engine, model: ServedModel, max_body_bytes: int) -> None:
        self.engine = engine
        self.model = model
        self.max_body_bytes = max_body_bytes
        self.started = dt.datetime.now(dt.UTC)
        self._clamp_warned: set[int] = set()

    # -- plumbing -------------------------------------------------------------------------

    async def read_body(self, request: Request) -> dict[str, Any]:
        """The request's JSON object, refused with 413 past the size limit, 400 if malformed."""
        limit = self.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, self._too_large(int(declared)))
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                raise ApiError(413, self._too_large(len(body), at_least=True))
        if not body.strip():
            raise ApiError(400, 'the request body is empty; send a JSON object like {"model": ...}')
        try:
            payload = json.loads(bytes(body))
        except (ValueError, RecursionError) as exc:
            raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise ApiError(
                400, f"the request body must be a JSON object, got {_type_name(payload)}"
            )
        return _without_lone_surrogates(payload)

    def _too_large(self, size: int, *, at_least: bool = False) -> str:
        amount = f"at least {size}" if at_least else str(size)
        return (
            f"the request body is too large: {amount} bytes, the limit is "
            f"{self.max_body_bytes} bytes (start the server with a larger --max-body-bytes)"
        )

    def lookup(self, body: Mapping[str, Any], *keys: str) -> ServedModel:
        """The served model named by the request, 400 if unnamed, 404 if another name."""
        name: object = None
        for key in keys or ("model",):
            name = body.get(key)
            if name:
                break
        if not name:
            raise ApiError(400, "model is required")
        if not isinstance(name, str):
            raise ApiError(400, f"'model' must be a string, got {_type_name(name)}")
        if not self.model.matches(name):
            raise ApiError(404, f"model {name!r} not found")
        return self.model

    def num_ctx(self, requested: int | None) -> int:
        """The context window for a request: Ollama's default, clamped to llama.cpp's slot."""
        slot = self.engine.slot_context
        if requested is None or requested <= 0:
            return min(DEFAULT_NUM_CTX, slot)
        if requested > slot:
            if requested not in self._clamp_warned:
                self._clamp_warned.add(requested)
                logger.warning(
                    "num_ctx %d is larger than the server's per-slot context of %d tokens; "
                    "using %d (restart the server with --ctx-size %d to allow it)",
                    requested,
                    slot,
                    slot,
                    requested,
                )
            return slot
        return max(MIN_NUM_CTX, requested)

    def prepare(
        self,
        tokens: list[int],
        *,
        options: RequestOptions,
        num_ctx: int,
        truncate: bool,
    ) -> tuple[list[int], int]:
        """Cut the prompt like Ollama and decide how many tokens generation may produce."""
        engine = self.engine
        if engine.adds_bos and len(tokens) >= 2 and tokens[0] == tokens[1]:
            # The template already wrote the BOS token that tokenization added again; Ollama
            # strips it from the rendered prompt (llm/llama_server.go, `completionPrompt`).
            tokens = tokens[1:]
        if len(tokens) > num_ctx - 1:
            if not truncate:
                raise ApiError(
                    400,
                    f"the input length exceeds the context length: the prompt has "
                    f"{len(tokens)} tokens and num_ctx is {num_ctx}; shorten the prompt, raise "
                    'num_ctx, or leave "truncate" unset to cut it as Ollama does',
                )
            tokens = truncate_prompt(
                tokens, num_ctx=num_ctx, num_keep=options.num_keep, adds_bos=engine.adds_bos
            )
        if not tokens:
            raise ApiError(400, "the prompt is empty after tokenization")
        room = max(num_ctx - len(tokens), 1)
        max_tokens = room if options.num_predict <= 0 else min(options.num_predict, room)
        return tokens, max_tokens

    async def chat_tokens(
        self, messages: Sequence[dict[str, str]], num_ctx: int, truncate: bool
    ) -> list[int]:
        """Render and tokenize a chat, dropping the oldest messages while it does not fit.

        Like Ollama's `chatPrompt`: system messages and the last message always stay.
        """
        engine = self.engine
        last = len(messages) - 1
        tokens: list[int] = []
        for start in range(last + 1 if truncate else 1):
            kept_system = [m for m in messages[:start] if m["role"] == "system"]
            tokens = await engine.tokenize(
                await engine.render_chat(kept_system + [*messages[start:]])
            )
            if len(tokens) <= num_ctx:
                if start:
                    logger.debug("dropped the %d oldest messages to fit num_ctx %d", start, num_ctx)
                break
        return tokens

    def metrics(
        self, started: int, loaded: int, prompt_count: int, final: CompletionChunk
    ) -> dict[str, int]:
        """Ollama's counts and durations (nanoseconds) for a finished generation."""
        return {
            "total_duration": time.perf_counter_ns() - started,
            "load_duration": loaded - started,
            "prompt_eval_count": prompt_count,
            "prompt_eval_duration": _ms_to_ns(final.prompt_eval_ms),
            "eval_count": final.eval_count,
            "eval_duration": _ms_to_ns(final.eval_ms),
        }

    async def respond(
        self,
        *,
        stream: bool,
        chunks: AsyncIterator[CompletionChunk],
        partial: Callable[[str], dict[str, Any]],
        final: Callable[[str, CompletionChunk, list[int]], dict[str, Any]],
    ) -> Response:
        """Answer with one JSON object, or stream NDJSON lines ending with the final one."""
        try:
            first = await anext(chunks)
        except EngineError as exc:
            await _aclose(chunks)
            raise ApiError(exc.status_code, str(exc)) from None
        except StopAsyncIteration:
            raise ApiError(500, "llama.cpp produced no output") from None

        if not stream:
            texts: list[str] = []
            generated: list[int] = []
            chunk = first
            try:
                while True:
                    texts.append(chunk.text)
                    generated.extend(chunk.tokens)
                    if chunk.done:
                        break
                    chunk = await anext(chunks)
            except EngineError as exc:
                raise ApiError(exc.status_code, str(exc)) from None
            finally:
                await _aclose(chunks)
            return JSONResponse(final("".join(texts), chunk, generated))

        async def lines() -> AsyncIterator[bytes]:
            generated: list[int] = []
            chunk = first
            try:
                while True:
                    generated.extend(chunk.tokens)
                    if chunk.text:
                        yield _line(partial(chunk.text))
                    if chunk.done:
                        yield _line(final("", chunk, generated))
                        return
                    chunk = await anext(chunks)
            except EngineError as exc:
                # Headers are gone: Ollama reports a failure mid-stream as an error line.
                yield _line({"error": str(exc)})
            finally:
                await _aclose(chunks)

        return StreamingResponse(lines(), media_type=NDJSON)

    # -- endpoints ------------------------------------------------------------------------

    async def root(self, request: Request) -> Response:
        """`GET /`: the liveness text clients probe for."""
        return PlainTextResponse("Ollama is running")

    async def version(self, request: Request) -> Response:
        """`GET /api/version`: this server's version, marked as the embedded server."""
        return JSONResponse(
            {
                "version": server_version(),
                "mimicry_embedded": True,
                # Not Ollama's: how llama.cpp runs here (threads, slots, batch sizes).
                "engine": dict(self.engine.settings),
            }
        )

    def _listing(self) -> dict[str, Any]:
        model = self.model
        return {
            "name": model.name,
            "model": model.name,
            "modified_at": _iso(model.modified_at),
            "size": model.size,
            "digest": model.digest,
            "details": model.details(),
        }

    async def tags(self, request: Request) -> Response:
        """`GET /api/tags`: the one served model, with the sha256 of its GGUF file."""
        return JSONResponse({"models": [self._listing()]})

    async def ps(self, request: Request) -> Response:
        """`GET /api/ps`: the model is always loaded while the server runs."""
        listing = self._listing()
        del listing["modified_at"]
        listing.update(
            {
                # Ollama's "never expires" (keep_alive < 0) is about 292 years ahead.
                "expires_at": _iso(self.started + dt.timedelta(days=292 * 365)),
                "size_vram": 0,
                "context_length": self.engine.slot_context,
            }
        )
        return JSONResponse({"models": [listing]})

    async def show(self, request: Request) -> Response:
        """`POST /api/show`: details, GGUF metadata and context length of the model."""
        body = await self.read_body(request)
        model = self.lookup(body, "model", "name")
        meta = model.metadata
        default_ctx = min(DEFAULT_NUM_CTX, self.engine.slot_context)
        return JSONResponse(
            {
                "license": "",
                "modelfile": (
                    "# Modelfile of the mimicry embedded server (llama.cpp)\n"
                    f"FROM {model.path}\n"
                    f"PARAMETER num_ctx {default_ctx}\n"
                ),
                "parameters": f"num_ctx {default_ctx}",
                # The GGUF's Jinja chat template, which llama.cpp applies (Ollama would show
                # a Go template here).
                "template": meta.chat_template or "",
                "details": model.details(),
                "model_info": dict(meta.kv),
                "capabilities": ["completion"],
                "modified_at": _iso(model.modified_at),
            }
        )

    async def pull(self, request: Request) -> Response:
        """`POST /api/pull`: the served model is already here; nothing else can be pulled."""
        body = await self.read_body(request)
        name = body.get("model") or body.get("name")
        if isinstance(name, str) and self.model.matches(name):
            if _optional_bool(body, "stream", True):
                return StreamingResponse(iter([_line({"status": "success"})]), media_type=NDJSON)
            return JSONResponse({"status": "success"})
        raise ApiError(
            400,
            f"the embedded server cannot pull {name!r}: it serves only {self.model.name!r}; "
            "run a real Ollama server (OLLAMA_HOST) to use other models",
        )

    def _common(
        self, body: Mapping[str, Any]
    ) -> tuple[ServedModel, RequestOptions, Mapping[str, Any] | None, bool, bool]:
        model = self.lookup(body)
        stream = _optional_bool(body, "stream", True)  # Ollama streams unless told not to
        truncate = _optional_bool(body, "truncate", True)
        if _wants_thinking(body.get("think")):
            raise ApiError(400, f"{model.name!r} does not support thinking")
        options = parse_options(body.get("options"))
        schema = parse_format(body.get("format"))
        return model, options, schema, stream, truncate

    def _load_only(self, body: Mapping[str, Any], kind: str) -> JSONResponse:
        # An empty request loads (or with keep_alive 0 unloads) the model in Ollama.
        unload = body.get("keep_alive") in (0, "0", "0s", "0m")
        payload: dict[str, Any] = {
            "model": self.model.name,
            "created_at": _now(),
            "done": True,
            "done_reason": "unload" if unload else "load",
        }
        if kind == "chat":
            payload["message"] = {"role": "assistant", "content": ""}
        else:
            payload["response"] = ""
        return JSONResponse(payload)

    async def chat(self, request: Request) -> Response:
        """`POST /api/chat`."""
        started = time.perf_counter_ns()
        body = await self.read_body(request)
        model, options, schema, stream, truncate = self._common(body)
        if body.get("tools"):
            raise ApiError(400, f"{model.name!r} does not support tools")
        messages = parse_messages(body.get("messages"))
        if not messages:
            return self._load_only(body, "chat")
        loaded = time.perf_counter_ns()
        num_ctx = self.num_ctx(options.num_ctx)
        tokens = await self.chat_tokens(messages, num_ctx, truncate)
        tokens, max_tokens = self.prepare(
            tokens, options=options, num_ctx=num_ctx, truncate=truncate
        )
        chunks = self.engine.complete(
            tokens,
            sampling=options.sampling,
            max_tokens=max_tokens,
            json_schema=schema,
            stream=stream,
        )

        def partial(text: str) -> dict[str, Any]:
            return {
                "model": model.name,
                "created_at": _now(),
                "message": {"role": "assistant", "content": text},
                "done": False,
            }

        def final(text: str, last: CompletionChunk, generated: list[int]) -> dict[str, Any]:
            return {
                "model": model.name,
                "created_at": _now(),
                "message": {"role": "assistant", "content": text},
                "done": True,
                "done_reason": last.done_reason or "stop",
                **self.metrics(started, loaded, len(tokens), last),
            }

        return await self.respond(stream=stream, chunks=chunks, partial=partial, final=final)

    async def generate(self, request: Request) -> Response:
        """`POST /api/generate`."""
        started = time.perf_counter_ns()
        body = await self.read_body(request)
        model, options, schema, stream, truncate = self._common(body)
        prompt = _optional_str(body, "prompt")
        system = _optional_str(body, "system")
        raw = _optional_bool(body, "raw", False)
        context = body.get("context") or []
        if not isinstance(context, list) or not all(
            isinstance(t, int) and not isinstance(t, bool) and 0 <= t < 2**31 for t in context
        ):
            raise ApiError(400, "'context' must be a list of token ids from an earlier response")
        if _optional_str(body, "template"):
            raise ApiError(
                400,
                "the embedded server cannot apply a request 'template' (llama.cpp uses the "
                "model's own chat template); render the prompt yourself and send it with "
                '"raw": true',
            )
        if _optional_str(body, "suffix"):
            raise ApiError(400, f"{model.name!r} does not support insert")
        if body.get("images"):
            raise ApiError(400, "this model is missing data required for image input")
        if not prompt and not context:
            return self._load_only(body, "generate")
        loaded = time.perf_counter_ns()
        num_ctx = self.num_ctx(options.num_ctx)
        if raw:
            text = prompt
        else:
            turns = [{"role": "system", "content": system}] if system else []
            text = await self.engine.render_chat([*turns, {"role": "user", "content": prompt}])
        tokens = [*context, *await self.engine.tokenize(text)]
        tokens, max_tokens = self.prepare(
            tokens, options=options, num_ctx=num_ctx, truncate=truncate
        )
        chunks = self.engine.complete(
            tokens,
            sampling=options.sampling,
            max_tokens=max_tokens,
            json_schema=schema,
            stream=stream,
        )

        def partial(text: str) -> dict[str, Any]:
            return {"model": model.name, "created_at": _now(), "response": text, "done": False}

        def final(text: str, last: CompletionChunk, generated: list[int]) -> dict[str, Any]:
            payload: dict[str, Any] = {
                "model": model.name,
                "created_at": _now(),
                "response": text,
                "done": True,
                "done_reason": last.done_reason or "stop",
            }
            if not raw:
                payload["context"] = [*tokens, *generated]
            payload.update(self.metrics(started, loaded, len(tokens), last))
            return payload

        return await self.respond(stream=stream, chunks=chunks, partial=partial, final=final)

    async def not_supported(self, request: Request) -> Response:
        """Other `/api/...` endpoints (pull, push, create, embed, ...)."""
        allowed = _ROUTE_METHODS.get(request.url.path)
        if allowed is not None:
            raise ApiError(
                405,
                f"method {request.method} is not allowed for {request.url.path}; "
                f"use {' or '.join(allowed)}",
            )
        raise ApiError(
            501,
            f"{request.url.path} is not supported by the mimicry embedded server, which serves "
            f"one llama.cpp model ({self.model.name!r}) for chat and generate; use a real "
            "Ollama server (OLLAMA_HOST) for this",
        )


_ROUTE_METHODS: Final[Mapping[str, tuple[str, ...]]] = {
    "/": ("GET", "HEAD"),
    "/api/version": ("GET",),
    "/api/tags": ("GET", "HEAD"),
    "/api/ps": ("GET",),
    "/api/show": ("POST",),
    "/api/chat": ("POST",),
    "/api/generate": ("POST",),
    "/api/pull": ("POST",),
}


def _line(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


async def _aclose(chunks: AsyncIterator[CompletionChunk]) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()


def _handles(
    endpoint: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    async def handler(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ApiError as exc:
            return error_response(exc.status_code, exc.message)
        except EngineError as exc:
            return error_response(exc.status_code, str(exc))

    return handler


async def _http_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        if exc.status_code == 405:
            message = f"method {request.method} is not allowed for {request.url.path}"
        elif exc.status_code == 404:
            message = f"{request.url.path} not found"
        else:
            message = str(exc.detail)
        return error_response(exc.status_code, message)
    return error_response(500, "internal error")


async def _internal_error(request: Request, exc: Exception) -> Response:
    logger.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, f"internal error: {type(exc).__name__}: {exc}")


def create_app(
    engine: Engine, model: ServedModel, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> Starlette:
    """Build the Ollama-compatible app for `model` served by `engine`.

    The engine is started when the app starts (ASGI lifespan) and closed when it stops.
    """
    if max_body_bytes < 1:
        raise ValueError(f"max_body_bytes={max_body_bytes!r}: must be a positive number of bytes")
    api = _Api(engine, model, max_body_bytes)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await engine.start()
        try:
            yield
        finally:
            await engine.aclose()

    endpoints = {
        "/": api.root,
        "/api/version": api.version,
        "/api/tags": api.tags,
        "/api/ps": api.ps,
        "/api/show": api.show,
        "/api/chat": api.chat,
        "/api/generate": api.generate,
        "/api/pull": api.pull,
    }
    routes = [
        *(
            Route(path, _handles(endpoint), methods=list(_ROUTE_METHODS[path]))
            for path, endpoint in endpoints.items()
        ),
        Route(
            "/api/{rest:path}",
            _handles(api.not_supported),
            methods=["GET", "POST", "PUT", "DELETE", "HEAD"],
        ),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
    )
