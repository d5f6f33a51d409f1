"""Testing helpers: a fake Ollama server with pinned replies, and faults scripted over it.

Pure standard library (no pytest, ollama or httpx), so it runs anywhere: in a test's process, or
alone with ``python -m mimicry.testing.fake_ollama --port 0 --latency-ms 20 --slots 8``.

Test a behavior against replies you choose::

    from mimicry.testing import FakeModel, FakeOllama, Reply, replies_by_id

    replies = replies_by_id({887722: "{'id': 887723, 'prompt': ...", 933555: Reply("", "length")})
    with FakeOllama(FakeModel("qwen2:0.5b", reply=replies)) as fake:
        run(f"pytest evals --ollama-host {fake.url} --model qwen2:0.5b --sample-ids 887722,933555")
        assert fake.count("/api/chat") == 2

and a client against faults::

    from mimicry.testing import FaultyOllama, Status, Trickle

    with FaultyOllama() as fake:
        fake.script(Status(503, retry_after=1), Trickle(pieces=8, gap_s=0.2))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mimicry.testing.fake_ollama import (
        CHAT,
        DEFAULT_MODEL,
        GENERATE,
        OLLAMA_PATHS,
        SHOW,
        TAGS,
        VERSION,
        ChatRequest,
        Exchange,
        FakeModel,
        FakeOllama,
        FakeServerError,
        Fault,
        HttpRequest,
        Reply,
        ReplyFn,
        Response,
        Served,
        Stats,
        imitating_reply,
        mixed_reply,
        plain_answer,
        replies_by_id,
    )
    from mimicry.testing.faults import (
        Answer,
        BadBody,
        CloseMidBody,
        Die,
        Drop,
        FaultyOllama,
        Hang,
        ModelMissing,
        Status,
        Trickle,
    )

__all__ = [
    "CHAT",
    "DEFAULT_MODEL",
    "GENERATE",
    "OLLAMA_PATHS",
    "SHOW",
    "TAGS",
    "VERSION",
    "Answer",
    "BadBody",
    "ChatRequest",
    "CloseMidBody",
    "Die",
    "Drop",
    "Exchange",
    "FakeModel",
    "FakeOllama",
    "FakeServerError",
    "Fault",
    "FaultyOllama",
    "Hang",
    "HttpRequest",
    "ModelMissing",
    "Reply",
    "ReplyFn",
    "Response",
    "Served",
    "Stats",
    "Status",
    "Trickle",
    "imitating_reply",
    "mixed_reply",
    "plain_answer",
    "replies_by_id",
]


def __getattr__(name: str) -> Any:
    # Imported on first use, not with the package: `python -m mimicry.testing.fake_ollama` must
    # find its module not yet imported (runpy warns otherwise, and would run a second copy).
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    faults = importlib.import_module(f"{__name__}.faults")  # it imports fake_ollama
    if name in faults.__all__:
        return getattr(faults, name)
    return getattr(importlib.import_module(f"{__name__}.fake_ollama"), name)
