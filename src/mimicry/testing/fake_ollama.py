"""A fake Ollama server: real HTTP on a loopback port, Ollama's wire format, pinned replies.

It stands in for the model, not for the transport: a client (the official ``ollama`` package,
this project's suite, anything else) talks HTTP/1.1 to it, with keep-alive, exactly as to
Ollama. Pure standard library (:class:`http.server.ThreadingHTTPServer`), so it runs in a test's
process or alone (``python -m mimicry.testing.fake_ollama``).

Endpoints: ``GET /``, ``GET /api/version``, ``GET /api/tags``, ``POST /api/show``, ``POST
/api/chat`` and ``POST /api/generate`` (one JSON object with ``"stream": false``, else NDJSON
lines, as Ollama), with Ollama's shapes and its ``{"error": "model 'x' not found"}`` 404.
``GET /_fake/stats`` and ``POST /_fake/reset`` read and clear the counters from another process.

Each model answers with its reply function, which gets the request (the record parsed from the
last user message, the messages, the model name, the options) and returns the text or a
:class:`Reply`::

    from mimicry.testing import FakeModel, FakeOllama, Reply

    def reply(request):
        if request.record is None:
            return "I cannot help with that."
        return Reply(repr(request.record)[:80], done_reason="length")

    with FakeOllama(FakeModel("qwen2:0.5b", reply=reply), latency_s=0.02, slots=4) as fake:
        ...  # point the client at fake.url
    assert fake.count("/api/chat") == 10

Faults (refusing, hanging, 5xx, bodies cut or trickled) are a layer over it:
:mod:`mimicry.testing.faults`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import email.utils
import hashlib
import http.server
import io
import json
import math
import os
import re
import signal
import socket
import socketserver
import sys
import tempfile
import threading
import time
import tokenize
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol, cast

__all__ = [
    "CHAT",
    "DEFAULT_MODEL",
    "GENERATE",
    "OLLAMA_PATHS",
    "RESET",
    "SHOW",
    "STATS",
    "TAGS",
    "VERSION",
    "ChatRequest",
    "Exchange",
    "FakeModel",
    "FakeOllama",
    "FakeServerError",
    "Fault",
    "HttpRequest",
    "Reply",
    "ReplyFn",
    "Response",
    "Served",
    "Stats",
    "imitating_reply",
    "main",
    "mixed_reply",
    "plain_answer",
    "replies_by_id",
]

VERSION = "/api/version"
TAGS = "/api/tags"
SHOW = "/api/show"
CHAT = "/api/chat"
GENERATE = "/api/generate"
#: The Ollama endpoints the fake serves (``GET /`` too: "Ollama is running").
OLLAMA_PATHS = (VERSION, TAGS, SHOW, CHAT, GENERATE)
#: The fake's own endpoints, for a fake running in another process.
STATS = "/_fake/stats"
RESET = "/_fake/reset"

DEFAULT_MODEL = "fake-model:1b"
DEFAULT_VERSION = "0.0.0-fake"
_CREATED_AT = "2026-01-01T00:00:00Z"  # fixed, like the durations: reproducible replies
_JSON = "application/json; charset=utf-8"
_NDJSON = "application/x-ndjson"
_MAX_BODY = 64 * 1024 * 1024
#: how often the accept loop looks for a stop request (stop() waits at most this long)
_POLL_S = 0.05
_JOIN_S = 10.0
_SAMPLE_ID = re.compile(r"""^\s*\{\s*['"]id['"]\s*:\s*(-?\d+)""")
_WORDS = re.compile(r"\S+\s*|\s+")


# -- what a reply function gets and gives -------------------------------------------------------


_SKIPPED_TOKENS = frozenset(
    {tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
)
_CLOSERS = {"{": "}", "[": "]", "(": ")"}
_NAMES = {"True": True, "False": False, "None": None}


def read_literal(text: str) -> Any:
    """The Python literal ``text`` is the repr of: dicts, lists, tuples, strings, numbers,
    True, False and None, as ``ast.literal_eval`` reads them; ValueError for anything else.

    Read with :mod:`tokenize`, not :mod:`ast`: this server answers from its own threads, and
    CPython 3.11 keeps the recursion depth of its AST conversion per interpreter, not per
    thread, so an ``ast.literal_eval`` here racing an ``ast.parse`` in another thread (pytest
    rewriting a test module's asserts, in a run this server answers) can fail either one with
    ``SystemError: AST constructor recursion depth mismatch``.
    """
    tokens = [
        token
        for token in tokenize.generate_tokens(io.StringIO(text.strip()).readline)
        if token.type not in _SKIPPED_TOKENS
    ]
    position = 0

    def peek() -> tokenize.TokenInfo:
        if position >= len(tokens):
            raise ValueError("the literal ends early")
        return tokens[position]

    def take(expected: str | None = None) -> tokenize.TokenInfo:
        nonlocal position
        token = peek()
        if expected is not None and token.string != expected:
            raise ValueError(f"expected {expected!r}, found {token.string!r}")
        position += 1
        return token

    def value() -> Any:
        token = take()
        if token.type == tokenize.OP and token.string in _CLOSERS:
            closer, items, pairs = _CLOSERS[token.string], [], []
            while peek().string != closer:
                item = value()
                if token.string == "{":
                    take(":")
                    pairs.append((item, value()))
                else:
                    items.append(item)
                if peek().string != closer:
                    take(",")
            take(closer)
            if token.string == "{":
                return dict(pairs)
            return items if token.string == "[" else tuple(items)
        if token.type == tokenize.STRING:
            parts = [_string_value(token.string)]
            while position < len(tokens) and peek().type == tokenize.STRING:
                parts.append(_string_value(take().string))
            return "".join(parts)
        if token.type == tokenize.NUMBER:
            return _number(token.string)
        if token.string in ("-", "+") and peek().type == tokenize.NUMBER:
            number = _number(take().string)
            return -number if token.string == "-" else number
        if token.type == tokenize.NAME and token.string in _NAMES:
            return _NAMES[token.string]
        raise ValueError(f"not a literal: {token.string!r}")

    result = value()
    if position != len(tokens):
        raise ValueError(f"text after the literal: {tokens[position].string!r}")
    return result


def _string_value(literal: str) -> str:
    prefix = literal[: len(literal) - len(literal.lstrip("rRbBuUfF"))]
    if prefix.lower() not in ("", "u"):
        raise ValueError(f"a {prefix!r} string is not read here")
    body = literal[len(prefix) :]
    quote = body[:3] if body[:3] in ("'''", '"""') else body[0]
    body = body[len(quote) : -len(quote)]
    # Python's escapes, with every character beyond Latin-1 first written as an escape itself
    return body.encode("latin-1", "backslashreplace").decode("unicode_escape")


def _number(literal: str) -> int | float:
    text = literal.replace("_", "")
    if text[-1:] in "jJ":
        raise ValueError(f"a complex number is not read here: {literal!r}")
    if text.lower().startswith(("0x", "0o", "0b")):
        return int(text, 0)
    try:
        return int(text)
    except ValueError:
        return float(text)


@dataclass(frozen=True)
class ChatRequest:
    """A ``/api/chat`` or ``/api/generate`` request, as a reply function sees it.

    ``/api/generate``'s ``prompt`` (and ``system``) arrive as ``messages`` too. ``record`` is the
    last user message parsed as a Python literal (:func:`read_literal`: the suite sends the repr
    of a dataset row), None when that is not a dict; it is parsed on first use only.
    """

    model: str
    messages: Sequence[Mapping[str, Any]]
    options: Mapping[str, Any]
    endpoint: str = CHAT

    @property
    def content(self) -> str:
        """The last user message's content (``""`` when there is none)."""
        for message in reversed(self.messages):
            if message.get("role") == "user" and isinstance(message.get("content"), str):
                return str(message["content"])
        return ""

    @cached_property
    def record(self) -> dict[str, Any] | None:
        """The dataset record the user message is the repr of, else None."""
        try:
            value = read_literal(self.content)
        except (ValueError, SyntaxError, tokenize.TokenError, MemoryError, RecursionError):
            return None
        return value if isinstance(value, dict) else None

    @cached_property
    def sample_id(self) -> int | None:
        """The ``id`` the user message starts with (``{'id': 887722, ...``), without parsing."""
        match = _SAMPLE_ID.match(self.content)
        return int(match.group(1)) if match else None

    @property
    def num_ctx(self) -> int | None:
        """``options["num_ctx"]`` when it is a positive int."""
        value = self.options.get("num_ctx")
        ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
        return cast(int, value) if ok else None


@dataclass(frozen=True)
class Reply:
    """A reply with Ollama's accounting. Counts left at None are computed: ``prompt_eval_count``
    as 4 characters of messages a token, capped at ``num_ctx`` (Ollama cuts a longer prompt and
    says so only there); ``eval_count`` as 4 characters of ``text`` a token."""

    text: str
    done_reason: str = "stop"
    prompt_eval_count: int | None = None
    eval_count: int | None = None


#: What a model answers: the text, or a :class:`Reply`.
ReplyFn = Callable[[ChatRequest], str | Reply]


def imitating_reply(request: ChatRequest) -> str:
    """What qwen2:0.5b was seen doing with a record: copy it, change the id (+1), rewrite the
    prompt into a more direct question, and stop inside ``response_a``'s value.

    Not a record: ``"I cannot help with that."``.
    """
    record = request.record
    if record is None:
        return "I cannot help with that."
    rewritten = dict(record)
    with contextlib.suppress(KeyError, TypeError, ValueError):
        rewritten["id"] = int(record["id"]) + 1
    prompt = record.get("prompt")
    if isinstance(prompt, str):
        try:
            turns = json.loads(prompt)
        except ValueError:
            turns = [prompt]
        first = turns[0] if isinstance(turns, list) and turns else prompt
        rewritten["prompt"] = json.dumps([f"Please answer directly: {first}"])
    text = repr(rewritten)
    cut = text.find("'response_a'")
    return text if cut < 0 else text[: cut + 40]  # stops inside response_a's value


def plain_answer(request: ChatRequest) -> str:
    """An answer, not an imitation: the same text whatever was asked."""
    return "Here is an answer to your question."


def mixed_reply(request: ChatRequest) -> str:
    """A cheap, deterministic mix by record id (string slicing only, no parsing): a copy of the
    record's head with the id + 1 stopping inside ``response_a`` (two ids in four), the same
    closed with a brace (one in four), a plain answer (one in four). For load tests, where the
    server must cost little next to the client."""
    content = request.content
    match = re.match(r"\{'id': (\d+), ", content)
    if match is None:
        return "I am not sure what you would like me to do with this."
    record_id = int(match.group(1))
    variant = record_id % 4
    if variant == 3:
        return "This looks like a record from a chatbot comparison. What should I do with it?"
    head_end = content.find(", 'response_a': ")
    head = content[match.end() : head_end if head_end > 0 else 400][:400]
    reply = f"{{'id': {record_id + 1}, {head}, 'response_a': '[\"Sure"
    return reply + "\"]'}" if variant == 2 else reply


def replies_by_id(replies: Mapping[int, str | Reply], default: ReplyFn = plain_answer) -> ReplyFn:
    """A reply function pinned per record: ``replies[sample_id]``, else ``default(request)``."""
    pinned = dict(replies)

    def reply(request: ChatRequest) -> str | Reply:
        sample_id = request.sample_id
        if sample_id is not None and sample_id in pinned:
            return pinned[sample_id]
        return default(request)

    return reply


# -- models --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeModel:
    """One model the fake serves. ``digest`` defaults to the sha256 of ``name``; ``family`` is
    also the architecture in ``/api/show``'s ``model_info`` (``"<family>.context_length"``)."""

    name: str = DEFAULT_MODEL
    reply: ReplyFn = imitating_reply
    digest: str = ""
    context_length: int = 32768
    family: str = "fake"
    parameter_size: str = "1B"
    quantization_level: str = "Q4_0"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"FakeModel.name={self.name!r}: give a model name like 'qwen2:0.5b'")
        if not callable(self.reply):
            raise TypeError(f"FakeModel.reply={self.reply!r}: must be a function of a request")
        if isinstance(self.context_length, bool) or not (
            isinstance(self.context_length, int) and self.context_length > 0
        ):
            raise ValueError(
                f"FakeModel.context_length={self.context_length!r}: must be an int > 0"
            )
        if not self.digest:
            object.__setattr__(self, "digest", hashlib.sha256(self.name.encode()).hexdigest())

    def details(self) -> dict[str, Any]:
        """The ``details`` object of ``/api/tags`` and ``/api/show``."""
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }


