"""One model reply per sample: the response cache in front of the model client.

This is where "each sample is sent to the model once per run" is enforced: every caller of
:meth:`ReplyService.fetch` for the same messages gets the same reply, whichever xdist worker it
runs in, because the first holds the key's lock while it asks and stores, and the rest read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from mimicry.cache import ResponseCache, cache_key
from mimicry.client import ChatReply
from mimicry.settings import CacheMode


class ChatClient(Protocol):
    """What the reply service needs of a model client (ModelClient, or a test double)."""

    def chat(
        self, model: str, messages: Sequence[Mapping[str, str]], options: Mapping[str, object]
    ) -> ChatReply: ...


class ReplayMiss(LookupError):
    """``--response-cache-mode replay`` and no stored reply for this request."""


@dataclass(frozen=True)
class Fetched:
    """A reply and whether it came from the cache."""

    reply: ChatReply
    cached: bool


class ReplyService:
    """Replies for one model (by digest) and one set of options, through the cache."""

    def __init__(
        self,
        *,
        client: ChatClient | None,
        model: str,
        model_digest: str,
        options: Mapping[str, object],
        cache: ResponseCache | None,
        mode: CacheMode,
    ) -> None:
        if mode is not CacheMode.OFF and cache is None:
            raise ValueError(f"response cache mode {mode.value!r} needs a cache")
        if mode is not CacheMode.REPLAY and client is None:
            raise ValueError("a model client is needed unless replies are replayed")
        self._client = client
        self._model = model
        self._digest = model_digest
        self._options = dict(options)
        self._cache = cache if mode is not CacheMode.OFF else None
        self._mode = mode
        self.model_calls = 0

    def close(self) -> None:
        """Close the client's connections and the cache."""
        close = getattr(self._client, "close", None)
        if callable(close):
            close()
        if self._cache is not None:
            self._cache.close()

    def options_for(self, repeat: int) -> dict[str, object]:
        """The request options of repeat ``repeat``: repeat r is asked with seed ``seed + r``."""
        if repeat == 0:
            return self._options
        seed = self._options.get("seed")
        return {**self._options, "seed": (seed if isinstance(seed, int) else 0) + repeat}

    def key(self, messages: Sequence[Mapping[str, str]], repeat: int = 0) -> str:
        options = self.options_for(repeat)
        return cache_key(model_digest=self._digest, options=options, messages=messages)

    def fetch(self, messages: Sequence[Mapping[str, str]], repeat: int = 0) -> Fetched:
        """The reply to ``messages``: stored if allowed and present, else asked once and stored.

        Raises the client's errors (never cached) and :class:`ReplayMiss`.
        """
        options = self.options_for(repeat)
        if self._cache is None:
            return Fetched(self._ask(messages, options), cached=False)
        key = self.key(messages, repeat)
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
            reply = self._ask(messages, options)
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

    def _ask(
        self, messages: Sequence[Mapping[str, str]], options: Mapping[str, object]
    ) -> ChatReply:
        assert self._client is not None
        self.model_calls += 1
        return self._client.chat(self._model, messages, options)
