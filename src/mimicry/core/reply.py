"""A model's reply to one record, as behaviors see it: the text, the server's accounting and flags,
and the imitation read from it (lazily, once).

This is what the eval suite's ``reply`` fixture hands a behavior test. It is plain data: the core
builds it from the reply the run fetched, and a user can build one by hand in a test of their own
detector (``Reply("{'id': 1}")``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mimicry.core.parsing import Imitation, read_imitation

#: Ollama's counters of a reply (durations in nanoseconds), all integers.
REPLY_COUNTERS = (
    "prompt_eval_count",
    "eval_count",
    "total_duration",
    "load_duration",
    "prompt_eval_duration",
    "eval_duration",
)
#: The reply fields a sample result keeps besides the text.
REPLY_FIELDS = ("done_reason", *REPLY_COUNTERS)


@dataclass(frozen=True)
class Reply:
    """One reply. ``text`` is the reply string; the rest is what the server said about it.

    ``output_capped``: the reply ended at ``num_predict`` (``done_reason == "length"``): the
    harness cut it, not the model. ``input_truncated``: the server most probably cut the prompt
    to fit ``num_ctx`` (such samples are not judged). ``cached``: it came from the response
    cache. ``record_keys``: the top-level keys of the record it answers (they guide reading the
    imitation: see :func:`mimicry.core.parsing.read_imitation`).
    """

    text: str
    done_reason: str | None = None
    prompt_eval_count: int | None = None
    eval_count: int | None = None
    input_truncated: bool = False
    cached: bool = False
    model: str = ""
    record_keys: tuple[str, ...] = ()
    counters: Mapping[str, int | None] = field(default_factory=dict, compare=False, repr=False)
    _memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def output_capped(self) -> bool:
        """Whether the reply stopped at the token cap (``done_reason == "length"``)."""
        return self.done_reason == "length"

    @property
    def imitation(self) -> Imitation:
        """The part of the reply that imitates the record (read once, then kept)."""
        found = self._memo.get("imitation")
        if found is None:
            found = self._memo["imitation"] = read_imitation(self.text, self.record_keys)
        assert isinstance(found, Imitation)
        return found

    def for_record(self, record: Mapping[str, object]) -> Reply:
        """This reply read against ``record``'s keys (itself when they are the ones it has)."""
        keys = tuple(str(key) for key in record)
        if keys == self.record_keys:
            return self
        return Reply(
            text=self.text,
            done_reason=self.done_reason,
            prompt_eval_count=self.prompt_eval_count,
            eval_count=self.eval_count,
            input_truncated=self.input_truncated,
            cached=self.cached,
            model=self.model,
            record_keys=keys,
            counters=self.counters,
        )

    @classmethod
    def from_fields(
        cls,
        fields: Mapping[str, object],
        *,
        record: Mapping[str, object] | None = None,
        input_truncated: bool = False,
        cached: bool = False,
        model: str = "",
    ) -> Reply:
        """A reply from the plain fields a sample result or the cache keeps (``content`` or
        ``reply`` for the text, ``done_reason`` and Ollama's counters)."""
        text = fields.get("content", fields.get("reply"))
        counters = {
            name: value if isinstance(value, int) and not isinstance(value, bool) else None
            for name in REPLY_COUNTERS
            for value in [fields.get(name)]
        }
        done_reason = fields.get("done_reason")
        return cls(
            text=text if isinstance(text, str) else "",
            done_reason=done_reason if isinstance(done_reason, str) else None,
            prompt_eval_count=counters["prompt_eval_count"],
            eval_count=counters["eval_count"],
            input_truncated=input_truncated,
            cached=cached,
            model=model,
            record_keys=() if record is None else tuple(str(key) for key in record),
            counters=counters,
        )


def as_reply(reply: Reply | str, record: Mapping[str, object]) -> Reply:
    """``reply`` as a :class:`Reply` read against ``record`` (a bare string is a reply that
    stopped by itself)."""
    if isinstance(reply, Reply):
        return reply.for_record(record)
    return Reply(text=reply, record_keys=tuple(str(key) for key in record))
