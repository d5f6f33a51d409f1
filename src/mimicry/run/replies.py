"""One model reply per request: the response cache in front of the model clients.

This is where "each sample is sent to the model once per run" is enforced: every caller of
:meth:`ReplyService.fetch` for the same messages gets the same reply, whichever process it runs
in, because the first holds the key's lock while it asks and stores, and the rest read.

The cache key leaves ``num_ctx`` out: a stored reply is reused by any run whose context window
would have held the whole exchange it was produced in (see :func:`reusable`), so a row's reply
does not depend on which other rows a run selected. With several hosts, request ``route`` goes to
``hosts[route % len(hosts)]``; the key leaves the host out too, so where a reply came from never
changes what is judged.

Nothing here imports the ollama client until a request has to be sent: a run whose replies are
all cached never pays for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from mimicry.cache import ResponseCache, cache_key
from mimicry.core.reply import REPLY_COUNTERS
from mimicry.core.samples import input_was_cut
from mimicry.settings import CacheMode

Messages = Sequence[Mapping[str, str]]
#: Tokens of room a stored exchange must leave in a window to count as having fit in it.
FIT_MARGIN_TOKENS = 16


class ChatClient(Protocol):
    """What the reply service needs of a model client (ModelClient, or a test double)."""

    def chat(self, model: str, messages: Messages, options: Mapping[str, object]) -> Any: ...


class ReplayMiss(LookupError):
    """``--response-cache-mode replay`` and no stored reply for this request."""


class FailedEarlier(Exception):
    """Asking for this reply already failed in this run (another test or worker saw it)."""


@dataclass(frozen=True)
class Fetched:
    """A reply's fields (``content``, ``done_reason`` and Ollama's counters), the ``num_ctx``
    it was produced with, and whether it was reused from an earlier run's cache (a reply that
    another process of this run asked and stored, as an xdist worker reads the controller's
    prefetched replies, was not)."""

    fields: dict[str, Any]
    num_ctx: int | None
    cached: bool


def stored_fields(value: Mapping[str, object]) -> dict[str, Any]:
    """Check a stored reply: a ``content`` string, ``done_reason`` string or None, counters that
    are non-negative ints or None. Raises ValueError, so a damaged entry is never served."""
    reply = value.get("reply")
    if not isinstance(reply, Mapping):
        raise ValueError("no 'reply' object")
    content = reply.get("content")
    if not isinstance(content, str):
        raise ValueError(f"content must be a string, got {type(content).__name__}")
    done_reason = reply.get("done_reason")
    if done_reason is not None and not isinstance(done_reason, str):
        raise ValueError(f"done_reason must be a string or null, got {done_reason!r}")
    fields: dict[str, Any] = {"content": content, "done_reason": done_reason}
    for name in REPLY_COUNTERS:
        count = reply.get(name)
        if count is not None and (
            isinstance(count, bool) or not isinstance(count, int) or count < 0
        ):
            raise ValueError(f"{name} must be an int >= 0 or null, got {count!r}")
        fields[name] = count
    num_ctx = value.get("num_ctx")
    if num_ctx is not None and (isinstance(num_ctx, bool) or not isinstance(num_ctx, int)):
        raise ValueError(f"num_ctx must be an int or null, got {num_ctx!r}")
    return fields


def reusable(
    fields: Mapping[str, Any], stored_num_ctx: int | None, num_ctx: int, prompt_chars: int
) -> bool:
    """Whether a reply produced with ``stored_num_ctx`` stands for one asked with ``num_ctx``.

    The same window always does. Another one does when the whole exchange (prompt and reply)
    fitted with room to spare in both windows and the server did not cut the prompt: the window
    then changed nothing the model saw or wrote.
    """
    if stored_num_ctx is None or stored_num_ctx == num_ctx:
        return stored_num_ctx == num_ctx
    prompt = fields.get("prompt_eval_count")
    generated = fields.get("eval_count")
    if not isinstance(prompt, int) or not isinstance(generated, int):
        return False
    if input_was_cut(prompt, stored_num_ctx, prompt_chars):
        return False
    used = prompt + generated + FIT_MARGIN_TOKENS
    return used <= min(stored_num_ctx, num_ctx)


class ReplyService:
    """Replies of one model (by digest) under one set of options, through the cache."""

    def __init__(
        self,
        *,
        clients: Callable[[], Sequence[ChatClient]],
        model: str,
        model_digest: str,
        options: Mapping[str, object],
        cache: ResponseCache | None,
        mode: CacheMode,
        concurrency: int = 1,
        run_id: str = "",
    ) -> None:
        if mode is not CacheMode.OFF and cache is None:
            raise ValueError(f"response cache mode {mode.value!r} needs a cache")
        self._make_clients = clients
        self._clients: list[ChatClient] | None = None
        self._model = model
        self._digest = model_digest
        self._options = dict(options)
        self._cache = cache if mode is not CacheMode.OFF else None
        self._mode = mode
        self._concurrency = max(1, concurrency)
        self._run_id = run_id
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: dict[str, Future[Fetched]] = {}
        self._lock = threading.Lock()
        self.model_calls = 0
        self.cache_hits = 0

    @property
    def model(self) -> str:
        return self._model

    def close(self) -> None:
        """Drop pending prefetches, close the clients' connections, then the cache."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        for client in self._clients or []:
            close = getattr(client, "close", None)
            if callable(close):
                close()  # also ends requests still running in the pool
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self._cache is not None:
            self._cache.close()

    def options_for(self, repeat: int) -> dict[str, object]:
        """The request options of repeat ``repeat``: repeat r is asked with seed ``seed + r``."""
        if repeat == 0:
            return self._options
        seed = self._options.get("seed")
        return {**self._options, "seed": (seed if isinstance(seed, int) else 0) + repeat}

    def key(self, messages: Messages, repeat: int = 0) -> str:
        """The cache key of a request (``num_ctx`` left out, see the module docstring)."""
        options = {k: v for k, v in self.options_for(repeat).items() if k != "num_ctx"}
        return cache_key(model_digest=self._digest, options=options, messages=messages)

    def stored(self, messages: Messages, repeat: int = 0) -> Fetched | None:
        """The stored reply this run may reuse for the request, or None (never asks)."""
        if self._cache is None:
            return None
        return self._stored(self.key(messages, repeat), _prompt_chars(messages))

    def prefetch(
        self, messages: Messages, repeat: int = 0, route: int = 0
    ) -> Future[Fetched] | None:
        """Start asking for this reply in the background; returns its future (None in replay
        mode, where nothing is asked). Its outcome is also what :meth:`fetch` returns or raises."""
        if self._mode is CacheMode.REPLAY:
            return None
        key = self.key(messages, repeat)
        with self._lock:
            known = self._inflight.get(key)
            if known is not None:
                return known
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self._concurrency, thread_name_prefix="mimicry-reply"
                )
            future = self._pool.submit(self._fetch_now, messages, repeat, route, key)
            self._inflight[key] = future
            return future

    def pending(self) -> int:
        """Requests started in the background that are not finished yet."""
        with self._lock:
            return sum(1 for future in self._inflight.values() if not future.done())

    def fetch(self, messages: Messages, repeat: int = 0, route: int = 0) -> Fetched:
        """The reply to ``messages``: stored if allowed and present, else asked once and stored.

        Raises the client's errors (never cached), :class:`FailedEarlier` and
        :class:`ReplayMiss`.
        """
        key = self.key(messages, repeat)
        with self._lock:
            future = self._inflight.pop(key, None)
        if future is not None:
            return future.result()
        return self._fetch_now(messages, repeat, route, key)

    def _fetch_now(self, messages: Messages, repeat: int, route: int, key: str) -> Fetched:
        options = self.options_for(repeat)
        prompt_chars = _prompt_chars(messages)
        if self._cache is None:
            return Fetched(self._ask(messages, options, route), _num_ctx(options), cached=False)
        if self._mode is CacheMode.REPLAY:
            stored = self._stored(key, prompt_chars)
            if stored is None:
                raise ReplayMiss(
                    f"no stored reply for this sample (key {key[:12]}…) and --response-cache-mode "
                    "replay never asks the model: run once with --response-cache-mode use, or "
                    "check that model, options and dataset match the recorded run"
                )
            return stored
        if self._mode is CacheMode.USE:
            stored = self._stored(key, prompt_chars)
            if stored is not None:
                return stored
        with self._cache.lock(key):
            if self._mode is CacheMode.USE:
                # another worker may have asked while we waited for the lock
                stored = self._stored(key, prompt_chars)
                if stored is not None:
                    return stored
            earlier = self._cache.get_failure(key, self._run_id)
            if earlier is not None:
                raise FailedEarlier(earlier)
            try:
                fields = self._ask(messages, options, route)
            except Exception as exc:
                from mimicry.client import OllamaError

                if isinstance(exc, OllamaError):
                    self._cache.put_failure(key, self._run_id, str(exc))
                raise
            # the run that asked is kept with the reply: for this run's other processes it is
            # not a reply reused from the cache (see Fetched.cached)
            self._cache.put(
                key, {"reply": fields, "num_ctx": _num_ctx(options), "run_id": self._run_id}
            )
        return Fetched(fields, _num_ctx(options), cached=False)

    def _stored(self, key: str, prompt_chars: int) -> Fetched | None:
        assert self._cache is not None
        value = self._cache.get(key)
        if value is None:
            return None
        try:
            fields = stored_fields(value)
        except ValueError as exc:
            self._cache.discard(key, reason=str(exc))
            return None
        stored_num_ctx = value.get("num_ctx")
        current = _num_ctx(self._options)
        if current is not None and not reusable(
            fields,
            stored_num_ctx if isinstance(stored_num_ctx, int) else None,
            current,
            prompt_chars,
        ):
            return None
        with self._lock:
            self.cache_hits += 1
        reused = not self._run_id or value.get("run_id") != self._run_id
        return Fetched(fields, stored_num_ctx if isinstance(stored_num_ctx, int) else None, reused)

    def _ask(self, messages: Messages, options: Mapping[str, object], route: int) -> dict[str, Any]:
        with self._lock:
            self.model_calls += 1
            if self._clients is None:
                self._clients = list(self._make_clients())
            clients = self._clients
        if not clients:
            raise ReplayMiss("no model client: replies can only be replayed in this run")
        reply = clients[route % len(clients)].chat(self._model, messages, options)
        fields = reply.to_dict() if hasattr(reply, "to_dict") else dict(reply)
        return {
            "content": fields.get("content") or "",
            "done_reason": fields.get("done_reason"),
            **{name: fields.get(name) for name in REPLY_COUNTERS},
        }


def _num_ctx(options: Mapping[str, object]) -> int | None:
    value = options.get("num_ctx")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _prompt_chars(messages: Messages) -> int:
    return sum(len(message.get("content", "")) for message in messages)
