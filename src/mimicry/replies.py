"""One model reply per sample: the response cache in front of the model clients.

This is where "each sample is sent to the model once per run" is enforced: every caller of
:meth:`ReplyService.fetch` for the same messages gets the same reply, whichever xdist worker it
runs in, because the first holds the key's lock while it asks and stores, and the rest read.

With ``concurrency`` above 1 a process keeps that many requests in flight: :meth:`prefetch`
hands upcoming samples to a small thread pool (requests are I/O-bound), and :meth:`fetch` then
picks up the reply that is already on its way. With several hosts, sample ``route`` goes to
``hosts[route % len(hosts)]``; the cache key leaves the host out, so where a reply came from
never changes what is judged.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from mimicry.cache import ResponseCache, cache_key
from mimicry.client import ChatReply, OllamaError
from mimicry.settings import CacheMode

Messages = Sequence[Mapping[str, str]]


class ChatClient(Protocol):
    """What the reply service needs of a model client (ModelClient, or a test double)."""

    def chat(self, model: str, messages: Messages, options: Mapping[str, object]) -> ChatReply: ...


class ReplayMiss(LookupError):
    """``--response-cache-mode replay`` and no stored reply for this request."""


class FailedEarlier(Exception):
    """Asking for this reply already failed in this run (another test or worker saw it)."""


@dataclass(frozen=True)
class Fetched:
    """A reply and whether it came from the cache."""

    reply: ChatReply
    cached: bool


@dataclass(frozen=True)
class Job:
    """One request to make: the messages, the repeat (seed offset) and the routing number."""

    messages: Messages
    repeat: int = 0
    route: int = 0


class ReplyService:
    """Replies for one model (by digest) and one set of options, through the cache."""

    def __init__(
        self,
        *,
        clients: Sequence[ChatClient],
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
        if mode is not CacheMode.REPLAY and not clients:
            raise ValueError("a model client is needed unless replies are replayed")
        self._clients = list(clients)
        self._model = model
        self._digest = model_digest
        self._options = dict(options)
        self._cache = cache if mode is not CacheMode.OFF else None
        self._mode = mode
        self._concurrency = concurrency
        self._run_id = run_id
        self._pool = (
            ThreadPoolExecutor(concurrency, thread_name_prefix="mimicry-reply")
            if concurrency > 1 and mode is not CacheMode.REPLAY
            else None
        )
        self._inflight: OrderedDict[str, Future[Fetched]] = OrderedDict()
        self._lock = threading.Lock()
        self.model_calls = 0

    def close(self) -> None:
        """Drop pending prefetches, close the clients' connections, then the cache."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        for client in self._clients:
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
        options = self.options_for(repeat)
        return cache_key(model_digest=self._digest, options=options, messages=messages)

    def prefetch(self, jobs: Iterable[Job]) -> None:
        """Start asking for these replies in the background (no-op without concurrency)."""
        if self._pool is None:
            return
        with self._lock:
            for job in jobs:
                key = self.key(job.messages, job.repeat)
                if key not in self._inflight:
                    self._inflight[key] = self._pool.submit(self._fetch_now, job, key)
            # replies fetched for samples another worker ended up judging are never picked up
            while len(self._inflight) > 4 * self._concurrency:
                oldest_key, oldest = next(iter(self._inflight.items()))
                if not oldest.done():
                    break
                del self._inflight[oldest_key]

    def fetch(self, messages: Messages, repeat: int = 0, route: int = 0) -> Fetched:
        """The reply to ``messages``: stored if allowed and present, else asked once and stored.

        Raises the client's errors (never cached) and :class:`ReplayMiss`.
        """
        job = Job(messages, repeat, route)
        key = self.key(messages, repeat)
        if self._pool is not None:
            self.prefetch([job])
            with self._lock:
                future = self._inflight.pop(key, None)
            if future is not None:
                return future.result()
        return self._fetch_now(job, key)

    def _fetch_now(self, job: Job, key: str) -> Fetched:
        options = self.options_for(job.repeat)
        if self._cache is None:
            return Fetched(self._ask(job, options), cached=False)
        if self._mode is CacheMode.REPLAY:
            stored = self._stored(key)
            if stored is None:
                raise ReplayMiss(
                    f"no stored reply for this sample (key {key[:12]}…) and --response-cache-mode "
                    "replay never asks the model: run once with --response-cache-mode use, or "
                    "check that model, options and dataset match the recorded run"
                )
            return Fetched(stored, cached=True)
        if self._mode is CacheMode.USE:
            stored = self._stored(key)
            if stored is not None:
                return Fetched(stored, cached=True)
        with self._cache.lock(key):
            if self._mode is CacheMode.USE:
                # another worker may have asked while we waited for the lock
                stored = self._stored(key)
                if stored is not None:
                    return Fetched(stored, cached=True)
            earlier = self._cache.get_failure(key, self._run_id)
            if earlier is not None:
                raise FailedEarlier(earlier)
            try:
                reply = self._ask(job, options)
            except OllamaError as exc:
                self._cache.put_failure(key, self._run_id, str(exc))
                raise
            self._cache.put(key, reply.to_dict())
        return Fetched(reply, cached=False)

    def _stored(self, key: str) -> ChatReply | None:
        assert self._cache is not None
        value = self._cache.get(key)
        if value is None:
            return None
        try:
            return ChatReply.from_dict(value)
        except ValueError as exc:
            self._cache.discard(key, reason=str(exc))
            return None

    def _ask(self, job: Job, options: Mapping[str, object]) -> ChatReply:
        with self._lock:
            self.model_calls += 1
        client = self._clients[job.route % len(self._clients)]
        return client.chat(self._model, job.messages, options)
