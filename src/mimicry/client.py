"""The Ollama client wrapper: preflight, one chat call per sample, retries and clear errors.

Built on the official ``ollama`` package (``ollama.Client`` / ``ollama.AsyncClient``) for chat.
The preflight reads ``/api/version``, ``/api/tags`` and ``/api/show`` as plain JSON through httpx
because ollama-python has no version call, its typed ``ListResponse`` drops the ``name`` field and
its ``ShowResponse`` requires ``model_info``, which Ollama-compatible servers may omit.

``RetryPolicy.timeout_s`` is the deadline of each attempt, from connecting to the reply's last
byte: a server that trickles its reply, each byte within any per-read timeout, is cut off there
like one that says nothing (see "The whole-request deadline" below).

Every failure leaves this module as an :class:`OllamaError` whose ``str()`` is one line: what
failed, the offending value and the next step. Header values (an API key) never appear in
messages, logs or ``repr``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import ipaddress
import logging
import math
import random
import reprlib
import shlex
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

import httpcore
import httpx

if TYPE_CHECKING:
    import ollama

from mimicry.core.samples import REPLY_COUNTERS

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_HOST",
    "DEFAULT_RETRY",
    "HOST_ENV",
    "AsyncModelClient",
    "ChatReply",
    "ModelClient",
    "ModelInfo",
    "ModelNotFound",
    "OllamaError",
    "RequestFailed",
    "RetryPolicy",
    "ServerUnreachable",
    "auth_headers",
    "normalize_host",
    "resolve_host",
]

DEFAULT_HOST = "http://127.0.0.1:11434"
HOST_ENV = "OLLAMA_HOST"
API_KEY_ENV = "OLLAMA_API_KEY"
_DEFAULT_PORT = 11434
# The preflight only reads metadata; a server that needs longer than this to answer it is hung,
# and waiting the full per-request timeout (minutes) before saying so would not be "prompt".
_PREFLIGHT_TIMEOUT_S = 15.0
_MAX_SERVER_TEXT = 200
_MAX_LISTED_MODELS = 5

_log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Host resolution


def normalize_host(value: str, *, source: str = "host") -> str:
    """Normalize an Ollama host the way the ollama client does, into ``scheme://host:port[/path]``.

    ``"localhost:11434"`` -> ``"http://localhost:11434"``, ``"example.com"`` -> port 11434,
    ``"http://x"`` -> port 80, ``"https://x"`` -> port 443, ``":8080"`` -> ``127.0.0.1:8080``.
    Unlike ollama-python, the unspecified bind addresses ``0.0.0.0`` and ``::`` (a common
    ``OLLAMA_HOST`` for the *server*) become loopback, since they are not addresses to connect to
    on every platform. User info (``user:pass@``) is dropped, as ollama-python does.

    Raises ValueError naming ``source`` (e.g. ``"--ollama-host"``) for a scheme other than
    http/https or an invalid port.
    """
    text = value.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest, default_port = "http", text, _DEFAULT_PORT
    else:
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(
                f"{source} {value!r}: the scheme must be http or https; "
                f"use e.g. {DEFAULT_HOST!r} or 'localhost:11434'"
            )
        default_port = 80 if scheme == "http" else 443
    try:
        split = urllib.parse.urlsplit(f"{scheme}://{rest}")
        port = split.port or default_port
    except ValueError as exc:
        raise ValueError(
            f"{source} {value!r}: {exc}; expected HOST[:PORT] or http(s)://HOST[:PORT][/PATH]"
        ) from None
    hostname = split.hostname or "127.0.0.1"
    try:
        address = ipaddress.ip_address(hostname)
    except ValueError:
        pass
    else:
        if address.is_unspecified:
            address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
        hostname = f"[{address}]" if address.version == 6 else str(address)
    path = split.path.strip("/")
    return f"{scheme}://{hostname}:{port}" + (f"/{path}" if path else "")


def resolve_host(cli_value: str | None, environ: Mapping[str, str]) -> tuple[str, bool]:
    """Return ``(normalized base URL, explicitly_given)`` for the Ollama server.

    Precedence: the CLI value, then ``OLLAMA_HOST`` (the ollama client's own convention), then
    :data:`DEFAULT_HOST`. Blank values count as not set; ``explicitly_given`` is False only when
    neither was set. Raises ValueError (naming the source) for a malformed value.
    """
    if cli_value is not None and cli_value.strip():
        return normalize_host(cli_value, source="--ollama-host"), True
    env_value = environ.get(HOST_ENV, "")
    if env_value.strip():
        return normalize_host(env_value, source=HOST_ENV), True
    return DEFAULT_HOST, False


def auth_headers(environ: Mapping[str, str]) -> dict[str, str]:
    """``{"Authorization": "Bearer <OLLAMA_API_KEY>"}`` when the key is set, else ``{}``.

    For hosted or proxied Ollama. The value is a secret: pass it as ``headers=`` to the clients,
    which keep it out of their ``repr`` and error messages; never log or report it.
    """
    key = environ.get(API_KEY_ENV, "").strip()
    return {"Authorization": f"Bearer {key}"} if key else {}


# --------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: total attempts, exponential backoff with jitter, and ``timeout_s``, the
    deadline of each attempt (connecting, sending, waiting, reading to the last byte), after
    which the attempt is abandoned, its connection closed, and the retry policy applies.

    The delay before retry ``n`` (1-based) is ``backoff_s * 2**(n-1)`` capped at
    ``max_backoff_s``, scaled by a random factor in [0.5, 1]. A 429/503 with ``Retry-After:
    <seconds>`` waits that long instead, capped at ``max_retry_after_s``.
    """

    attempts: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    timeout_s: float = 300.0
    max_retry_after_s: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise TypeError(f"RetryPolicy.attempts={self.attempts!r}: must be an int >= 1")
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts={self.attempts!r}: must be >= 1 (1 = no retry)")
        for name in ("backoff_s", "max_backoff_s", "max_retry_after_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"RetryPolicy.{name}={value!r}: must be a finite number >= 0")
        timeout = self.timeout_s
        if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"RetryPolicy.timeout_s={timeout!r}: must be a finite number > 0")

    def backoff(self, retry: int, jitter: float) -> float:
        """Seconds to wait before retry number ``retry`` (1-based); ``jitter`` in [0, 1]."""
        base = min(self.max_backoff_s, self.backoff_s * 2.0 ** min(retry - 1, 62))
        return base * (0.5 + 0.5 * min(max(jitter, 0.0), 1.0))


DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True)
class ModelInfo:
    """What the preflight learned about the model and the server.

    ``name`` is the model's name as the server lists it (``"qwen2:latest"`` for ``"qwen2"``);
    ``digest`` comes from ``/api/tags`` as the server sends it; ``context_length`` is
    ``model_info["<arch>.context_length"]`` from ``/api/show`` (None when not reported).
    """

    name: str
    digest: str
    context_length: int | None
    family: str | None
    parameter_size: str | None
    quantization: str | None
    server_version: str

    def to_dict(self) -> dict[str, object]:
        """Plain dict for reports and ``workerinput``."""
        return dataclasses.asdict(self)


