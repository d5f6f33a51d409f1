"""The fake Ollama server itself: Ollama's wire format as the official client reads it, models and
reply functions, latency and slots, counters, and a clean start and stop.

Every test waits on the fake's own counters (a condition), never on a sleep.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mimicry.testing import (
    CHAT,
    ChatRequest,
    FakeModel,
    FakeOllama,
    FakeServerError,
    Reply,
    imitating_reply,
    plain_answer,
    replies_by_id,
)
from mimicry.testing.fake_ollama import read_literal
from tests.conftest import REAL_ROWS_JSONL

ROW = json.loads(REAL_ROWS_JSONL.read_text().splitlines()[0])
PROMPT = f"{ROW}"  # what the suite sends: the repr of the row
Official = Callable[[str], ollama.Client]


def user(content: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": content}]


def fake_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("fake-ollama")]


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    """A fake with its default model (imitating replies)."""
    with FakeOllama() as server:
        yield server


@pytest.fixture
def official() -> Iterator[Official]:
    """The official ``ollama`` client for a URL; every one made is closed after the test."""
    clients: list[ollama.Client] = []

    def make(url: str) -> ollama.Client:
        clients.append(ollama.Client(host=url))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


# -- the wire format, read by the official client ------------------------------------------------


def test_the_official_client_reads_every_endpoint(fake: FakeOllama, official: Official) -> None:
    client = official(fake.url)
    name = fake.model.name

    [listed] = client.list().models
    assert (listed.model, listed.digest) == (name, hashlib.sha256(name.encode()).hexdigest())
    assert listed.details is not None
    assert listed.details.family == "fake"
    shown = client.show(name)
    assert shown.modelinfo is not None
    assert shown.modelinfo["fake.context_length"] == 32768

    reply = client.chat(model=name, messages=user(PROMPT), options={"num_ctx": 64}, stream=False)
    assert reply.message.content == imitating_reply(ChatRequest(name, user(PROMPT), {}))
    assert reply.done
    assert reply.done_reason == "stop"
    assert reply.prompt_eval_count == 64  # 4 characters a token, capped at num_ctx
    assert reply.eval_count == len(reply.message.content) // 4
    assert all(
        isinstance(value, int) and value > 0
        for value in (reply.total_duration, reply.eval_duration, reply.prompt_eval_duration)
    )

    parts = list(client.chat(model=name, messages=user(PROMPT), stream=True))
    assert "".join(p.message.content or "" for p in parts) == reply.message.content
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    assert parts[-1].done_reason == "stop"
    assert parts[-1].eval_count == reply.eval_count

    generated = client.generate(model=name, prompt="hello", stream=False)
    assert generated.response == "I cannot help with that."  # not a record
    streamed = list(client.generate(model=name, prompt="hello", stream=True))
    assert "".join(p.response for p in streamed) == generated.response

    assert httpx.get(f"{fake.url}/api/version").json() == {"version": "0.0.0-fake"}
    assert httpx.get(f"{fake.url}/").text == "Ollama is running"
    assert fake.requests == {
        "/api/tags": 1,
        "/api/show": 1,
        "/api/chat": 2,
        "/api/generate": 2,
        "/api/version": 1,
        "/": 1,
    }


def test_an_unknown_model_gets_ollamas_404_and_names_match_like_ollamas(official: Official) -> None:
    with FakeOllama(FakeModel("qwen2:latest")) as fake:
        client = official(fake.url)
        for call in (
            lambda: client.show("llama3:8b"),
            lambda: client.chat(model="llama3:8b", messages=user("hi")),
            lambda: client.generate(model="llama3:8b", prompt="hi"),
        ):
            with pytest.raises(ollama.ResponseError) as info:
                call()
            assert info.value.status_code == 404
            assert info.value.error == "model 'llama3:8b' not found"
        # an untagged name is ":latest", and names are case-insensitive
        assert client.chat(model="QWEN2", messages=user("hi"), stream=False).done


@pytest.mark.parametrize(
    ("request_body", "status", "text"),
    [
        (b"{not json", 400, "JSON object"),
        (b'{"messages": []}', 400, "model is required"),
        (b'{"model": "fake-model:1b", "messages": "hi"}', 400, "invalid messages"),
    ],
)
def test_malformed_chat_requests_get_a_400(
    fake: FakeOllama, request_body: bytes, status: int, text: str
) -> None:
    response = httpx.post(f"{fake.url}{CHAT}", content=request_body)
    assert response.status_code == status
    assert text in response.json()["error"]


def test_other_paths_and_methods_get_ollamas_404(fake: FakeOllama) -> None:
    assert httpx.get(f"{fake.url}{CHAT}").text == "404 page not found"
    assert httpx.post(f"{fake.url}/api/pull", json={}).status_code == 404


# -- models and reply functions ------------------------------------------------------------------


def test_several_models_answer_each_with_its_own_reply(official: Official) -> None:
    judge = FakeModel("judge:1b", reply=plain_answer, family="qwen2", context_length=4096)
    with FakeOllama(FakeModel(), judge) as fake:
        client = official(fake.url)
        listed = {m.model: m.digest for m in client.list().models}
        assert list(listed) == ["fake-model:1b", "judge:1b"]
        assert len(set(listed.values())) == 2
        assert client.show("judge:1b").modelinfo == {
            "general.architecture": "qwen2",
            "general.parameter_count": 1,
            "qwen2.context_length": 4096,
        }
        imitated = client.chat(model="fake-model:1b", messages=user(PROMPT), stream=False)
        judged = client.chat(model="judge:1b", messages=user(PROMPT), stream=False)
        assert imitated.message.content.startswith("{'id': ")
        assert judged.message.content == "Here is an answer to your question."
        assert [s.model for s in fake.chat_log()] == ["fake-model:1b", "judge:1b"]

        # a pulled model replaces the one of the same name; a removed one is gone
        fake.put_model(dataclasses.replace(judge, digest="f" * 64))
        assert {m.model: m.digest for m in client.list().models}["judge:1b"] == "f" * 64
        fake.remove_model("judge:1b")
        assert [m.model for m in client.list().models] == ["fake-model:1b"]
        with pytest.raises(ollama.ResponseError, match="not found"):
            client.chat(model="judge:1b", messages=user("hi"))
        with pytest.raises(KeyError, match="judge:1b"):
            fake.remove_model("judge:1b")


def test_the_reply_function_gets_the_record_messages_model_and_options(official: Official) -> None:
    seen: list[ChatRequest] = []

    def reply(request: ChatRequest) -> Reply:
        seen.append(request)
        return Reply("cut", done_reason="length", prompt_eval_count=7, eval_count=1024)

    with FakeOllama(FakeModel("m:1b", reply=reply)) as fake:
        client = official(fake.url)
        messages = [{"role": "system", "content": "be brief"}, *user(PROMPT)]
        options = {"temperature": 0, "seed": 42, "num_ctx": 2048}
        answer = client.chat(model="m:1b", messages=messages, options=options, stream=False)
        client.chat(model="m:1b", messages=user("not a record"), stream=False)

    assert (answer.message.content, answer.done_reason) == ("cut", "length")
    assert (answer.prompt_eval_count, answer.eval_count) == (7, 1024)
    first, second = seen
    assert first.model == "m:1b"
    assert list(first.messages) == messages
    assert dict(first.options) == options
    assert first.num_ctx == 2048
    assert first.content == PROMPT
    assert first.record == ROW
    assert first.sample_id == ROW["id"]
    assert (second.record, second.sample_id, second.num_ctx) == (None, None, None)


def test_the_reply_helpers() -> None:
    row = ChatRequest("m", user(PROMPT), {})
    imitation = imitating_reply(row)
    # copies the record with id + 1 and a more direct prompt, and stops inside response_a
    assert imitation.startswith(f"{{'id': {ROW['id'] + 1}, ")
    assert "'prompt': '[\"Please answer directly: " in imitation
    assert "'response_a': '" in imitation
    assert "'response_b'" not in imitation
    assert imitating_reply(ChatRequest("m", user("what is 2 + 2?"), {})) == (
        "I cannot help with that."
    )
    assert plain_answer(row) == "Here is an answer to your question."

    pinned = replies_by_id({ROW["id"]: Reply("pinned", "length")}, default=imitating_reply)
    assert pinned(row) == Reply("pinned", "length")
    other = ChatRequest("m", user("{'id': 1, 'prompt': '[\"x\"]'}"), {})
    assert pinned(other) == imitating_reply(other)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: FakeModel(""), "FakeModel.name=''"),
        (lambda: FakeModel(context_length=0), "context_length=0"),
        (lambda: FakeOllama(slots=0), "slots=0"),
        (lambda: FakeOllama(latency_s=-1), "latency_s=-1"),
        (lambda: FakeOllama("qwen2"), "FakeModel"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_name_the_value(make: Any, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_a_failing_reply_function_is_a_500_and_fails_the_context_manager() -> None:
    def broken(request: ChatRequest) -> str:
        raise ValueError("a bug in the test's reply function")

    fake = FakeOllama(FakeModel(reply=broken))
    with pytest.raises(FakeServerError, match="a bug in the test's reply function"):  # noqa: PT012
        with fake:
            response = httpx.post(
                f"{fake.url}{CHAT}",
                json={"model": fake.model.name, "messages": user("hi"), "stream": False},
            )
            assert response.status_code == 500
            assert "a bug in the test's reply function" in response.json()["error"]


# -- latency, slots, counters ----------------------------------------------------------------------


def test_requests_beyond_the_slots_queue_for_the_latency() -> None:
    with FakeOllama(latency_s=0.2, slots=2) as fake:
        body = {"model": fake.model.name, "messages": user(PROMPT), "stream": False}
        statuses: list[int] = []

        def ask() -> None:
            statuses.append(httpx.post(f"{fake.url}{CHAT}", json=body, timeout=30).status_code)

        started = time.monotonic()
        threads = [threading.Thread(target=ask) for _ in range(5)]
        for thread in threads:
            thread.start()
        try:
            busy = fake.wait_until(lambda s: s.in_flight == 2)
            assert busy.count() >= 2
            done = fake.wait_until(lambda s: s.replies == 5)
        finally:
            for thread in threads:
                thread.join(30)
        took = time.monotonic() - started

    assert statuses == [200] * 5
    assert done.max_in_flight == 2
    assert took >= 3 * 0.2  # 5 replies, 2 at a time: 3 rounds
    assert done.window_s is not None
    assert done.window_s >= 3 * 0.2


def test_wait_until_times_out_naming_the_counters(fake: FakeOllama) -> None:
    with pytest.raises(TimeoutError, match=r"within 0\.05s: .*'replies': 0"):
        fake.wait_for_requests(1, timeout=0.05)


def test_counters_log_and_reset(fake: FakeOllama) -> None:
    headers = {"Authorization": "Bearer sk-1"}
    with httpx.Client(base_url=fake.url, headers=headers) as client:
        for _ in range(3):
            client.post(CHAT, json={"model": fake.model.name, "messages": user(PROMPT)})
        client.get("/api/tags")
    stats = fake.stats()
    assert (stats.count(), stats.count("/api/tags"), stats.replies) == (3, 1, 3)
    assert stats.connections == 1  # keep-alive: one connection for all four requests
    assert [b["messages"] for b in fake.chat_bodies] == [user(PROMPT)] * 3
    assert {s.authorization for s in fake.log} == {"Bearer sk-1"}
    assert [s.sample_id for s in fake.chat_log()] == [ROW["id"]] * 3
    assert fake.chat_log(sample_id=1) == []
    assert fake.replies_sent == 3
    assert fake.max_in_flight == 1
    assert httpx.get(f"{fake.url}/_fake/stats").json()["requests"] == {CHAT: 3, "/api/tags": 1}

    fake.reset_counters()
    assert fake.stats().to_dict() == {
        "requests": {},
        "replies": 0,
        "in_flight": 0,
        "max_in_flight": 0,
        "connections": 0,
        "abandoned": 0,
        "window_s": None,
    }
    assert fake.log == []


def test_without_the_log_only_the_counters_are_kept() -> None:
    with FakeOllama(keep_log=False) as fake:
        httpx.post(f"{fake.url}{CHAT}", json={"model": fake.model.name, "messages": user("x")})
        assert (fake.count(), fake.log, fake.chat_bodies) == (1, [], [])


# -- life cycle ----------------------------------------------------------------------------------


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_stop_refuses_connections_ends_every_thread_and_start_reuses_the_port() -> None:
    fake = FakeOllama().start()
    try:
        port = fake.port
        idle = httpx.Client(base_url=fake.url)  # a kept-alive connection, left idle
        assert idle.get("/api/version").status_code == 200
        assert fake_threads()

        fake.stop()
        assert not fake.running
        assert fake_threads() == []
        assert _refused(port)
        with pytest.raises(httpx.TransportError):
            idle.get("/api/version")  # its connection was closed by the server
        fake.stop()  # idempotent

        fake.start()
        assert fake.port == port
        assert idle.get("/api/version").status_code == 200
        with pytest.raises(RuntimeError, match="already running"):
            fake.start()
        idle.close()
    finally:
        fake.stop()
    assert fake_threads() == []


def test_stop_ends_a_reply_still_waiting_for_its_latency() -> None:
    fake = FakeOllama(latency_s=60).start()
    outcome: list[BaseException | int] = []

    def ask() -> None:
        try:
            body = {"model": fake.model.name, "messages": user("x"), "stream": False}
            outcome.append(httpx.post(f"{fake.url}{CHAT}", json=body, timeout=60).status_code)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=ask)
    thread.start()
    try:
        fake.wait_until(lambda s: s.in_flight == 1)
        started = time.monotonic()
        fake.stop()
        assert time.monotonic() - started < 5
    finally:
        fake.stop()
        thread.join(30)
    [result] = outcome
    assert isinstance(result, httpx.RemoteProtocolError)
    assert fake_threads() == []


def test_the_package_imports_neither_pytest_nor_ollama_nor_httpx() -> None:
    code = (
        "import sys, mimicry.testing\n"
        "mimicry.testing.FaultyOllama, mimicry.testing.FakeOllama\n"
        "print(','.join(m for m in ('pytest', 'ollama', 'httpx') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# -- the command line ----------------------------------------------------------------------------


def test_the_command_line_serves_pinned_replies_until_sigterm(
    tmp_path: Path, official: Official
) -> None:
    pinned = tmp_path / "pinned.json"
    pinned.write_text(json.dumps({str(ROW["id"]): {"text": "pinned", "done_reason": "length"}}))
    ready = tmp_path / "url"
    command = [
        sys.executable,
        "-m",
        "mimicry.testing.fake_ollama",
        "--port=0",
        f"--ready-file={ready}",
        "--latency-ms=20",
        "--slots=8",
        "--model=a:1b",
        "--model=b:1b",
        "--reply=plain",
        f"--replies={pinned}",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout is not None
        readable, _, _ = select.select([process.stdout], [], [], 30)
        assert readable, "the fake did not print its URL within 30 s"
        url = process.stdout.readline().decode().strip()
        assert url.startswith("http://127.0.0.1:")
        assert ready.read_text() == f"{url}\n"

        client = official(url)
        assert [m.model for m in client.list().models] == ["a:1b", "b:1b"]
        answer = client.chat(model="b:1b", messages=user(PROMPT), stream=False)
        assert (answer.message.content, answer.done_reason) == ("pinned", "length")
        other = client.chat(model="a:1b", messages=user("hi"), stream=False)
        assert other.message.content == "Here is an answer to your question."
        stats = httpx.get(f"{url}/_fake/stats").json()
        assert (stats["requests"][CHAT], stats["replies"]) == (2, 2)
        assert httpx.post(f"{url}/_fake/reset").json()["replies"] == 0

        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 0
        assert err.decode() == ""  # nothing on stderr: no warning, no request log
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def test_the_command_line_rejects_bad_values(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mimicry.testing.fake_ollama", "--slots=0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--slots 0" in result.stderr


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),  # any code point, lone surrogates included
        lambda children: (
            st.lists(children)
            | st.tuples(children, children)
            | st.dictionaries(st.text() | st.integers(), children)
        ),
        max_leaves=12,
    )
)
def test_the_record_is_read_without_ast_exactly_as_ast_reads_it(value: object) -> None:
    """The fake reads a request's record with tokenize (an ast call in its threads can race
    pytest's assertion rewriting on CPython 3.11): the same value as ast.literal_eval."""
    text = repr(value)
    assert read_literal(text) == ast.literal_eval(text)


@pytest.mark.parametrize(
    "text", ["{'a': f(x)}", "__import__('os')", "{'a' 1}", "[1, 2", "1 2", "b'x'", "1j", ""]
)
def test_what_is_not_a_plain_literal_is_no_record(text: str) -> None:
    request = ChatRequest(model="m", messages=[{"role": "user", "content": text}], options={})
    assert request.record is None
