"""Faults played by the fake Ollama server, scripted request by request.

:class:`FaultyOllama` is a :class:`~mimicry.testing.fake_ollama.FakeOllama` that, before
answering, looks for a scripted fault: first in the queue of the request's sample id (the
``'id'`` the user message starts with, so a script holds whichever process or order asks),
then that sample's default, then the queue of the request's path, then the path's default; with
none, it answers normally::

    with FaultyOllama() as fake:
        fake.script(Status(503, retry_after=1), Status(503, retry_after=1), Answer())
        fake.script(Hang(30), sample_id=887722)
        fake.script(Answer(), Answer(), then=ModelMissing())  # the model is gone after 2
        fake.script(path="/api/version", then=Hang(30))        # hangs at start, always

The faults: :class:`Answer` (normally, or with a given reply), :class:`Status` (an error status,
with or without ``Retry-After``), :class:`Hang` (silence, then the answer), :class:`Trickle`
(the answer in pieces, some time apart), :class:`CloseMidBody`, :class:`BadBody` (malformed,
cut or non-object JSON, HTML...), :class:`ModelMissing`, :class:`Drop` (the connection closed,
no answer) and :class:`Die` (the server stops listening; :meth:`FakeOllama.start` revives it).
Refusing connections is :meth:`FakeOllama.stop`. A fault is anything with a ``play(exchange)``
method (:class:`~mimicry.testing.fake_ollama.Fault`), so a test can write its own.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass

from mimicry.testing.fake_ollama import (
    CHAT,
    GENERATE,
    OLLAMA_PATHS,
    Exchange,
    FakeModel,
    FakeOllama,
    Fault,
    HttpRequest,
    Reply,
    Response,
)

__all__ = [
    "Answer",
    "BadBody",
    "CloseMidBody",
    "Die",
    "Drop",
    "FaultyOllama",
    "Hang",
    "ModelMissing",
    "Status",
    "Trickle",
]


def _seconds(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r}: must be a finite number of seconds >= 0")
    if value < 0:
        raise ValueError(f"{name}={value!r}: must be a finite number of seconds >= 0")


@dataclass(frozen=True)
class Answer:
    """Answer normally; on chat/generate with ``reply`` instead of the model's reply."""

    reply: str | Reply | None = None

    def play(self, exchange: Exchange) -> None:
        exchange.send(exchange.answer(self.reply))


@dataclass(frozen=True)
class Status:
    """An HTTP error ``code`` with Ollama's ``{"error": error}`` body, and ``Retry-After`` when
    ``retry_after`` is given (seconds, or the header's text)."""

    code: int
    retry_after: float | str | None = None
    error: str = "the server is busy"

    def __post_init__(self) -> None:
        if isinstance(self.code, bool) or not isinstance(self.code, int):
            raise TypeError(f"Status.code={self.code!r}: must be an HTTP status such as 503")
        if not 400 <= self.code <= 599:
            raise ValueError(f"Status.code={self.code!r}: an error status is 400 to 599")

    def play(self, exchange: Exchange) -> None:
        headers = []
        if self.retry_after is not None:
            value = self.retry_after
            text = value if isinstance(value, str) else f"{value:g}"
            headers.append(("Retry-After", text))
        exchange.send(Response.error(self.code, self.error, headers))


@dataclass(frozen=True)
class Hang:
    """Say nothing for ``seconds`` (cut short, connection dropped, if the server stops), then
    answer normally."""

    seconds: float = 30.0

    def __post_init__(self) -> None:
        _seconds("Hang.seconds", self.seconds)

    def play(self, exchange: Exchange) -> None:
        if exchange.wait(self.seconds):
            exchange.drop()
            return
        exchange.send(exchange.answer())


@dataclass(frozen=True)
class Trickle:
    """The normal answer, its body sent in ``pieces`` parts ``gap_s`` apart (the headers and the
    first part at once): each read gets bytes quickly, the whole takes ``(pieces - 1) *
    gap_s``."""

    pieces: int = 8
    gap_s: float = 0.2

    def __post_init__(self) -> None:
        if isinstance(self.pieces, bool) or not isinstance(self.pieces, int) or self.pieces < 1:
            raise ValueError(f"Trickle.pieces={self.pieces!r}: must be an int >= 1")
        _seconds("Trickle.gap_s", self.gap_s)

    def play(self, exchange: Exchange) -> None:
        exchange.send(exchange.answer(), pieces=self.pieces, gap_s=self.gap_s)


