"""A fake Ollama server for the plugin's tests: real HTTP (pytest-httpserver/werkzeug), Ollama's
wire format, replies pinned per record so a test knows exactly what each behavior should judge.

It stands in for the model, not for the transport: the suite's real client talks HTTP to it.
"""

from __future__ import annotations

import ast
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

ReplyFn = Callable[[dict[str, Any] | None, str], str]


def imitating_reply(record: dict[str, Any] | None, content: str) -> str:
    """What qwen2:0.5b was seen doing: copy the record, change the id, rewrite the prompt, stop."""
    if record is None:
        return "I cannot help with that."
    rewritten = dict(record)
    rewritten["id"] = int(record["id"]) + 1
    turns = json.loads(record["prompt"])
    rewritten["prompt"] = json.dumps([f"Please answer directly: {turns[0]}"])
    text = repr(rewritten)
    return text[: text.index("'response_a'") + 40]  # stops inside response_a's value


def plain_answer(record: dict[str, Any] | None, content: str) -> str:
    return "Here is an answer to your question."


class FakeOllama:
    """Serves /api/version, /api/tags, /api/show and /api/chat for one model; counts requests."""

    def __init__(
        self,
        *,
        model: str = "fake-model:1b",
        digest: str | None = None,
        context_length: int = 32768,
        reply: ReplyFn = imitating_reply,
        done_reason: str = "stop",
        delay_s: float = 0.0,
    ) -> None:
        self.model = model
        self.digest = digest or hashlib.sha256(model.encode()).hexdigest()
        self.context_length = context_length
        self.reply = reply
        self.done_reason = done_reason
        self.delay_s = delay_s
        self.requests: Counter[str] = Counter()
        self.chat_bodies: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self.server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
        for path, handler in {
            "/api/version": self._version,
            "/api/tags": self._tags,
            "/api/show": self._show,
            "/api/chat": self._chat,
        }.items():
            self.server.expect_request(path).respond_with_handler(handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def start(self) -> FakeOllama:
        self.server.start()
        return self

    def stop(self) -> None:
        if self.server.is_running():
            self.server.stop()

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _count(self, request: Request) -> None:
        with self._lock:
            self.requests[request.path] += 1

    def _version(self, request: Request) -> Response:
        self._count(request)
        return _json({"version": "0.0.0-fake"})

    def _tags(self, request: Request) -> Response:
        self._count(request)
        return _json(
            {
                "models": [
                    {
                        "name": self.model,
                        "model": self.model,
                        "digest": self.digest,
                        "size": 1,
                        "details": {
                            "family": "fake",
                            "parameter_size": "1B",
                            "quantization_level": "Q4_0",
                        },
                    }
                ]
            }
        )

    def _show(self, request: Request) -> Response:
        self._count(request)
        name = (request.get_json(silent=True) or {}).get("model")
        if name != self.model:
            return _json({"error": f"model '{name}' not found"}, 404)
        return _json(
            {
                "details": {"family": "fake", "parameter_size": "1B", "quantization_level": "Q4_0"},
                "model_info": {
                    "general.architecture": "fake",
                    "fake.context_length": self.context_length,
                },
                "capabilities": ["completion"],
            }
        )

    def _chat(self, request: Request) -> Response:
        self._count(request)
        body = request.get_json(silent=True) or {}
        with self._lock:
            self.chat_bodies.append(body)
        if body.get("model") != self.model:
            return _json({"error": f"model '{body.get('model')}' not found"}, 404)
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                time.sleep(self.delay_s)
        finally:
            with self._lock:
                self.in_flight -= 1
        content = body["messages"][-1]["content"]
        try:
            record = ast.literal_eval(content)
        except (ValueError, SyntaxError):
            record = None
        text = self.reply(record if isinstance(record, dict) else None, content)
        return _json(
            {
                "model": self.model,
                "created_at": "2026-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": text},
                "done": True,
                "done_reason": self.done_reason,
                "total_duration": 1000,
                "load_duration": 1,
                "prompt_eval_count": min(
                    len(content) // 4, body.get("options", {}).get("num_ctx", 10**9)
                ),
                "prompt_eval_duration": 10,
                "eval_count": max(1, len(text) // 4),
                "eval_duration": 100,
            }
        )


def _json(data: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, content_type="application/json")