def _canonical(name: str) -> str:
    """Ollama's matching: ``qwen2`` is ``qwen2:latest``, case-insensitively (a ``:`` before the
    last ``/`` is a registry port, not a tag)."""
    last = name.rsplit("/", 1)[-1]
    return (name if ":" in last else f"{name}:latest").casefold()


# -- what tests read -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    """One request as the fake saw it (``at`` is ``time.monotonic()`` at its arrival)."""

    method: str
    path: str
    at: float
    body: Any
    headers: Mapping[str, str]
    model: str | None
    sample_id: int | None
    fault: str | None  # the fault played on it (its class name), None when answered normally

    @property
    def authorization(self) -> str | None:
        """The ``Authorization`` header, if any."""
        return self.headers.get("authorization")


@dataclass(frozen=True)
class Stats:
    """A snapshot of the counters (since start or the last reset)."""

    requests: Mapping[str, int]
    replies: int  # chat/generate replies written to the last byte
    in_flight: int  # replies being computed now (holding a slot)
    max_in_flight: int
    connections: int  # connections accepted
    abandoned: int  # responses whose client went away before their last byte
    window_s: float | None  # first chat/generate arrival to the last reply written

    def count(self, path: str = CHAT) -> int:
        """Requests that reached ``path``."""
        return self.requests.get(path, 0)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (what ``GET /_fake/stats`` answers)."""
        return {
            "requests": dict(self.requests),
            "replies": self.replies,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "connections": self.connections,
            "abandoned": self.abandoned,
            "window_s": self.window_s,
        }


class FakeServerError(AssertionError):
    """The fake's own code or a reply function raised (a bug in the test, not a fault)."""


