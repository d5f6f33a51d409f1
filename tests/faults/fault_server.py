"""A fake Ollama server whose faults are scripted request by request.

A real HTTP server (werkzeug's threaded WSGI server, the engine under pytest-httpserver) that speaks
Ollama's wire format for ``/api/version``, ``/api/tags``, ``/api/show`` and ``/api/chat``. What it
does with each request is stated by the test: a queue of :data:`Behaviour` values per path (and,
ahead of it, per sample id, so a script holds under xdist too), then a default per path::

    server.script(Status(503, retry_after="1"), Status(503, retry_after="1"), Answer())
    server.script(Hang(30), sample_id=887722)
    server.script(Answer(), Answer(), then=ModelMissing())   # the model is gone after 2 replies

Every request is logged (path, sample id, what was done, the Authorization header), so tests
count model calls exactly. Faults it can play: refusing connections (:meth:`FaultServer.stop`,
or :class:`Die` mid-run), hanging past the client's timeout, 4xx/5xx with or without
``Retry-After``, closing the connection mid-body, malformed or truncated JSON, a body sent
slowly in pieces, and the model missing mid-run.
"""

from __future__ import annotations

import ast
import collections
import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from werkzeug import Request, Response
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from tests.fake_ollama import ReplyFn, imitating_reply

CHAT = "/api/chat"
PATHS = ("/api/version", "/api/tags", "/api/show", CHAT)


# -- behaviours --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """Answer like Ollama; on /api/chat with ``content`` (default: the server's reply function)."""

    content: str | None = None
    done_reason: str = "stop"


@dataclass(frozen=True)
class Status:
    """An HTTP error status with Ollama's ``{"error": ...}`` body, optionally ``Retry-After``."""

    code: int
    retry_after: str | None = None
    error: str = "the server is busy"


@dataclass(frozen=True)
class Hang:
    """Say nothing for ``seconds`` (cut short when the server stops), then answer."""

    seconds: float = 30.0


@dataclass(frozen=True)
class CloseMidBody:
    """Promise the whole answer (``Content-Length``), send the first ``keep`` share, close."""

    keep: float = 0.5


@dataclass(frozen=True)
class BadBody:
    """A complete HTTP response whose body is not what Ollama sends (malformed/truncated JSON)."""

    body: bytes
    status: int = 200
    content_type: str = "application/json"


@dataclass(frozen=True)
class SlowBody:
    """Send the answer in ``pieces`` parts, ``gap_s`` apart (``Content-Length`` set up front)."""

    pieces: int = 4
    gap_s: float = 0.1


@dataclass(frozen=True)
class ModelMissing:
    """What Ollama answers when the model was removed: 404, ``model "x" not found``."""


@dataclass(frozen=True)
class Die:
    """The server dies: it stops listening (later connections are refused) and drops this one."""


Behaviour = Answer | Status | Hang | CloseMidBody | BadBody | SlowBody | ModelMissing | Die


@dataclass(frozen=True)
class Served:
    """One request as the server saw it."""

    path: str
    sample_id: int | None
    behaviour: str
    authorization: str | None
    at: float  # time.monotonic() when it arrived


# -- the server ----------------------------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    """werkzeug's handler without its request log (it would write to whichever stderr it found)."""

    def log(self, type: str, message: str, *args: Any) -> None:  # noqa: A002 - werkzeug's name
        pass


_SAMPLE_ID = re.compile(r"""^\{\s*['"]id['"]\s*:\s*(-?\d+)""")


