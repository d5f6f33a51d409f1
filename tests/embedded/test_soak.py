"""A bounded soak of the embedded server: many requests from concurrent clients, no error, flat
memory. Bounded in count and time, loopback only."""

from __future__ import annotations

import asyncio
from pathlib import Path

import ollama
import pytest

from mimicry.embedded import EmbeddedServer

pytestmark = [pytest.mark.slow, pytest.mark.embedded]

CLIENTS = 8
REQUESTS = 1000
WARMUP = 100


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def _hammer(url: str, model: str, total: int) -> list[BaseException]:
    errors: list[BaseException] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)

    async def client() -> None:
        async with ollama.AsyncClient(host=url, timeout=60) as api:
            while not queue.empty():
                i = queue.get_nowait()
                try:
                    reply = await api.chat(
                        model=model,
                        messages=[{"role": "user", "content": f"{{'id': {i}}}"}],
                        options={"num_predict": 1, "temperature": 0, "seed": i},
                    )
                    assert reply.done
                except BaseException as exc:  # noqa: BLE001 - counted, then asserted empty
                    errors.append(exc)

    await asyncio.wait_for(asyncio.gather(*(client() for _ in range(CLIENTS))), timeout=600)
    return errors


def test_a_thousand_requests_from_eight_clients_no_error_and_flat_memory(
    embedded_server: EmbeddedServer,
) -> None:
    url, model = embedded_server.url, embedded_server.model_name
    assert asyncio.run(_hammer(url, model, WARMUP)) == []
    before = _rss_kib(embedded_server.pid)

    errors = asyncio.run(_hammer(url, model, REQUESTS))
    after = _rss_kib(embedded_server.pid)

    assert errors == []
    assert after - before < 50 * 1024, f"RSS grew from {before} KiB to {after} KiB"