# -- requests and responses on the wire ----------------------------------------------------------


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request: ``json`` is the decoded body (None when empty or not JSON); ``chat`` the
    :class:`ChatRequest` of a well-formed chat/generate request, else None."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    json: Any
    chat: ChatRequest | None

    @property
    def model(self) -> str | None:
        """The model the body names (``model``, or the older ``name``)."""
        if isinstance(self.json, dict):
            for key in ("model", "name"):
                if isinstance(self.json.get(key), str):
                    return str(self.json[key])
        return None

    @property
    def sample_id(self) -> int | None:
        """The record id a chat/generate request starts with, else None."""
        return self.chat.sample_id if self.chat is not None else None


@dataclass(frozen=True)
class Response:
    """An HTTP response: ``body`` as it goes on the wire (chunk-framed when ``chunked``).

    ``reply`` marks a model reply: it counts in :attr:`Stats.replies` once its last byte is
    written.
    """

    status: int
    body: bytes = b""
    content_type: str = _JSON
    headers: tuple[tuple[str, str], ...] = ()
    chunked: bool = False
    reply: bool = False

    @classmethod
    def json_body(
        cls, data: Any, status: int = 200, headers: Sequence[tuple[str, str]] = ()
    ) -> Response:
        """A JSON response."""
        return cls(status, json.dumps(data).encode(), _JSON, tuple(headers))

    @classmethod
    def error(cls, status: int, message: str, headers: Sequence[tuple[str, str]] = ()) -> Response:
        """Ollama's error shape: ``{"error": message}``."""
        return cls.json_body({"error": message}, status, headers)

    @classmethod
    def text(cls, status: int, text: str) -> Response:
        """A plain-text response (Ollama's ``404 page not found``, ``Ollama is running``)."""
        return cls(status, text.encode(), "text/plain; charset=utf-8")

    @classmethod
    def ndjson(cls, lines: Sequence[Mapping[str, Any]], *, reply: bool = False) -> Response:
        """A streamed answer: one JSON object per line, one HTTP chunk per line."""
        chunks = []
        for line in lines:
            data = json.dumps(line).encode() + b"\n"
            chunks.append(b"%x\r\n%s\r\n" % (len(data), data))
        return cls(200, b"".join(chunks) + b"0\r\n\r\n", _NDJSON, chunked=True, reply=reply)

    def head(self) -> bytes:
        """Status line and headers."""
        reason = http.server.BaseHTTPRequestHandler.responses.get(self.status, ("",))[0]
        lines = [
            f"HTTP/1.1 {self.status} {reason}",
            f"Content-Type: {self.content_type}",
            f"Date: {email.utils.formatdate(usegmt=True)}",
            "Transfer-Encoding: chunked" if self.chunked else f"Content-Length: {len(self.body)}",
            *(f"{name}: {value}" for name, value in self.headers),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Fault(Protocol):
    """What a fault layer plays instead of the normal answer (see :mod:`mimicry.testing.faults`).

    ``play`` answers through the exchange: :meth:`Exchange.answer` builds the normal answer,
    :meth:`Exchange.send` writes any response (whole, in pieces, or cut), :meth:`Exchange.drop`
    closes the connection, :meth:`Exchange.die` stops the whole server.
    """

    def play(self, exchange: Exchange) -> None: ...


class _Stopped(Exception):
    """The server is stopping: the exchange ends without an answer."""


class Exchange:
    """One request being answered: what a :class:`Fault` works with."""

    def __init__(
        self, fake: FakeOllama, handler: _Handler, server: _Server, request: HttpRequest
    ) -> None:
        self.fake = fake
        self.request = request
        self._handler = handler
        self._server = server

    def answer(self, reply: str | Reply | None = None) -> Response:
        """The normal answer to the request (for chat/generate after the latency, holding a
        slot); ``reply`` replaces the model's reply. Raises if the server stops meanwhile."""
        return self.fake._answer(self, reply)

    def send(
        self,
        response: Response,
        *,
        pieces: int = 1,
        gap_s: float = 0.0,
        cut_after: int | None = None,
    ) -> bool:
        """Write ``response``: whole, or its body in ``pieces`` ``gap_s`` apart (the first with
        the headers), or only its first ``cut_after`` body bytes and then close the connection.
        Returns False when the client went away or the server stopped first."""
        return self.fake._send(self, response, pieces=pieces, gap_s=gap_s, cut_after=cut_after)

    def drop(self) -> None:
        """Close the connection now, without (more of) an answer."""
        self._handler.close_connection = True
        with contextlib.suppress(OSError):
            self._handler.connection.shutdown(socket.SHUT_RDWR)

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless the server stops first; True when it is stopping."""
        return self._server.stopping.wait(seconds)

    def die(self) -> None:
        """The server dies: it stops listening (connections are refused) and drops every
        connection, this one included. :meth:`FakeOllama.start` brings it back on its port."""
        self.fake._die(self._server)


# -- the server ----------------------------------------------------------------------------------


class FakeOllama:
    """A fake Ollama server on a loopback port, serving ``models`` (default: one
    :class:`FakeModel`). Use it as a context manager, or :meth:`start` and :meth:`stop`.

    ``latency_s`` is how long each chat/generate reply takes; ``slots`` how many are computed
    at once (Ollama's ``OLLAMA_NUM_PARALLEL``; later requests queue; None: no limit).
    ``port=0`` takes a free port, kept across :meth:`stop` and :meth:`start`. ``keep_log=False``
    keeps only the counters, not each request (:attr:`log`, :attr:`chat_bodies`): for long runs.

    Counters (:meth:`count`, :meth:`stats`, :attr:`log`) can be waited on with
    :meth:`wait_until`, which wakes on every request and reply, never polls.
    """

    def __init__(
        self,
        *models: FakeModel,
        latency_s: float = 0.0,
        slots: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        version: str = DEFAULT_VERSION,
        keep_log: bool = True,
    ) -> None:
        if not (isinstance(latency_s, int | float) and math.isfinite(latency_s)) or latency_s < 0:
            raise ValueError(f"latency_s={latency_s!r}: must be a finite number of seconds >= 0")
        if slots is not None and (
            isinstance(slots, bool) or not isinstance(slots, int) or slots < 1
        ):
            raise ValueError(f"slots={slots!r}: must be an int >= 1, or None for no limit")
        for model in models:
            if not isinstance(model, FakeModel):
                raise TypeError(f"{model!r}: pass FakeModel(...) objects as the models")
        self.latency_s = float(latency_s)
        self.slots = slots
        self.host = host
        self.port = port
        self.version = version
        self.keep_log = keep_log
        #: exceptions raised by the fake's own code or a reply function
        self.errors: list[BaseException] = []
        self._models: dict[str, FakeModel] = {}
        for model in models or (FakeModel(),):
            self._models[_canonical(model.name)] = model
        self._cond = threading.Condition(threading.RLock())
        self._slots = threading.Semaphore(slots) if slots is not None else None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._old: list[_Server] = []  # stopped or died, connections not yet reaped
        self._in_flight_now = 0
        self._reset_counters()

    # -- models ----------------------------------------------------------------------------

    @property
    def model(self) -> FakeModel:
        """The first model (the only one, usually)."""
        with self._cond:
            for model in self._models.values():
                return model
        raise LookupError("the fake Ollama server serves no model: put_model() one")

    @property
    def models(self) -> dict[str, FakeModel]:
        """The models served, by name."""
        with self._cond:
            return {m.name: m for m in self._models.values()}

    def put_model(self, model: FakeModel) -> FakeOllama:
        """Serve ``model``, replacing the one of the same name (e.g. a new digest after a pull:
        ``fake.put_model(dataclasses.replace(fake.model, digest="f" * 64))``)."""
        with self._cond:
            self._models[_canonical(model.name)] = model
        return self

    def remove_model(self, name: str) -> FakeOllama:
        """Stop serving ``name``: it is no longer listed, and requests for it get a 404."""
        with self._cond:
            if self._models.pop(_canonical(name), None) is None:
                raise KeyError(f"{name!r} is not served; served: {sorted(self.models)}")
        return self

    def _lookup(self, name: object) -> FakeModel | None:
        if not isinstance(name, str):
            return None
        with self._cond:
            return self._models.get(_canonical(name))

    # -- life cycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://host:port`` (the port is known once started)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether it accepts connections."""
        return self._server is not None

    def start(self) -> FakeOllama:
        """Listen on ``port`` (a free one the first time, the same one after :meth:`stop`)."""
        if self._server is not None:
            raise RuntimeError(f"the fake Ollama server at {self.url} is already running")
        self._reap()
        server = _Server((self.host, self.port), self)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": _POLL_S},
            name=f"fake-ollama:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (connections are then refused), end every connection and join every
        thread. Idempotent."""
        server = self._server
        if server is not None:
            self._close_listener(server)
            with self._cond:
                self._old.append(server)
        self._reap()

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.stop()
        if exc_type is None:
            self.check()

    def check(self) -> None:
        """Raise :class:`FakeServerError` if the fake's code or a reply function raised (the
        context manager does this on exit)."""
        if self.errors:
            raise FakeServerError(
                f"the fake Ollama server's own code failed {len(self.errors)} time(s); "
                f"first: {self.errors[0]!r}"
            ) from self.errors[0]

    def _close_listener(self, server: _Server) -> None:
        server.stopping.set()
        with self._cond:
            if self._server is server:
                self._server = None
        if not server.closed:
            server.closed = True
            server.shutdown()  # returns once the accept loop is out (within _POLL_S)
            server.server_close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(_JOIN_S)
            self._thread = None

    def _die(self, server: _Server) -> None:
        self._close_listener(server)
        with self._cond:
            self._old.append(server)
        server.drop_connections()

    def _reap(self) -> None:
        """End the connections of stopped or dead listeners and join their threads."""
        while True:
            with self._cond:
                if not self._old:
                    return
                server = self._old.pop()
            server.drop_connections()
            for thread in server.threads():
                if thread is threading.current_thread():
                    continue
                thread.join(_JOIN_S)
                if thread.is_alive():
                    self.errors.append(
                        RuntimeError(f"{thread.name} did not end within {_JOIN_S:g}s of stop()")
                    )

    # -- counters --------------------------------------------------------------------------

    def _reset_counters(self) -> None:
        with self._cond:
            self._requests: Counter[str] = Counter()
            self._log: list[Served] = []
            self._replies = 0
            self._max_in_flight = self._in_flight_now
            self._connections = 0
            self._abandoned = 0
            self._first_arrival: float | None = None
            self._last_reply: float | None = None
            self._cond.notify_all()

    def reset_counters(self) -> FakeOllama:
        """Forget what was counted and logged (replies in flight stay in flight)."""
        self._reset_counters()
        return self

    def stats(self) -> Stats:
        """The counters now."""
        with self._cond:
            window = None
            if self._first_arrival is not None and self._last_reply is not None:
                window = self._last_reply - self._first_arrival
            return Stats(
                requests=dict(self._requests),
                replies=self._replies,
                in_flight=self._in_flight_now,
                max_in_flight=self._max_in_flight,
                connections=self._connections,
                abandoned=self._abandoned,
                window_s=window,
            )

    def count(self, path: str = CHAT) -> int:
        """Requests that reached ``path`` (faulted ones too)."""
        with self._cond:
            return self._requests[path]

    @property
    def requests(self) -> Counter[str]:
        """Requests per path."""
        with self._cond:
            return Counter(self._requests)

    @property
    def replies_sent(self) -> int:
        """Chat/generate replies written to the last byte (what a client may have stored)."""
        with self._cond:
            return self._replies

    @property
    def max_in_flight(self) -> int:
        """The most replies computed at once."""
        with self._cond:
            return self._max_in_flight

    @property
    def log(self) -> list[Served]:
        """Every request, in arrival order (empty with ``keep_log=False``)."""
        with self._cond:
            return list(self._log)

    def chat_log(self, sample_id: int | None = None) -> list[Served]:
        """The ``/api/chat`` requests, in arrival order (only those for ``sample_id`` if given)."""
        with self._cond:
            return [
                s
                for s in self._log
                if s.path == CHAT and (sample_id is None or s.sample_id == sample_id)
            ]

    @property
    def chat_bodies(self) -> list[Any]:
        """The decoded bodies of the ``/api/chat`` requests, in arrival order."""
        return [s.body for s in self.chat_log()]

    def wait_until(self, predicate: Callable[[Stats], bool], timeout: float = 30.0) -> Stats:
        """Block until ``predicate(self.stats())`` holds (checked on every change); return those
        stats. Raises TimeoutError after ``timeout`` seconds, with the counters in the message."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self.stats()), timeout):
                raise TimeoutError(
                    f"the fake Ollama server's counters did not reach the condition within "
                    f"{timeout:g}s: {self.stats().to_dict()}"
                )
            return self.stats()

    def wait_for_requests(self, n: int, path: str = CHAT, timeout: float = 30.0) -> Stats:
        """Block until at least ``n`` requests reached ``path``."""
        return self.wait_until(lambda stats: stats.count(path) >= n, timeout)

    # -- serving (in the connection threads) -----------------------------------------------

    def _fault_for(self, request: HttpRequest) -> Fault | None:
        """The fault to play on ``request`` instead of the answer: none here (a fault layer
        overrides this; see :class:`mimicry.testing.faults.FaultyOllama`)."""
        return None

    def _accepted(self) -> None:
        with self._cond:
            self._connections += 1
            self._cond.notify_all()

    def _handle(self, handler: _Handler, server: _Server) -> None:
        try:
            request = _read_request(handler)
        except _ClientGone:
            handler.close_connection = True
            return
        except _BadRequest as exc:
            handler.close_connection = True
            self._write(handler, exc.response.head() + exc.response.body)
            return
        exchange = Exchange(self, handler, server, request)
        if request.path == STATS:
            exchange.send(Response.json_body(self.stats().to_dict()))
            return
        if request.path == RESET and request.method == "POST":
            self.reset_counters()
            exchange.send(Response.json_body(self.stats().to_dict()))
            return
        try:
            fault = self._fault_for(request)
            self._arrived(request, fault)
            if fault is None:
                exchange.send(exchange.answer())
            else:
                fault.play(exchange)
        except _Stopped:
            exchange.drop()
        except Exception as exc:  # a bug in a reply function or a fault: the test must see it
            with self._cond:
                self.errors.append(exc)
            exchange.send(Response.error(500, f"the fake server failed: {exc!r}"))
            exchange.drop()

    def _arrived(self, request: HttpRequest, fault: Fault | None) -> None:
        with self._cond:
            self._requests[request.path] += 1
            if request.path in (CHAT, GENERATE) and self._first_arrival is None:
                self._first_arrival = time.monotonic()
            if self.keep_log:
                self._log.append(
                    Served(
                        method=request.method,
                        path=request.path,
                        at=time.monotonic(),
                        body=request.json,
                        headers=request.headers,
                        model=request.model,
                        sample_id=request.sample_id,
                        fault=type(fault).__name__ if fault is not None else None,
                    )
                )
            self._cond.notify_all()

    def _answer(self, exchange: Exchange, reply: str | Reply | None) -> Response:
        request = exchange.request
        route = (request.method, request.path)
        if route == ("GET", "/"):
            return Response.text(200, "Ollama is running")
        if route == ("GET", VERSION):
            return Response.json_body({"version": self.version})
        if route == ("GET", TAGS):
            with self._cond:
                models = list(self._models.values())
            return Response.json_body({"models": [_tag(m) for m in models]})
        if route == ("POST", SHOW):
            model = self._lookup(request.model)
            if model is None:
                return _not_found(request.model)
            return Response.json_body(_show(model))
        if route in (("POST", CHAT), ("POST", GENERATE)):
            return self._generate(exchange, reply)
        return Response.text(404, "404 page not found")

    def _generate(self, exchange: Exchange, override: str | Reply | None) -> Response:
        request = exchange.request
        if not isinstance(request.json, dict):
            return Response.error(400, "the request body must be a JSON object")
        if request.model is None:
            return Response.error(400, "model is required")
        model = self._lookup(request.model)
        if model is None:
            return _not_found(request.model)
        chat = request.chat
        if chat is None:
            what = "messages" if request.path == CHAT else "prompt"
            return Response.error(400, f"invalid {what}: see Ollama's API for its shape")
        with self._slot(exchange):
            if self.latency_s and exchange.wait(self.latency_s):
                raise _Stopped
            produced = override if override is not None else model.reply(chat)
        if isinstance(produced, str):
            produced = Reply(produced)
        if not isinstance(produced, Reply):
            raise TypeError(
                f"the reply function of {model.name!r} returned {produced!r}: "
                "return a str or a mimicry.testing.Reply"
            )
        # the configured latency, not the time measured: replies are reproducible byte for byte
        took_ns = max(1, int(self.latency_s * 1e9))
        return _reply_response(model, chat, produced, request.json.get("stream", True), took_ns)

    @contextlib.contextmanager
    def _slot(self, exchange: Exchange) -> Iterator[None]:
        slots = self._slots
        if slots is not None:
            while not slots.acquire(timeout=_POLL_S):  # queued; a stop must end the wait
                if exchange._server.stopping.is_set():
                    raise _Stopped
        with self._cond:
            self._in_flight_now += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight_now)
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._in_flight_now -= 1
                self._cond.notify_all()
            if slots is not None:
                slots.release()

    def _send(
        self,
        exchange: Exchange,
        response: Response,
        *,
        pieces: int,
        gap_s: float,
        cut_after: int | None,
    ) -> bool:
        handler = exchange._handler
        body = response.body if cut_after is None else response.body[: max(0, cut_after)]
        if pieces <= 1:
            parts = [body]
        else:
            size = max(1, -(-len(body) // pieces))
            parts = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
        complete = response.reply and cut_after is None
        for index, part in enumerate(parts):
            if index and gap_s and exchange.wait(gap_s):
                exchange.drop()
                return False
            data = response.head() + part if index == 0 else part
            last = index == len(parts) - 1
            if last and complete:
                # counted before the last write, so that a client holding the whole reply never
                # sees the counter lag behind; taken back if that write fails
                self._count_reply(+1)
            if not self._write(handler, data):
                with self._cond:
                    if last and complete:
                        self._count_reply(-1)
                    self._abandoned += 1
                    self._cond.notify_all()
                return False
        if cut_after is not None:
            exchange.drop()
            return False
        return True

    def _count_reply(self, change: int) -> None:
        with self._cond:
            self._replies += change
            if change > 0:
                self._last_reply = time.monotonic()
            self._cond.notify_all()

    @staticmethod
    def _write(handler: _Handler, data: bytes) -> bool:
        try:
            handler.wfile.write(data)
        except OSError:  # the client went away (or the server dropped the connection)
            handler.close_connection = True
            return False
        return True


# -- the HTTP plumbing ---------------------------------------------------------------------------


class _BadRequest(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


class _ClientGone(Exception):
    pass


def _read_body(handler: _Handler) -> bytes:
    rfile = handler.rfile
    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        data = bytearray()
        while True:
            line = rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise _BadRequest(Response.error(400, "malformed chunked body")) from None
            if size == 0:
                while rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(data)
            if len(data) + size > _MAX_BODY:
                raise _BadRequest(Response.error(413, "request body too large"))
            chunk = rfile.read(size)
            if len(chunk) < size:
                raise _ClientGone
            data += chunk
            rfile.readline(1024)
    try:
        length = int(handler.headers.get("Content-Length") or 0)
    except ValueError:
        raise _BadRequest(Response.error(400, "malformed Content-Length")) from None
    if length > _MAX_BODY:
        raise _BadRequest(Response.error(413, "request body too large"))
    body = rfile.read(length) if length > 0 else b""
    if len(body) < length:
        raise _ClientGone
    return body


def _read_request(handler: _Handler) -> HttpRequest:
    # absolute-form targets (a client using the fake as its HTTP proxy) have the path too
    path = urllib.parse.urlsplit(handler.path).path or "/"
    headers = {name.lower(): value for name, value in handler.headers.items()}
    body = _read_body(handler)
    decoded: Any = None
    if body:
        try:
            decoded = json.loads(body)
        except ValueError:
            decoded = None
    return HttpRequest(
        method=handler.command,
        path=path,
        headers=headers,
        body=body,
        json=decoded,
        chat=_chat_request(path, decoded),
    )


def _chat_request(path: str, body: Any) -> ChatRequest | None:
    if path not in (CHAT, GENERATE) or not isinstance(body, dict):
        return None
    model = body.get("model")
    options = body.get("options") or {}
    if not isinstance(model, str) or not isinstance(options, dict):
        return None
    if path == CHAT:
        messages = body.get("messages") or []
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            return None
    else:
        prompt, system = body.get("prompt") or "", body.get("system") or ""
        if not isinstance(prompt, str) or not isinstance(system, str):
            return None
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
    return ChatRequest(model=model, messages=messages, options=options, endpoint=path)


def _not_found(name: str | None) -> Response:
    return Response.error(404, f"model '{name}' not found")


def _tag(model: FakeModel) -> dict[str, Any]:
    return {
        "name": model.name,
        "model": model.name,
        "modified_at": _CREATED_AT,
        "size": 1,
        "digest": model.digest,
        "details": model.details(),
    }


def _show(model: FakeModel) -> dict[str, Any]:
    return {
        "license": "",
        "modelfile": f"# Modelfile of a fake model\nFROM {model.name}\n",
        "parameters": "",
        "template": "{{ .Prompt }}",
        "details": model.details(),
        "model_info": {
            "general.architecture": model.family,
            "general.parameter_count": 1,
            f"{model.family}.context_length": model.context_length,
        },
        "capabilities": ["completion"],
        "modified_at": _CREATED_AT,
    }


def _reply_response(
    model: FakeModel, chat: ChatRequest, reply: Reply, stream: object, took_ns: int
) -> Response:
    prompt_chars = sum(len(str(m.get("content", ""))) for m in chat.messages)
    num_ctx = chat.num_ctx or model.context_length
    prompt_eval_count = reply.prompt_eval_count
    if prompt_eval_count is None:
        prompt_eval_count = min(max(1, prompt_chars // 4), num_ctx)
    eval_count = reply.eval_count if reply.eval_count is not None else max(1, len(reply.text) // 4)
    is_chat = chat.endpoint == CHAT

    def line(text: str, done: bool) -> dict[str, Any]:
        data: dict[str, Any] = {"model": model.name, "created_at": _CREATED_AT}
        if is_chat:
            data["message"] = {"role": "assistant", "content": text}
        else:
            data["response"] = text
        data["done"] = done
        if done:
            data.update(
                done_reason=reply.done_reason,
                total_duration=took_ns + 2000,
                load_duration=1000,
                prompt_eval_count=prompt_eval_count,
                prompt_eval_duration=1000,
                eval_count=eval_count,
                eval_duration=took_ns,
            )
        return data

    if stream is False:
        return dataclasses.replace(Response.json_body(line(reply.text, True)), reply=True)
    pieces = [line(word, False) for word in _WORDS.findall(reply.text)]
    return Response.ndjson([*pieces, line("", True)], reply=True)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Ollama
    disable_nagle_algorithm = True  # else each small reply waits for the client's delayed ACK
    server_version = "fake-ollama"
    sys_version = ""

    def _fake(self) -> None:
        server = cast(_Server, self.server)
        server.fake._handle(self, server)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _fake

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass  # no request log on stderr


class _Server(http.server.ThreadingHTTPServer):
    """One listening socket and its connections; a stopped or dead one is never reused."""

    daemon_threads = True
    block_on_close = False  # joined by FakeOllama itself, after dropping the connections
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], fake: FakeOllama) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.fake = fake
        self.stopping = threading.Event()
        self.closed = False
        self._lock = threading.Lock()
        self._connections: dict[threading.Thread, socket.socket] = {}
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can take seconds
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"fake-ollama-connection:{self.server_port}",
            daemon=True,
        )
        with self._lock:
            self._connections[thread] = request
        self.fake._accepted()
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._connections.pop(threading.current_thread(), None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if error is not None and not isinstance(error, OSError):  # OSError: the client left
            self.fake.errors.append(error)

    def drop_connections(self) -> None:
        with self._lock:
            sockets = list(self._connections.values())
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def threads(self) -> list[threading.Thread]:
        with self._lock:
            return list(self._connections)


# -- running it alone ----------------------------------------------------------------------------

_REPLY_FUNCTIONS: dict[str, ReplyFn] = {
    "imitating": imitating_reply,
    "plain": plain_answer,
    "mixed": mixed_reply,
}


def _load_pinned(path: Path) -> dict[int, str | Reply]:
    """``{"887722": "reply text", "933555": {"text": ..., "done_reason": "length"}}``."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object of record id -> reply")
    pinned: dict[int, str | Reply] = {}
    for key, value in data.items():
        pinned[int(key)] = value if isinstance(value, str) else Reply(**value)
    return pinned


def _write_ready_file(path: Path, url: str) -> None:
    # atomically: whoever waits for the file never reads half a URL
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(url + "\n")
    os.replace(tmp, path)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m mimicry.testing.fake_ollama``."""
    parser = argparse.ArgumentParser(
        prog="python -m mimicry.testing.fake_ollama",
        description="A fake Ollama server. Prints its URL on the first line of stdout once it "
        "accepts connections, and serves until SIGTERM or Ctrl-C. GET /_fake/stats reads its "
        "counters, POST /_fake/reset clears them.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument("--port", type=int, default=0, help="0: a free port (default)")
    parser.add_argument("--ready-file", type=Path, help="also write the URL to this file")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="time per reply")
    parser.add_argument("--slots", type=int, help="replies computed at once (default: no limit)")
    parser.add_argument(
        "--model",
        action="append",
        help=f"a model to serve, repeatable (default: {DEFAULT_MODEL})",
    )
    parser.add_argument("--context-length", type=int, default=32768)
    parser.add_argument(
        "--reply",
        choices=sorted(_REPLY_FUNCTIONS),
        default="imitating",
        help="how the models answer (default: imitating)",
    )
    parser.add_argument(
        "--replies",
        type=Path,
        help="replies pinned per record id, a JSON object: "
        '{"887722": "text", "933555": {"text": "...", "done_reason": "length"}}; '
        "other records get --reply",
    )
    parser.add_argument("--keep-log", action="store_true", help="keep every request in memory")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fake until SIGTERM/SIGINT; exit status 0 after a clean stop, 2 on a usage error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.latency_ms < 0 or (args.slots is not None and args.slots < 1):
        parser.error(f"--latency-ms {args.latency_ms!r} / --slots {args.slots!r}: need >= 0 / >= 1")
    reply = _REPLY_FUNCTIONS[args.reply]
    if args.replies is not None:
        try:
            reply = replies_by_id(_load_pinned(args.replies), default=reply)
        except (OSError, ValueError, TypeError) as exc:
            parser.error(f"--replies {str(args.replies)!r}: {exc}")
    try:
        models = [
            FakeModel(name, reply=reply, context_length=args.context_length)
            for name in args.model or [DEFAULT_MODEL]
        ]
    except ValueError as exc:
        parser.error(str(exc))
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    can_sigwait = hasattr(signal, "pthread_sigmask") and hasattr(signal, "sigwait")
    if can_sigwait:
        # blocked before any thread starts, so that every thread inherits the mask and only
        # sigwait below receives them
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    fake = FakeOllama(
        *models,
        latency_s=args.latency_ms / 1000,
        slots=args.slots,
        host=args.host,
        port=args.port,
        keep_log=args.keep_log,
    )
    try:
        fake.start()
    except OSError as exc:
        sys.stderr.write(f"fake_ollama: cannot listen on {args.host}:{args.port}: {exc}\n")
        return 1
    try:
        if args.ready_file is not None:
            _write_ready_file(args.ready_file, fake.url)
        sys.stdout.write(fake.url + "\n")
        sys.stdout.flush()
        if can_sigwait:
            signal.sigwait(stop_signals)
        else:  # pragma: no cover - Windows
            stopped = threading.Event()
            for number in stop_signals:
                signal.signal(number, lambda *_: stopped.set())
            while not stopped.wait(0.5):
                pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