@dataclass(frozen=True)
class CloseMidBody:
    """Promise the whole answer (``Content-Length``, or chunks), send the first ``keep`` share
    of its body (at least a byte, never all), then close the connection."""

    keep: float = 0.5

    def __post_init__(self) -> None:
        if not (isinstance(self.keep, int | float) and 0 <= self.keep <= 1):
            raise ValueError(f"CloseMidBody.keep={self.keep!r}: must be a share from 0 to 1")

    def play(self, exchange: Exchange) -> None:
        response = exchange.answer()
        size = len(response.body)
        cut = max(1, min(size - 1, int(size * self.keep)))
        exchange.send(response, cut_after=cut)


@dataclass(frozen=True)
class BadBody:
    """A complete response whose body is not what Ollama sends: malformed or cut JSON, JSON that
    is not an object (``b"[]"``, ``b"null"``), HTML, invalid UTF-8."""

    body: bytes
    status: int = 200
    content_type: str = "application/json; charset=utf-8"

    def play(self, exchange: Exchange) -> None:
        exchange.send(Response(self.status, self.body, self.content_type))


@dataclass(frozen=True)
class ModelMissing:
    """What Ollama answers once the model was removed: 404 ``model 'x' not found``. (To remove
    a model for every request, use :meth:`FakeOllama.remove_model`.)"""

    def play(self, exchange: Exchange) -> None:
        exchange.send(Response.error(404, f"model '{exchange.request.model}' not found"))


@dataclass(frozen=True)
class Drop:
    """Close the connection without answering (the client sees it closed mid-request)."""

    def play(self, exchange: Exchange) -> None:
        exchange.drop()


@dataclass(frozen=True)
class Die:
    """The server dies: it stops listening (later connections are refused) and drops every
    connection, this one included."""

    def play(self, exchange: Exchange) -> None:
        exchange.die()


class FaultyOllama(FakeOllama):
    """A :class:`FakeOllama` whose answers are scripted request by request (see the module)."""

    def __init__(
        self,
        *models: FakeModel,
        latency_s: float = 0.0,
        slots: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        version: str = "0.0.0-faults",
        keep_log: bool = True,
    ) -> None:
        super().__init__(
            *models,
            latency_s=latency_s,
            slots=slots,
            host=host,
            port=port,
            version=version,
            keep_log=keep_log,
        )
        self._by_path: dict[str, collections.deque[Fault]] = collections.defaultdict(
            collections.deque
        )
        self._by_sample: dict[int, collections.deque[Fault]] = collections.defaultdict(
            collections.deque
        )
        self._path_defaults: dict[str, Fault] = {}
        self._sample_defaults: dict[int, Fault] = {}

    def script(
        self,
        *faults: Fault,
        path: str = CHAT,
        sample_id: int | None = None,
        then: Fault | None = None,
    ) -> FaultyOllama:
        """Queue what the next requests get: those for ``sample_id`` (chat/generate) if given,
        else those to ``path``. ``then`` is what they all get once that queue is empty
        (replacing the earlier ``then``; without one, a normal answer)."""
        if path not in OLLAMA_PATHS:
            raise ValueError(f"path {path!r}: the fake serves {', '.join(OLLAMA_PATHS)}")
        for fault in (*faults, *([then] if then is not None else [])):
            if not callable(getattr(fault, "play", None)):
                raise TypeError(f"{fault!r} is not a fault: it needs a play(exchange) method")
        with self._cond:
            if sample_id is not None:
                self._by_sample[sample_id].extend(faults)
                if then is not None:
                    self._sample_defaults[sample_id] = then
            else:
                self._by_path[path].extend(faults)
                if then is not None:
                    self._path_defaults[path] = then
        return self

    def clear_script(self) -> FaultyOllama:
        """Forget every queued fault and default (the log and counters stay)."""
        with self._cond:
            self._by_path.clear()
            self._by_sample.clear()
            self._path_defaults.clear()
            self._sample_defaults.clear()
        return self

    def _fault_for(self, request: HttpRequest) -> Fault | None:
        sample_id = request.sample_id if request.path in (CHAT, GENERATE) else None
        with self._cond:
            if sample_id is not None:
                queue = self._by_sample.get(sample_id)
                if queue:
                    return queue.popleft()
                if sample_id in self._sample_defaults:
                    return self._sample_defaults[sample_id]
            queue = self._by_path.get(request.path)
            if queue:
                return queue.popleft()
            return self._path_defaults.get(request.path)
