"""A fake Ollama server for the benchmarks: real HTTP, Ollama's wire format, a fixed latency per
reply and P parallel slots.

It stands in for a model server whose capacity is known exactly: each ``POST /api/chat`` waits
for one of ``--slots`` slots (an asyncio semaphore, as Ollama's ``OLLAMA_NUM_PARALLEL``), holds it
for ``--latency-ms`` and answers with a short, deterministic imitation of the record it was sent.
So the ideal throughput is ``slots / latency`` and whatever a client achieves below it is the
client's own cost.

Run it alone: ``python benchmarks/fake_server.py --latency-ms 20 --slots 8``. It binds a free
loopback port (or ``--port``) and prints ``READY http://127.0.0.1:PORT`` on its first line of
stdout once it accepts connections. ``GET /_stats`` returns what it served (request count, the
most requests in flight, the time from the first request's arrival to the last reply, in the
server's own clock); ``POST /_reset`` clears those figures.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

DEFAULT_MODEL = "fake-model:1b"
#: qwen2:0.5b's context length: rows longer than about 4 characters a token are cut, as Ollama does.
DEFAULT_CONTEXT_LENGTH = 32768
_ID_PATTERN = re.compile(r"\{'id': (\d+), ")


def imitation(content: str) -> str:
    """A short reply that imitates the record, as qwen2:0.5b was seen to (deterministic, cheap).

    Which variant a record gets depends on its id: a copy of the head of the record with the id
    changed that stops inside ``response_a`` (two in four), the same closed with a brace (one in
    four), or a plain answer (one in four). Only string slicing: the server must stay cheap next
    to the suite on the same cores.
    """
    match = _ID_PATTERN.match(content)
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


@dataclass
class Stats:
    chats: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    first_arrival: float | None = None
    last_reply: float | None = None

    def to_dict(self) -> dict[str, Any]:
        window = None
        if self.first_arrival is not None and self.last_reply is not None:
            window = self.last_reply - self.first_arrival
        return {
            "chats": self.chats,
            "max_in_flight": self.max_in_flight,
            "in_flight": self.in_flight,
            "window_s": window,
        }


def build_app(*, latency_s: float, slots: int, model: str, context_length: int) -> Starlette:
    """The Starlette app: /api/version, /api/tags, /api/show, /api/chat, /_stats, /_reset."""
    digest = hashlib.sha256(model.encode()).hexdigest()
    stats = Stats()
    semaphore: asyncio.Semaphore | None = None
    details = {"family": "fake", "parameter_size": "1B", "quantization_level": "Q4_0"}

    async def version(request: Request) -> JSONResponse:
        return JSONResponse({"version": "0.0.0-benchmark"})

    async def tags(request: Request) -> JSONResponse:
        entry = {"name": model, "model": model, "digest": digest, "size": 1, "details": details}
        return JSONResponse({"models": [entry]})

    async def show(request: Request) -> JSONResponse:
        body = await request.json()
        if body.get("model") != model:
            return JSONResponse({"error": f"model '{body.get('model')}' not found"}, 404)
        return JSONResponse(
            {
                "details": details,
                "model_info": {
                    "general.architecture": "fake",
                    "fake.context_length": context_length,
                },
                "capabilities": ["completion"],
            }
        )

    async def chat(request: Request) -> JSONResponse:
        nonlocal semaphore
        if semaphore is None:  # created inside the server's event loop
            semaphore = asyncio.Semaphore(slots)
        arrived = time.monotonic()
        if stats.first_arrival is None:
            stats.first_arrival = arrived
        body = await request.json()
        if body.get("model") != model:
            return JSONResponse({"error": f"model '{body.get('model')}' not found"}, 404)
        content = str(body["messages"][-1]["content"])
        num_ctx = int(body.get("options", {}).get("num_ctx") or context_length)
        async with semaphore:
            stats.in_flight += 1
            stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
            try:
                await asyncio.sleep(latency_s)
            finally:
                stats.in_flight -= 1
        text = imitation(content)
        stats.chats += 1
        stats.last_reply = time.monotonic()
        return JSONResponse(
            {
                "model": model,
                "created_at": "2026-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": text},
                "done": True,
                "done_reason": "stop",
                "total_duration": int(latency_s * 1e9),
                "load_duration": 1,
                # Ollama cuts a prompt longer than the window and says so only here
                "prompt_eval_count": min(len(content) // 4, num_ctx),
                "prompt_eval_duration": 1,
                "eval_count": max(1, len(text) // 4),
                "eval_duration": int(latency_s * 1e9),
            }
        )

    async def get_stats(request: Request) -> JSONResponse:
        return JSONResponse(stats.to_dict())

    async def reset(request: Request) -> JSONResponse:
        stats.chats = stats.max_in_flight = 0
        stats.first_arrival = stats.last_reply = None
        return JSONResponse(stats.to_dict())

    return Starlette(
        routes=[
            Route("/api/version", version),
            Route("/api/tags", tags),
            Route("/api/show", show, methods=["POST"]),
            Route("/api/chat", chat, methods=["POST"]),
            Route("/_stats", get_stats),
            Route("/_reset", reset, methods=["POST"]),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0: a free port (default)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="time per reply")
    parser.add_argument("--slots", type=int, default=8, help="replies computed in parallel")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--context-length", type=int, default=DEFAULT_CONTEXT_LENGTH)
    args = parser.parse_args(argv)
    if args.slots < 1 or args.latency_ms < 0:
        parser.error(f"--slots {args.slots} / --latency-ms {args.latency_ms}: need >= 1 / >= 0")
    app = build_app(
        latency_s=args.latency_ms / 1000,
        slots=args.slots,
        model=args.model,
        context_length=args.context_length,
    )
    # proto must be IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections only then
    # (socket.socket() and socket.create_server() leave proto 0, and every reply then waits
    # ~40 ms for the client's delayed ACK: Nagle's algorithm)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", backlog=2048
    )
    server = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                await task
                return
            await asyncio.sleep(0.01)
        print(f"READY http://127.0.0.1:{port}", flush=True)
        await task

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