class FaultServer:
    """A scripted fake Ollama server on a free loopback port. Use as a context manager."""

    def __init__(
        self,
        *,
        model: str = "fault-model:1b",
        digest: str | None = None,
        context_length: int = 32768,
        reply: ReplyFn = imitating_reply,
        port: int = 0,
    ) -> None:
        self.model = model
        self.digest = digest or hashlib.sha256(model.encode()).hexdigest()
        self.context_length = context_length
        self.reply = reply
        self.port = port
        self.log: list[Served] = []
        #: chat requests answered with a complete reply (what a client may have cached)
        self.replies_sent = 0
        #: exceptions raised by this server's own code (a bug in the fault server, not a fault)
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._queues: dict[str, collections.deque[Behaviour]] = collections.defaultdict(
            collections.deque
        )
        self._by_sample: dict[int, collections.deque[Behaviour]] = collections.defaultdict(
            collections.deque
        )
        self._defaults: dict[str, Behaviour] = {}
        self._stopping = threading.Event()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting ---------------------------------------------------------------------------

    def script(
        self,
        *behaviours: Behaviour,
        path: str = CHAT,
        sample_id: int | None = None,
        then: Behaviour | None = None,
    ) -> FaultServer:
        """Queue what the next requests get (for one sample id, else for ``path``).

        ``then`` replaces the path's default (:class:`Answer` unless set): what every request
        gets once the queues are empty. A sample's queue is consulted before the path's.
        """
        if path not in PATHS:
            raise ValueError(f"path {path!r}: the fault server serves {', '.join(PATHS)}")
        with self._lock:
            queue = self._by_sample[sample_id] if sample_id is not None else self._queues[path]
            queue.extend(behaviours)
            if then is not None:
                self._defaults[path] = then
        return self

    def reset(self) -> FaultServer:
        """Forget the scripts and defaults (the log stays): every request is answered again."""
        with self._lock:
            self._queues.clear()
            self._by_sample.clear()
            self._defaults.clear()
        return self

    def _next(self, path: str, sample_id: int | None) -> Behaviour:
        with self._lock:
            if sample_id is not None and self._by_sample[sample_id]:
                return self._by_sample[sample_id].popleft()
            if self._queues[path]:
                return self._queues[path].popleft()
            return self._defaults.get(path, Answer())

    # -- what tests read ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self, path: str = CHAT) -> int:
        """How many requests reached ``path``."""
        with self._lock:
            return sum(1 for s in self.log if s.path == path)

    def chat_log(self, sample_id: int | None = None) -> list[Served]:
        """The chat requests, in arrival order (only those for ``sample_id`` if given)."""
        with self._lock:
            return [
                s
                for s in self.log
                if s.path == CHAT and (sample_id is None or s.sample_id == sample_id)
            ]

    def check(self) -> None:
        """Raise the first error of the server's own code (call at the end of a test)."""
        if self.errors:
            raise AssertionError(f"the fault server itself failed: {self.errors[0]!r}")

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> FaultServer:
        """Listen (again) on ``port`` (a free one the first time)."""
        if self._server is not None:
            raise RuntimeError("the fault server is already running")
        self._stopping.clear()
        server = make_server(
            "127.0.0.1",
            self.port,
            Request.application(self._app),
            threaded=True,
            request_handler=_QuietHandler,
        )
        self.port = server.port
        self._server = server
        # a short poll interval: stopping (and Die) must be quick
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: from now on connections to :attr:`url` are refused. Idempotent."""
        self._stopping.set()
        self._close_listener()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None

    def _close_listener(self) -> None:
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    @property
    def running(self) -> bool:
        return self._server is not None

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving -----------------------------------------------------------------------------

    def _app(self, request: Request) -> Response:
        try:
            return self._serve(request)
        except Exception as exc:  # a bug in this file: make the test fail, not the client
            self.errors.append(exc)
            raise

    def _serve(self, request: Request) -> Response:
        body = request.get_json(silent=True) if request.method == "POST" else None
        body = body if isinstance(body, dict) else {}
        content = _last_content(body)
        sample_id = _sample_id(content)
        behaviour = self._next(request.path, sample_id)
        with self._lock:
            self.log.append(
                Served(
                    path=request.path,
                    sample_id=sample_id,
                    behaviour=type(behaviour).__name__,
                    authorization=request.headers.get("Authorization"),
                    at=time.monotonic(),
                )
            )
        if request.path not in PATHS:
            return _json({"error": "404 page not found"}, 404)
        if isinstance(behaviour, Die):
            self._close_listener()
            _drop(request)
            return Response(b"", 500)  # never reaches the client: the socket is shut
        if isinstance(behaviour, Status):
            headers = {"Retry-After": behaviour.retry_after} if behaviour.retry_after else {}
            return _json({"error": behaviour.error}, behaviour.code, headers)
        if isinstance(behaviour, BadBody):
            return Response(
                behaviour.body, status=behaviour.status, content_type=behaviour.content_type
            )
        if isinstance(behaviour, ModelMissing):
            name = body.get("model", self.model)
            return _json({"error": f'model "{name}" not found, try pulling it first'}, 404)
        if isinstance(behaviour, Hang):
            self._stopping.wait(behaviour.seconds)
        answer = self._answer(request.path, body, content, behaviour)
        if isinstance(behaviour, CloseMidBody):
            cut = max(1, min(len(answer) - 1, int(len(answer) * behaviour.keep)))
            return _partial(answer, [answer[:cut]])
        if isinstance(behaviour, SlowBody):
            pieces = _split(answer, behaviour.pieces)
            return _partial(answer, pieces, gap_s=behaviour.gap_s, stopping=self._stopping)
        return Response(answer, status=200, content_type="application/json")

    def _answer(self, path: str, body: dict[str, Any], content: str, how: Behaviour) -> bytes:
        if path == "/api/version":
            return _dumps({"version": "0.0.0-faults"})
        if path == "/api/tags":
            return _dumps({"models": [self._tag()]})
        if path == "/api/show":
            return _dumps(self._show())
        text = how.content if isinstance(how, Answer) and how.content is not None else None
        if text is None:
            text = self.reply(_record(content), content)
        done_reason = how.done_reason if isinstance(how, Answer) else "stop"
        with self._lock:
            self.replies_sent += 1
        return _dumps(
            {
                "model": self.model,
                "created_at": "2026-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": text},
                "done": True,
                "done_reason": done_reason,
                "total_duration": 1000,
                "load_duration": 1,
                "prompt_eval_count": max(1, len(content) // 4),
                "prompt_eval_duration": 10,
                "eval_count": max(1, len(text) // 4),
                "eval_duration": 100,
            }
        )

    def _tag(self) -> dict[str, Any]:
        return {
            "name": self.model,
            "model": self.model,
            "digest": self.digest,
            "size": 1,
            "details": {"family": "fake", "parameter_size": "1B", "quantization_level": "Q4_0"},
        }

    def _show(self) -> dict[str, Any]:
        return {
            "details": {"family": "fake", "parameter_size": "1B", "quantization_level": "Q4_0"},
            "model_info": {
                "general.architecture": "fake",
                "fake.context_length": self.context_length,
            },
        }


# -- helpers -------------------------------------------------------------------------------------


def _last_content(body: dict[str, Any]) -> str:
    messages = body.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        content = messages[-1].get("content")
        if isinstance(content, str):
            return content
    return ""


def _sample_id(content: str) -> int | None:
    match = _SAMPLE_ID.match(content)
    return int(match.group(1)) if match else None


def _record(content: str) -> dict[str, Any] | None:
    try:
        record = ast.literal_eval(content)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


def _dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


def _json(data: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(_dumps(data), status=status, content_type="application/json", headers=headers)


def _split(data: bytes, pieces: int) -> list[bytes]:
    size = max(1, -(-len(data) // max(1, pieces)))
    return [data[i : i + size] for i in range(0, len(data), size)]


def _partial(
    whole: bytes,
    pieces: list[bytes],
    *,
    gap_s: float = 0.0,
    stopping: threading.Event | None = None,
) -> Response:
    """A response that declares ``len(whole)`` bytes and sends ``pieces`` (maybe fewer bytes).

    werkzeug closes every connection after its response, so a short body reaches the client as a
    connection closed mid-body.
    """

    def chunks() -> Iterator[bytes]:
        for i, piece in enumerate(pieces):
            if i and gap_s and stopping is not None and stopping.wait(gap_s):
                return
            yield piece

    response = Response(chunks(), status=200, content_type="application/json")
    response.headers["Content-Length"] = str(len(whole))
    return response


def _drop(request: Request) -> None:
    """Shut the request's connection: the client sees it closed without a response."""
    sock = request.environ.get("werkzeug.socket")
    if isinstance(sock, socket.socket):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