_REPLY_INT_FIELDS = REPLY_COUNTERS


@dataclass(frozen=True)
class ChatReply:
    """One model reply and the server's accounting for it (durations in ns, as Ollama sends).

    ``content`` is ``""`` when the server sent no content: an empty reply is a measurement.
    """

    content: str
    done_reason: str | None
    prompt_eval_count: int | None
    eval_count: int | None
    total_duration: int | None
    load_duration: int | None
    prompt_eval_duration: int | None
    eval_duration: int | None

    def to_dict(self) -> dict[str, object]:
        """Plain dict, the inverse of :meth:`from_dict` (for the response cache)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ChatReply:
        """Rebuild a reply from :meth:`to_dict` output, rejecting anything else.

        Raises ValueError on missing or unknown keys and on values of the wrong type (counts and
        durations must be non-negative ints or None), so a corrupted cache entry is never served.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"a ChatReply must be a mapping, got {type(data).__name__}")
        expected = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(expected - data.keys())
        unknown = sorted(str(k) for k in data.keys() - expected)
        if missing or unknown:
            raise ValueError(f"not a ChatReply: missing keys {missing}, unknown keys {unknown}")
        content = data["content"]
        if not isinstance(content, str):
            raise ValueError(f"ChatReply.content must be a str, got {type(content).__name__}")
        done_reason = data["done_reason"]
        if done_reason is not None and not isinstance(done_reason, str):
            raise ValueError(f"ChatReply.done_reason must be a str or None, got {done_reason!r}")
        counts: dict[str, int | None] = {}
        for name in _REPLY_INT_FIELDS:
            value = data[name]
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise ValueError(f"ChatReply.{name} must be an int >= 0 or None, got {value!r}")
            counts[name] = value
        return cls(content=content, done_reason=done_reason, **counts)


