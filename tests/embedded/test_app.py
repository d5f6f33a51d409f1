"""The Ollama front (app.py) over a fake engine: wire format, options, truncation, errors."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from mimicry.embedded.app import DEFAULT_NUM_CTX, NDJSON, create_app
from mimicry.embedded.model import ServedModel, describe_model
from tests.embedded.fakes import FakeEngine, tiny_gguf

MODEL = "tiny:1b"
BODY_LIMIT = 4096


@pytest.fixture
def served(tmp_path: Path) -> ServedModel:
    """A small GGUF header served as tiny:1b."""
    return describe_model(tiny_gguf(tmp_path / "tiny.gguf"), MODEL)


@pytest.fixture
def engine() -> FakeEngine:
    """A fake engine replying 'Hello there!' with a 512-token slot."""
    return FakeEngine()


@pytest.fixture
def client(engine: FakeEngine, served: ServedModel) -> Iterator[TestClient]:
    """The app over the fake engine, with a 4 KiB body limit."""
    with TestClient(create_app(engine, served, max_body_bytes=BODY_LIMIT)) as test_client:
        yield test_client


def ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line]


def chat(client: TestClient, content: str = "hi", **extra: Any) -> Any:
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}
    # json.dumps, not the client's json=: it writes Infinity, which Python's JSON reader takes.
    return client.post("/api/chat", content=json.dumps(body))


# -- lifecycle and wire format ------------------------------------------------------------


def test_the_engine_starts_and_stops_with_the_app(engine: FakeEngine, served: ServedModel) -> None:
    with TestClient(create_app(engine, served)):
        assert engine.started
        assert not engine.closed
    assert engine.closed


def test_chat_streams_ndjson_when_stream_is_absent(client: TestClient) -> None:
    response = chat(client)

    assert response.status_code == 200
    assert response.headers["content-type"] == NDJSON
    lines = ndjson(response.text)
    assert [line["done"] for line in lines] == [False] * 12 + [True]
    assert "".join(line["message"]["content"] for line in lines) == "Hello there!"
    assert all(line["model"] == MODEL and line["created_at"].endswith("Z") for line in lines)
    last = lines[-1]
    assert last["message"] == {"role": "assistant", "content": ""}
    assert last["done_reason"] == "stop"
    assert last["prompt_eval_count"] == len("<user>hi<assistant>")
    assert last["eval_count"] == 12
    assert last["prompt_eval_duration"] == 1_500_000
    assert last["eval_duration"] == 2_500_000
    assert last["total_duration"] >= last["load_duration"] > 0


def test_chat_answers_once_when_not_streamed(client: TestClient, engine: FakeEngine) -> None:
    response = chat(client, stream=False)

    assert response.status_code == 200
    # Nobody reads the pieces: the engine is not asked to stream them.
    assert [c["stream"] for c in engine.completions] == [False]
    body = response.json()
    assert body["message"] == {"role": "assistant", "content": "Hello there!"}
    assert body["done"] is True
    assert body["done_reason"] == "stop"
    assert {k for k, v in body.items() if isinstance(v, int) and not isinstance(v, bool)} == {
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
    }


def test_generate_uses_the_template_and_returns_the_context(
    client: TestClient, engine: FakeEngine
) -> None:
    body = {"model": MODEL, "prompt": "hi", "system": "Be brief", "stream": False}

    reply = client.post("/api/generate", json=body).json()

    assert engine.prompt_text() == "<system>Be brief<user>hi<assistant>"
    assert reply["response"] == "Hello there!"
    assert reply["context"] == engine.completions[-1]["prompt"] + [ord(c) for c in "Hello there!"]


def test_generate_raw_sends_the_prompt_verbatim(client: TestClient, engine: FakeEngine) -> None:
    body = {"model": MODEL, "prompt": "exact text", "raw": True, "stream": False}

    reply = client.post("/api/generate", json=body).json()

    assert engine.prompt_text() == "exact text"
    assert "context" not in reply


def test_generate_streams_with_context_in_the_last_line(client: TestClient) -> None:
    lines = ndjson(client.post("/api/generate", json={"model": MODEL, "prompt": "hi"}).text)

    assert "".join(line["response"] for line in lines) == "Hello there!"
    assert lines[-1]["done"] is True
    assert lines[-1]["context"][-1] == ord("!")


def test_an_earlier_context_is_prepended(client: TestClient, engine: FakeEngine) -> None:
    body = {"model": MODEL, "prompt": "b", "context": [ord("a")], "raw": True, "stream": False}

    client.post("/api/generate", json=body)

    assert engine.prompt_text() == "ab"


# -- options --------------------------------------------------------------------------------


def test_sampling_defaults_are_ollamas(client: TestClient, engine: FakeEngine) -> None:
    chat(client, stream=False)

    sampling = engine.completions[-1]["sampling"]
    assert (sampling.temperature, sampling.top_k, sampling.top_p) == (0.8, 40, 0.9)
    assert (sampling.min_p, sampling.repeat_penalty, sampling.seed) == (0.0, 1.1, -1)


def test_options_reach_the_engine(client: TestClient, engine: FakeEngine) -> None:
    options = {
        "temperature": 0,
        "seed": 42,
        "top_k": 5,
        "top_p": 0.5,
        "stop": ["\n", ""],
        "num_thread": 3,  # a load-time option: accepted and ignored
        "not_an_option": "ignored like Ollama does",
    }

    assert chat(client, stream=False, options=options).status_code == 200

    sampling = engine.completions[-1]["sampling"]
    assert (sampling.temperature, sampling.seed, sampling.top_k, sampling.top_p) == (
        0.0,
        42,
        5,
        0.5,
    )
    assert sampling.stop == ("\n",)


def test_num_predict_ends_with_length(client: TestClient, engine: FakeEngine) -> None:
    body = chat(client, stream=False, options={"num_predict": 5}).json()

    assert engine.completions[-1]["max_tokens"] == 5
    assert body["message"]["content"] == "Hello"
    assert body["done_reason"] == "length"
    assert body["eval_count"] == 5


def test_default_num_ctx_is_ollamas_capped_by_the_slot(
    client: TestClient, engine: FakeEngine
) -> None:
    chat(client, stream=False)

    prompt_length = len(engine.completions[-1]["prompt"])
    # No num_predict: generation may use the rest of the window, min(4096, 512 slot).
    assert engine.completions[-1]["max_tokens"] == min(DEFAULT_NUM_CTX, 512) - prompt_length


def test_num_ctx_above_the_slot_is_clamped_and_logged(
    client: TestClient, engine: FakeEngine, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="mimicry.embedded"):
        chat(client, "x" * 600, stream=False, options={"num_ctx": 100_000})
        chat(client, "x" * 600, stream=False, options={"num_ctx": 100_000})

    # Cut as if num_ctx were the slot's 512 tokens.
    assert len(engine.completions[-1]["prompt"]) == 512 - (512 - 4) // 2
    warnings = [r.getMessage() for r in caplog.records if "num_ctx 100000" in r.getMessage()]
    assert len(warnings) == 1
    assert "--ctx-size 100000" in warnings[0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"temperature": "hot"}, "option 'temperature' must be a number, got 'hot'"),
        ({"num_predict": True}, "option 'num_predict' must be an integer, got True"),
        ({"num_ctx": float("inf")}, "option 'num_ctx' must be a finite integer"),
        ({"stop": "\n"}, "option 'stop' must be a list of strings"),
        ({"use_mmap": 1}, "option 'use_mmap' must be true or false"),
        ([1, 2], "'options' must be a JSON object, got list"),
    ],
)
def test_bad_options_are_refused_naming_the_option(
    client: TestClient, options: object, message: str
) -> None:
    response = chat(client, options=options)

    assert response.status_code == 400
    assert message in response.json()["error"]


def test_format_json_and_schemas_constrain_the_output(
    client: TestClient, engine: FakeEngine
) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}

    chat(client, stream=False, format="json")
    chat(client, stream=False, format=schema)
    chat(client, stream=False, format="")

    assert [c["json_schema"] for c in engine.completions] == [{"type": "object"}, schema, None]
    assert 'expected "json" or a JSON schema' in chat(client, format="xml").json()["error"]


# -- truncation -----------------------------------------------------------------------------


def test_a_prompt_over_num_ctx_is_cut_like_ollama(client: TestClient, engine: FakeEngine) -> None:
    body = chat(client, "y" * 1000 + "END", stream=False, options={"num_ctx": 256}).json()

    prompt = engine.prompt_text()
    assert body["prompt_eval_count"] == len(prompt) == 256 - (256 - 4) // 2 == 130
    assert prompt.startswith("<use")  # num_keep = 4 tokens from the start
    assert prompt.endswith("yEND<assistant>")  # and the end
    assert engine.completions[-1]["max_tokens"] == 256 - 130


def test_generation_stops_when_prompt_and_reply_fill_num_ctx(
    client: TestClient, engine: FakeEngine
) -> None:
    # 19 prompt tokens in a 24-token window leave 5 for the reply.
    body = chat(client, stream=False, options={"num_ctx": 24}).json()

    assert body["prompt_eval_count"] == 19
    assert body["message"]["content"] == "Hello"
    assert body["done_reason"] == "length"


def test_the_oldest_messages_go_first_keeping_system_and_last(
    client: TestClient, engine: FakeEngine
) -> None:
    messages = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "A" * 300},
        {"role": "assistant", "content": "B" * 300},
        {"role": "user", "content": "C"},
    ]

    body = {"model": MODEL, "messages": messages, "stream": False, "options": {"num_ctx": 400}}
    client.post("/api/chat", json=body)

    assert engine.prompt_text() == "<system>S<assistant>" + "B" * 300 + "<user>C<assistant>"


def test_truncate_false_refuses_a_prompt_that_does_not_fit(client: TestClient) -> None:
    response = chat(client, "z" * 300, truncate=False, options={"num_ctx": 100})

    assert response.status_code == 400
    assert "exceeds the context length" in response.json()["error"]


def test_a_bos_written_by_the_template_is_not_doubled(served: ServedModel) -> None:
    engine = FakeEngine(adds_bos=True, template_writes_bos=True)
    with TestClient(create_app(engine, served)) as client:
        chat(client, stream=False)

    assert engine.completions[-1]["prompt"][:2] == [0, ord("<")]


# -- errors -----------------------------------------------------------------------------------


def test_an_unknown_model_is_404_in_ollamas_words(client: TestClient) -> None:
    response = client.post("/api/chat", json={"model": "nope", "messages": []})

    assert response.status_code == 404
    assert response.json() == {"error": "model 'nope' not found"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the request body is empty"),
        (b'{"model": ', "the request body is not valid JSON"),
        (b"\xff\xfe\x00", "the request body is not valid JSON"),
        (b"[" * 3000, "the request body is not valid JSON"),  # nested too deep
        (b"[1, 2]", "the request body must be a JSON object, got list"),
        (b"{}", "model is required"),
        (b'{"model": 7}', "'model' must be a string, got int"),
        (b'{"model": "tiny:1b", "messages": "hi"}', "'messages' must be a list"),
        (b'{"model": "tiny:1b", "messages": ["hi"]}', "messages[0] must be an object"),
        (b'{"model": "tiny:1b", "messages": [{"content": "x"}]}', "messages[0].role must be"),
        (b'{"model": "tiny:1b", "messages": [{"role": "user", "content": 1}]}', "content must be"),
        (b'{"model": "tiny:1b", "stream": "yes"}', "'stream' must be true or false"),
        (b'{"model": "tiny:1b", "think": true}', "does not support thinking"),
        (b'{"model": "tiny:1b", "tools": [{"type": "function"}]}', "does not support tools"),
        (
            b'{"model": "tiny:1b", "messages": [{"role": "user", "images": ["aGk="]}]}',
            "image input",
        ),
    ],
)
def test_malformed_chat_requests_get_400_and_the_error_shape(
    client: TestClient, content: bytes, message: str
) -> None:
    response = client.post("/api/chat", content=content)

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert list(response.json()) == ["error"]
    assert message in response.json()["error"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"template": "{{ .Prompt }}"}, "cannot apply a request 'template'"),
        ({"suffix": "end"}, "does not support insert"),
        ({"context": ["a"]}, "'context' must be a list of token ids"),
        ({"context": [2**40]}, "'context' must be a list of token ids"),
        ({"context": [-1]}, "'context' must be a list of token ids"),
        ({"prompt": 5}, "'prompt' must be a string, got int"),
    ],
)
def test_malformed_generate_requests_get_400(
    client: TestClient, extra: dict[str, object], message: str
) -> None:
    response = client.post("/api/generate", json={"model": MODEL, "prompt": "x", **extra})

    assert response.status_code == 400
    assert message in response.json()["error"]


def test_lone_surrogates_become_replacement_characters(
    client: TestClient, engine: FakeEngine
) -> None:
    # Valid JSON, invalid UTF-8 once decoded: Go's decoder (Ollama) substitutes U+FFFD.
    body = b'{"model": "tiny:1b", "prompt": "a\\ud800b", "raw": true, "stream": false}'

    response = client.post("/api/generate", content=body)

    assert response.status_code == 200
    assert engine.prompt_text() == "a\ufffdb"


def test_a_body_over_the_limit_is_413(client: TestClient) -> None:
    response = chat(client, "x" * BODY_LIMIT)

    assert response.status_code == 413
    assert "--max-body-bytes" in response.json()["error"]


def test_a_chunked_body_over_the_limit_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "tiny:1b", "prompt": "'
        for _ in range(10):
            yield b"x" * 1000

    response = client.post("/api/generate", content=chunks())

    assert response.status_code == 413
    assert "at least" in response.json()["error"]


def test_an_engine_failure_before_output_is_an_error_status(served: ServedModel) -> None:
    engine = FakeEngine(fail_at=0, fail_status=400)
    with TestClient(create_app(engine, served)) as client:
        response = chat(client)

    assert response.status_code == 400
    assert response.json() == {"error": "the fake engine failed"}


def test_an_engine_failure_mid_stream_is_an_error_line(served: ServedModel) -> None:
    engine = FakeEngine(fail_at=3)
    with TestClient(create_app(engine, served)) as client:
        streamed = ndjson(chat(client).text)
        single = chat(client, stream=False)

    assert "".join(line.get("message", {}).get("content", "") for line in streamed) == "Hel"
    assert streamed[-1] == {"error": "the fake engine failed"}
    assert single.status_code == 500
    assert single.json() == {"error": "the fake engine failed"}


@given(
    body=st.dictionaries(
        st.sampled_from(["model", "messages", "options", "stream", "format", "prompt", "x"]),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner),
            max_leaves=8,
        ),
    ),
    path=st.sampled_from(["/api/chat", "/api/generate", "/api/show"]),
)
@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_arbitrary_json_never_causes_a_server_error(
    client: TestClient, body: dict[str, object], path: str
) -> None:
    response = client.post(path, content=json.dumps(body))

    assert response.status_code in (200, 400, 404)
    if response.status_code != 200:
        assert isinstance(response.json()["error"], str)


# -- the other endpoints --------------------------------------------------------------------


def test_empty_requests_load_or_unload_like_ollama(client: TestClient) -> None:
    loaded = client.post("/api/chat", json={"model": MODEL}).json()
    unloaded = client.post("/api/generate", json={"model": MODEL, "keep_alive": 0}).json()

    assert (loaded["done"], loaded["done_reason"]) == (True, "load")
    assert (unloaded["done_reason"], unloaded["response"]) == ("unload", "")


def test_tags_ps_and_show_describe_the_model(client: TestClient, served: ServedModel) -> None:
    tags = client.get("/api/tags").json()["models"]
    ps = client.get("/api/ps").json()["models"]
    show = client.post("/api/show", json={"name": "tiny:1b"}).json()

    assert [m["name"] for m in tags] == [MODEL]
    assert tags[0]["digest"] == served.digest
    assert tags[0]["size"] == served.size
    assert tags[0]["details"]["quantization_level"] == "Q4_K_M"
    assert ps[0]["context_length"] == 512
    assert ps[0]["size_vram"] == 0
    assert show["model_info"]["llama.context_length"] == 2048
    assert show["capabilities"] == ["completion"]
    assert show["details"]["family"] == "llama"


def test_version_and_root_answer(client: TestClient) -> None:
    assert client.get("/").text == "Ollama is running"
    version = client.get("/api/version").json()
    assert version["mimicry_embedded"] is True
    assert version["engine"] == {"threads": 1, "parallel": 1, "ctx_size": 512}


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", "/api/chat", 405, "method GET is not allowed for /api/chat; use POST"),
        ("POST", "/api/embed", 501, "/api/embed is not supported by the mimicry embedded"),
        ("DELETE", "/api/delete", 501, "not supported"),
        ("GET", "/v1/models", 404, "/v1/models not found"),
    ],
)
def test_other_routes_answer_with_the_error_shape(
    client: TestClient, method: str, path: str, status: int, message: str
) -> None:
    response = client.request(method, path)

    assert response.status_code == status
    assert message in response.json()["error"]


def test_pull_succeeds_only_for_the_served_model(client: TestClient) -> None:
    ok = client.post("/api/pull", json={"model": MODEL, "stream": False})
    other = client.post("/api/pull", json={"model": "llama3"})

    assert ok.json() == {"status": "success"}
    assert other.status_code == 400
    assert "serves only 'tiny:1b'" in other.json()["error"]