# --------------------------------------------------------------------------------------------
# Errors


class OllamaError(Exception):
    """Base of this module's errors.

    ``str(e)`` is one line: what failed, the offending value, the next step.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.splitlines()))


class ServerUnreachable(OllamaError):
    """No server answered at the host (refused, DNS, timeout) during the preflight."""

    def __init__(self, message: str, *, host: str = "") -> None:
        super().__init__(message)
        self.host = host


class ModelNotFound(OllamaError):
    """The model is not on the server (preflight, or a 404 from a chat mid-run)."""

    def __init__(
        self, message: str, *, model: str = "", host: str = "", available: Sequence[str] = ()
    ) -> None:
        super().__init__(message)
        self.model = model
        self.host = host
        self.available = tuple(available)


class RequestFailed(OllamaError):
    """A request that still failed after the retry policy was spent (or could not be retried).

    ``reason`` is short (for a sample's ``error`` field), ``retryable`` says whether another try
    later could succeed, ``attempts`` how many were made, ``status`` the last HTTP status if any.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        retryable: bool = False,
        attempts: int = 1,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.retryable = retryable
        self.attempts = attempts
        self.status = status


# --------------------------------------------------------------------------------------------
# Failure translation and retry bookkeeping, shared by the sync and async clients

_FailureKind = Literal["connect", "timeout", "protocol", "network", "status", "malformed"]

# What one attempt can raise that this module translates: ollama's ResponseError (an HTTP error
# status), httpx transport errors, the builtin ConnectionError ollama raises for
# httpx.ConnectError, ValueError (a body that is not JSON, or JSON of the wrong shape: both
# json.JSONDecodeError and pydantic's ValidationError are ValueErrors) and AttributeError, which
# ollama raises instead of ResponseError when an error body is JSON but not an object.
# Anything else (including an AttributeError not caused that way) propagates unchanged.
# TypeError: ollama builds its response with `**body`, which fails on a JSON body that is not an
# object (`[]`, `null`); the messages were checked before sending, so it can only be the reply.
# TimeoutError: the async client's deadline (asyncio.timeout) expired.
# ollama is imported for the first chat only (a run whose replies are all cached, and the
# preflight, which reads plain JSON through httpx, never load it and pydantic): its
# ResponseError joins these in _chat_errors().
_TRANSLATED: tuple[type[Exception], ...] = (
    httpx.HTTPError,
    ConnectionError,
    TimeoutError,
    ValueError,
    AttributeError,
    TypeError,
)


@cache
def _chat_errors() -> tuple[type[Exception], ...]:
    import ollama

    return (ollama.ResponseError, *_TRANSLATED)


@dataclass(frozen=True)
class _Failure:
    kind: _FailureKind
    reason: str
    retryable: bool
    status: int | None = None
    retry_after: float | None = None


def _server_text(text: str) -> str:
    """The server's error text as one short line (it is echoed inside messages with !r)."""
    line = " ".join(text.split())
    return line if len(line) <= _MAX_SERVER_TEXT else line[: _MAX_SERVER_TEXT - 3] + "..."


def _retry_after(headers: httpx.Headers) -> float | None:
    """``Retry-After`` in seconds; HTTP dates and nonsense are ignored (backoff applies)."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _error_text(response: httpx.Response) -> str:
    """Ollama's ``{"error": "..."}`` message, else the raw body."""
    try:
        body = response.json()
    except ValueError:
        return response.text
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return response.text


def _status_failure(status: int, text: str, retry_after: float | None) -> _Failure:
    # 429 and 503 are "come back later"; other 5xx may be transient (a crashed runner restarts);
    # other 4xx mean this request is wrong and will stay wrong.
    retryable = status == 429 or status >= 500
    return _Failure(
        kind="status",
        reason=f"HTTP {status}: {_server_text(text)!r}",
        retryable=retryable,
        status=status,
        retry_after=retry_after if status in (429, 503) else None,
    )


def _classify(exc: BaseException, timeout_s: float) -> _Failure | None:
    """Translate one attempt's exception into a failure, or None if it is not ours to translate."""
    ollama = sys.modules.get("ollama")  # not loaded: exc cannot be one of its errors
    if ollama is not None and isinstance(exc, ollama.ResponseError):
        # ollama raises ResponseError inside its `except httpx.HTTPStatusError` block, so the
        # original response (and its Retry-After header) is the implicit __context__.
        context = exc.__context__
        headers = context.response.headers if isinstance(context, httpx.HTTPStatusError) else None
        retry_after = _retry_after(headers) if headers is not None else None
        return _status_failure(exc.status_code, str(exc.error), retry_after)
    if isinstance(exc, AttributeError) and isinstance(exc.__context__, httpx.HTTPStatusError):
        exc = exc.__context__
    if isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        return _status_failure(
            response.status_code, _error_text(response), _retry_after(response.headers)
        )
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        # every network step's timeout is clamped to the attempt's deadline: whichever fired,
        # the reply was not complete within timeout_s
        reason = f"timeout: no complete reply within {timeout_s:g}s"
        return _Failure("timeout", reason, retryable=True)
    if isinstance(exc, httpx.ConnectError | ConnectionError):
        # ollama replaces httpx.ConnectError by a generic ConnectionError; the detail
        # ("Connection refused", "Name or service not known") is on the original.
        original = exc.__context__ if isinstance(exc.__context__, httpx.ConnectError) else exc
        detail = _server_text(str(original)) if isinstance(original, httpx.ConnectError) else ""
        return _Failure("connect", f"cannot connect: {detail or type(exc).__name__}", True)
    if isinstance(exc, httpx.RemoteProtocolError):
        return _Failure("protocol", "the connection closed before the full reply arrived", True)
    if isinstance(exc, httpx.NetworkError):
        return _Failure("network", f"network error ({type(exc).__name__}: {exc})", True)
    if isinstance(exc, httpx.HTTPError):
        return _Failure("network", f"HTTP client error ({type(exc).__name__}: {exc})", False)
    if isinstance(exc, ValueError | TypeError):
        # A complete body that is not the JSON Ollama sends: the server will send it again, so
        # retrying only spends time (a body cut mid-way is a RemoteProtocolError, retried above).
        detail = _server_text(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return _Failure("malformed", f"malformed response body ({detail})", retryable=False)
    return None


def _hint(failure: _Failure) -> str:
    """The next step for the user, by kind of failure."""
    if failure.kind == "timeout":
        return "check the server (its log, `ollama ps`) or raise --request-timeout"
    if failure.kind == "connect":
        return "check that the server is running (`ollama serve`) and --ollama-host / OLLAMA_HOST"
    if failure.kind in ("protocol", "network"):
        return "the server dropped the connection: check its log (crash, out of memory?)"
    if failure.kind == "malformed":
        return "the server does not answer like Ollama: check --ollama-host / OLLAMA_HOST"
    if failure.status in (401, 403):
        return f"the server wants credentials: set {API_KEY_ENV} (or fix the proxy's)"
    if failure.retryable:
        return "the server kept failing: check its log"
    return "the server rejected the request: check the model name, options and messages"


def _pull_command(model: str, host: str) -> str:
    prefix = "" if host == DEFAULT_HOST else f"{HOST_ENV}={shlex.quote(host)} "
    return f"`{prefix}ollama pull {shlex.quote(model)}`"


# --------------------------------------------------------------------------------------------
# The whole-request deadline
#
# httpx's timeouts bound each network step (connecting, each read, each write), so a server that
# trickles its reply never trips them. The sync client sends through a transport whose sockets
# clamp every step's timeout to the time left before the attempt's deadline, kept in a context
# variable set around each attempt (so each thread of a pool has its own): the read still
# waiting when the deadline passes ends then with a timeout, and httpcore closes the connection,
# as after any timeout. No thread watches the requests. The async client bounds each attempt with
# asyncio.timeout(), whose cancellation ends the awaited read the same way.

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "mimicry_request_deadline", default=None
)


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Every network step of the requests made inside ends by ``seconds`` from now."""
    token = _DEADLINE.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _step_timeout(timeout: float | None, expired: type[Exception]) -> float | None:
    """A network step's timeout clamped to the attempt's deadline; raises ``expired`` (one of
    httpcore's timeouts, which httpx translates) once the deadline has passed."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the request's deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the current attempt's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _step_timeout(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _step_timeout(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        # Closing a socket does not wake a thread blocked reading it (on Linux that read waits
        # on for data, the peer or its timeout): shut it down first, so that closing the client
        # ends the requests other threads still have running, at once.
        sock = self._stream.get_extra_info("socket")
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        step = _step_timeout(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, step))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's network backend, making :class:`_DeadlineStream` connections."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        step = _step_timeout(timeout, httpcore.ConnectTimeout)
        stream = self._backend.connect_tcp(host, port, step, local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        step = _step_timeout(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_unix_socket(path, step, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _DeadlineTransport(httpx.HTTPTransport):
    """httpx's transport (through ``proxy`` if given) whose connections keep the deadline."""

    def __init__(self, proxy: str | None, tls: ssl.SSLContext) -> None:
        super().__init__(proxy=proxy, verify=tls)
        # httpx takes no network backend; the httpcore pool it builds keeps its own as
        # `_network_backend`: wrap that one, and refuse to run without the deadline otherwise
        pool = getattr(self, "_pool", None)
        if not isinstance(pool, httpcore.ConnectionPool) or not isinstance(
            getattr(pool, "_network_backend", None), httpcore.NetworkBackend
        ):
            raise RuntimeError(
                f"httpx {httpx.__version__} with httpcore {httpcore.__version__}: cannot install "
                "the whole-request deadline of --request-timeout (no httpcore connection pool "
                "with a network backend); install httpx 0.28 and httpcore 1.0 (constraints.txt)"
            )
        pool._network_backend = _DeadlineBackend(pool._network_backend)


@cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default verifying context (certifi, or SSL_CERT_FILE / SSL_CERT_DIR), made once
    per process: loading the certificates costs tens of milliseconds each time."""
    return httpx.create_ssl_context(trust_env=True)


@cache
def _no_tls_context() -> ssl.SSLContext:
    """For a plain-HTTP host reached directly or through a plain-HTTP proxy, where no TLS is
    spoken: it verifies like any client context but trusts no certificate, so a redirect to
    https fails closed instead of loading the certificates on every start."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def _env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTP_PROXY``, ``HTTPS_PROXY``,
    ``ALL_PROXY``, less ``NO_PROXY``), which httpx no longer looks up once given a transport."""
    proxies = urllib.request.getproxies()
    split = urllib.parse.urlsplit(url)
    proxy = proxies.get(split.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(split.hostname or ""):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _deadline_transport(host: str) -> _DeadlineTransport:
    proxy = _env_proxy(host)
    plain = all(url.startswith("http://") for url in (host, proxy or "http://"))
    return _DeadlineTransport(proxy, _no_tls_context() if plain else _tls_context())


class _Attempts:
    """Retry bookkeeping for one logical request: classify each failure, wait or give up."""

    def __init__(
        self,
        policy: RetryPolicy,
        rng: random.Random,
        what: str,
        give_up: Callable[[_Failure, int], OllamaError],
        redact: Callable[[str], str],
    ) -> None:
        self._policy = policy
        self._rng = rng
        self._what = what
        self._give_up = give_up
        self._redact = redact
        self.count = 0

    def after_failure(self, exc: Exception) -> float:
        """Seconds to wait before the next attempt; raises the translated error when done."""
        self.count += 1
        failure = _classify(exc, self._policy.timeout_s)
        if failure is None:
            raise exc
        failure = dataclasses.replace(failure, reason=self._redact(failure.reason))
        if not failure.retryable or self.count >= self._policy.attempts:
            # `from None`: the chained original could carry a server's echo of a credential into
            # a traceback; the message already says what failed.
            raise self._give_up(failure, self.count) from None
        if failure.retry_after is not None:
            delay = min(failure.retry_after, self._policy.max_retry_after_s)
        else:
            delay = self._policy.backoff(self.count, self._rng.random())
        _log.info(
            "%s: attempt %d/%d failed (%s); retrying in %.2fs",
            self._what,
            self.count,
            self._policy.attempts,
            failure.reason,
            delay,
        )
        return delay


class _Base:
    """State and error building shared by :class:`ModelClient` and :class:`AsyncModelClient`."""

    def __init__(self, host: str, retry: RetryPolicy, headers: Mapping[str, str] | None) -> None:
        self.host = normalize_host(host)
        self.retry = retry
        self._headers = dict(headers or {})
        self._secrets = sorted(_secret_parts(self._headers.values()), key=len, reverse=True)
        self._rng = random.Random()

    def __repr__(self) -> str:
        shown = {name: "<redacted>" for name in self._headers}
        return f"{type(self).__name__}(host={self.host!r}, retry={self.retry!r}, headers={shown!r})"

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        return text

    def _chat_attempts(self, model: str) -> _Attempts:
        def give_up(failure: _Failure, attempts: int) -> OllamaError:
            if failure.status == 404:
                return ModelNotFound(
                    f"model {model!r} is not on the server at {self.host!r} "
                    f"(POST /api/chat: {failure.reason}): run {_pull_command(model, self.host)}",
                    model=model,
                    host=self.host,
                )
            return RequestFailed(
                f"POST /api/chat for model {model!r} at {self.host!r} failed after "
                f"{attempts} attempt(s): {failure.reason}; {_hint(failure)}",
                reason=failure.reason,
                retryable=failure.retryable,
                attempts=attempts,
                status=failure.status,
            )

        return _Attempts(self.retry, self._rng, f"chat {model!r}", give_up, self._redact)


def _secret_parts(values: Iterable[str]) -> set[str]:
    """Header values, and their credential after ``Bearer``/``Basic``, to redact from messages."""
    secrets: set[str] = set()
    for value in values:
        text = str(value).strip()
        scheme, _, credential = text.partition(" ")
        for candidate in (
            text,
            credential.strip() if scheme.lower() in ("bearer", "basic") else "",
        ):
            if len(candidate) >= 4:  # redacting "1" would mangle every message
                secrets.add(candidate)
    return secrets


def _checked_messages(messages: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """Copy the messages after checking their shape, so that a ValueError raised during the call
    can only come from the response (ollama validates messages inside ``chat``)."""
    checked: list[dict[str, str]] = []
    for index, message in enumerate(messages):
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not role or not isinstance(content, str):
            raise ValueError(
                f"messages[{index}]={reprlib.repr(message)}: each message needs a non-empty "
                "str 'role' and a str 'content', e.g. {'role': 'user', 'content': '...'}"
            )
        checked.append(dict(message))
    return checked


def _reply(response: ollama.ChatResponse) -> ChatReply:
    return ChatReply(
        content=response.message.content or "",
        done_reason=response.done_reason,
        prompt_eval_count=response.prompt_eval_count,
        eval_count=response.eval_count,
        total_duration=response.total_duration,
        load_duration=response.load_duration,
        prompt_eval_duration=response.prompt_eval_duration,
        eval_duration=response.eval_duration,
    )


# --------------------------------------------------------------------------------------------
# Preflight helpers (pure functions over the decoded JSON)


def _canonical_model_name(name: str) -> str:
    """``"qwen2"`` -> ``"qwen2:latest"``; a tag is looked for only after the last ``/`` so a
    registry port (``host:5000/ns/model``) is not mistaken for one. Ollama names are
    case-insensitive."""
    last = name.rsplit("/", 1)[-1]
    return (name if ":" in last else f"{name}:latest").casefold()


def _listed_names(entry: Mapping[str, object]) -> list[str]:
    return [v for v in (entry.get("name"), entry.get("model")) if isinstance(v, str) and v]


def _find_model(tags: object, model: str) -> tuple[dict[str, object] | None, list[str]]:
    """The ``/api/tags`` entry for ``model`` (or None) and all listed names."""
    models = tags.get("models") if isinstance(tags, dict) else None
    if not isinstance(models, list):
        raise ValueError("GET /api/tags: expected a JSON object with a 'models' list")
    wanted = _canonical_model_name(model)
    available: list[str] = []
    found: dict[str, object] | None = None
    for entry in models:
        if not isinstance(entry, dict):
            continue
        names = _listed_names(entry)
        if names:
            available.append(names[0])
        if found is None and any(_canonical_model_name(n) == wanted for n in names):
            found = entry
    return found, available


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _context_length(model_info: object) -> int | None:
    """``model_info["<general.architecture>.context_length"]``; without an architecture, the only
    ``*.context_length`` key if there is exactly one."""
    if not isinstance(model_info, dict):
        return None
    arch = model_info.get("general.architecture")
    if isinstance(arch, str) and arch:
        value = model_info.get(f"{arch}.context_length")
    else:
        candidates = [v for k, v in model_info.items() if str(k).endswith(".context_length")]
        value = candidates[0] if len(candidates) == 1 else None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


def _model_info(model: str, version: object, entry: dict[str, object], show: object) -> ModelInfo:
    digest = entry.get("digest")
    if not isinstance(digest, str) or not digest:
        raise ValueError(f"model {model!r} is listed without the digest the response cache needs")
    show_body = show if isinstance(show, dict) else {}
    details = show_body.get("details")
    if not isinstance(details, dict):
        details = entry.get("details")
    if not isinstance(details, dict):
        details = {}
    server_version = version.get("version") if isinstance(version, dict) else None
    return ModelInfo(
        name=_listed_names(entry)[0],
        digest=digest,
        context_length=_context_length(show_body.get("model_info")),
        family=_str_or_none(details.get("family")),
        parameter_size=_str_or_none(details.get("parameter_size")),
        quantization=_str_or_none(details.get("quantization_level")),
        server_version=server_version if isinstance(server_version, str) else "unknown",
    )


def _not_found_message(model: str, host: str, available: Sequence[str]) -> str:
    if not available:
        listed = "the server has no models"
    else:
        shown = ", ".join(repr(name) for name in available[:_MAX_LISTED_MODELS])
        more = len(available) - _MAX_LISTED_MODELS
        listed = f"available: {shown}" + (f" and {more} more" if more > 0 else "")
    return (
        f"model {model!r} is not on the server at {host!r}: run {_pull_command(model, host)} "
        f"({listed})"
    )


# --------------------------------------------------------------------------------------------
# Clients


class ModelClient(_Base):
    """Synchronous client: :meth:`preflight` once on the controller, :meth:`chat` per sample.

    ``host`` is normalized; ``retry`` governs every request (its ``timeout_s`` is always set,
    since the ollama client has none by default); ``headers`` (e.g. :func:`auth_headers`) go on
    every request and never into ``repr`` or messages; ``sleep`` is injectable for tests.

    Note that ollama-python itself adds ``Authorization: Bearer $OLLAMA_API_KEY`` from the process
    environment to chat requests when ``headers`` has no Authorization; pass
    ``auth_headers(os.environ)`` so the preflight sends the same.
    """

    def __init__(
        self,
        host: str,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        headers: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(host, retry, headers)
        self._sleep = sleep
        self._closed = False
        self._client: ollama.Client | None = None  # made by the first chat
        self._client_lock = threading.Lock()

    def _ollama_client(self) -> ollama.Client:
        """The ollama client, made at the first chat; a closed client asks nothing more."""
        with self._client_lock:
            if self._closed:  # chat() turns this into "the client was closed", not retried
                raise httpx.ConnectError("the client was closed")
            if self._client is None:
                import ollama

                self._client = ollama.Client(
                    host=self.host,
                    timeout=self.retry.timeout_s,
                    headers=self._headers,
                    transport=_deadline_transport(self.host),
                )
            return self._client

    def close(self) -> None:
        """Close the connection pool, ending the requests still running in other threads
        (they raise :class:`RequestFailed` at once, without retrying)."""
        with self._client_lock:
            self._closed = True
            client = self._client
        if client is not None:
            client.close()  # type: ignore[no-untyped-call]  # ollama leaves close() unannotated

    def __enter__(self) -> ModelClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def chat(
        self, model: str, messages: Sequence[Mapping[str, str]], options: Mapping[str, object]
    ) -> ChatReply:
        """One non-streaming ``POST /api/chat``, retried per the policy.

        Each attempt must be complete within ``retry.timeout_s`` (connect to last byte).
        Retries connection errors, timeouts, a connection closed mid-body, 5xx and 429 (honouring
        ``Retry-After`` on 429/503); never other 4xx or a malformed body. Raises
        :class:`ModelNotFound` on a 404 and :class:`RequestFailed` otherwise. A reply without
        content is a :class:`ChatReply` with ``content == ""``.
        """
        checked, sent_options = _checked_messages(messages), dict(options)
        attempts = self._chat_attempts(model)
        errors = _chat_errors()
        while True:
            try:
                with _deadline(self.retry.timeout_s):
                    response = self._ollama_client().chat(
                        model=model, messages=checked, options=sent_options, stream=False
                    )
            except errors as exc:
                if self._closed:  # the run is ending (Ctrl-C, a stop): no retry
                    raise RequestFailed(
                        f"POST /api/chat for model {model!r} at {self.host!r}: the client was "
                        "closed while the request ran",
                        reason="the client was closed",
                        attempts=attempts.count + 1,
                    ) from None
                self._sleep(attempts.after_failure(exc))
                continue
            return _reply(response)

    def preflight(self, model: str) -> ModelInfo:
        """Check the server and the model before any test runs; return what the run records.

        ``GET /api/version``, ``GET /api/tags`` (the digest of the entry whose ``name`` or
        ``model`` is ``model``; ``"qwen2"`` matches ``"qwen2:latest"``), ``POST /api/show`` (the
        context length and details). Connection errors and timeouts are retried per the policy,
        each attempt's deadline capped at 15 s, then :class:`ServerUnreachable`; a missing model is
        :class:`ModelNotFound` with the ``ollama pull`` command; other failures
        :class:`RequestFailed`.
        """
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"model {model!r}: expected an Ollama model name such as 'qwen2:0.5b'")
        timeout = min(self.retry.timeout_s, _PREFLIGHT_TIMEOUT_S)
        headers = {"Accept": "application/json", **self._headers}
        with httpx.Client(
            base_url=self.host,
            headers=headers,
            timeout=timeout,
            follow_redirects=True,
            transport=_deadline_transport(self.host),
        ) as http:
            version = self._preflight_json(http, "GET", "/api/version", model, timeout)
            tags = self._preflight_json(http, "GET", "/api/tags", model, timeout)
            try:
                entry, available = _find_model(tags, model)
            except ValueError as exc:
                raise self._malformed("GET /api/tags", str(exc)) from None
            if entry is None:
                raise ModelNotFound(
                    _not_found_message(model, self.host, available),
                    model=model,
                    host=self.host,
                    available=available,
                )
            show = self._preflight_json(http, "POST", "/api/show", model, timeout, {"model": model})
        try:
            return _model_info(model, version, entry, show)
        except ValueError as exc:
            raise self._malformed("GET /api/tags", str(exc)) from None

    def _malformed(self, what: str, detail: str) -> RequestFailed:
        reason = self._redact(f"malformed response ({_server_text(detail)})")
        return RequestFailed(
            f"{what} at {self.host!r}: {reason}; "
            f"{_hint(_Failure('malformed', reason, retryable=False))}",
            reason=reason,
        )

    def _preflight_json(
        self,
        http: httpx.Client,
        method: str,
        path: str,
        model: str,
        deadline_s: float,
        body: Mapping[str, object] | None = None,
    ) -> object:
        what = f"{method} {path}"

        def give_up(failure: _Failure, attempts: int) -> OllamaError:
            if failure.kind in ("connect", "timeout"):
                return ServerUnreachable(
                    f"no Ollama server answers at {self.host!r} ({failure.reason}, "
                    f"{attempts} attempt(s)): start it with `ollama serve`, "
                    f"or pass --ollama-host / set {HOST_ENV}",
                    host=self.host,
                )
            if failure.status == 404 and path == "/api/show":
                return ModelNotFound(
                    f"model {model!r} is not on the server at {self.host!r} ({what}: "
                    f"{failure.reason}): run {_pull_command(model, self.host)}",
                    model=model,
                    host=self.host,
                )
            hint = _hint(failure)
            if failure.status == 404:
                hint = f"is it an Ollama server? check --ollama-host / {HOST_ENV}"
            return RequestFailed(
                f"{what} at {self.host!r} failed after {attempts} attempt(s): "
                f"{failure.reason}; {hint}",
                reason=failure.reason,
                retryable=failure.retryable,
                attempts=attempts,
                status=failure.status,
            )

        attempts = _Attempts(self.retry, self._rng, what, give_up, self._redact)
        while True:
            try:
                with _deadline(deadline_s):
                    response = http.request(method, path, json=body)
                response.raise_for_status()
                return response.json()
            except _TRANSLATED as exc:
                self._sleep(attempts.after_failure(exc))


class AsyncModelClient(_Base):
    """The same :meth:`chat` as :class:`ModelClient`, as a coroutine over ``ollama.AsyncClient``.

    For prefetching replies with concurrency (bound it with a semaphore). Same retry semantics
    and deadline (``asyncio.timeout`` around each attempt), waiting with ``sleep``
    (``asyncio.sleep`` by default). Create, use and :meth:`aclose` it within one event loop.
    """

    def __init__(
        self,
        host: str,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        headers: Mapping[str, str] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(host, retry, headers)
        self._sleep = sleep
        import ollama

        self._client = ollama.AsyncClient(
            host=self.host, timeout=retry.timeout_s, headers=self._headers
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.close()  # type: ignore[no-untyped-call]  # unannotated in ollama

    async def __aenter__(self) -> AsyncModelClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def chat(
        self, model: str, messages: Sequence[Mapping[str, str]], options: Mapping[str, object]
    ) -> ChatReply:
        """See :meth:`ModelClient.chat`."""
        checked, sent_options = _checked_messages(messages), dict(options)
        attempts = self._chat_attempts(model)
        while True:
            try:
                async with asyncio.timeout(self.retry.timeout_s):
                    response = await self._client.chat(
                        model=model, messages=checked, options=sent_options, stream=False
                    )
            except _chat_errors() as exc:
                await self._sleep(attempts.after_failure(exc))
                continue
            return _reply(response)
