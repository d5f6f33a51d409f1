"""The fault layer of the fake Ollama server: each fault as a client sees it, and the scripts.

A plain httpx client shows what is on the wire (the suite's client is tested against these
faults in tests/test_client.py and tests/faults/).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from mimicry.testing import (
    CHAT,
    Answer,
    BadBody,
    CloseMidBody,
    Die,
    Drop,
    Exchange,
    FaultyOllama,
    Hang,
    ModelMissing,
    Response,
    Status,
    Trickle,
)


@pytest.fixture
def fake() -> Iterator[FaultyOllama]:
    """A fault layer with nothing scripted yet."""
    with FaultyOllama() as server:
        yield server


def chat(fake: FaultyOllama, sample_id: int = 1, timeout: float = 30.0) -> httpx.Response:
    """A non-streamed chat request for the record ``{'id': sample_id, ...}``."""
    content = f"{{'id': {sample_id}, 'prompt': '[\"q\"]'}}"
    body = {
        "model": fake.model.name,
        "messages": [{"role": "user", "content": content}],
        "stream": False,
    }
    return httpx.post(f"{fake.url}{CHAT}", json=body, timeout=timeout)


def test_scripts_play_per_sample_then_per_path_then_the_defaults(fake: FaultyOllama) -> None:
    fake.script(Status(500), sample_id=7, then=Status(502))
    fake.script(Status(503), Status(504), then=Status(429))
    fake.script(path="/api/version", then=Status(500))

    assert [chat(fake, 7).status_code for _ in range(3)] == [500, 502, 502]
    assert [chat(fake, 8).status_code for _ in range(4)] == [503, 504, 429, 429]
    assert httpx.get(f"{fake.url}/api/version").status_code == 500
    assert httpx.get(f"{fake.url}/api/tags").status_code == 200  # nothing scripted there
    assert [s.fault for s in fake.chat_log(7)] == ["Status", "Status", "Status"]

    fake.clear_script()
    assert chat(fake, 7).status_code == 200
    assert fake.chat_log()[-1].fault is None
    assert fake.count() == 8


def test_scripts_are_checked(fake: FaultyOllama) -> None:
    with pytest.raises(ValueError, match="'/api/pull'"):
        fake.script(Answer(), path="/api/pull")
    with pytest.raises(TypeError, match="not a fault"):
        fake.script(503)  # type: ignore[arg-type]
    for make, match in [
        (lambda: Status(200), "Status.code=200"),
        (lambda: Trickle(pieces=0), "Trickle.pieces=0"),
        (lambda: Hang(float("nan")), "Hang.seconds=nan"),
        (lambda: CloseMidBody(keep=2), "CloseMidBody.keep=2"),
    ]:
        with pytest.raises((TypeError, ValueError), match=match):
            make()


def test_answer_can_replace_the_models_reply(fake: FaultyOllama) -> None:
    fake.script(Answer("scripted"), Answer())
    assert chat(fake).json()["message"]["content"] == "scripted"
    imitated = "{'id': 2, 'prompt': '[\"Please answer directly: q\"]'}"
    assert chat(fake).json()["message"]["content"] == imitated


def test_status_sends_ollamas_error_with_or_without_retry_after(fake: FaultyOllama) -> None:
    fake.script(Status(503, retry_after=1.5), Status(500, error="llama runner crashed"))
    busy, crashed = chat(fake), chat(fake)
    assert (busy.status_code, busy.headers["Retry-After"]) == (503, "1.5")
    assert busy.json() == {"error": "the server is busy"}
    assert (crashed.status_code, crashed.json()) == (500, {"error": "llama runner crashed"})
    assert "Retry-After" not in crashed.headers


def test_hang_answers_after_its_time_and_ends_when_the_server_stops(fake: FaultyOllama) -> None:
    fake.script(Hang(0.2), Hang(60))
    started = time.monotonic()
    assert chat(fake).status_code == 200
    assert time.monotonic() - started >= 0.2

    with pytest.raises(httpx.ReadTimeout):
        chat(fake, timeout=0.3)
    started = time.monotonic()
    fake.stop()  # ends the hang that no one waits for any more
    assert time.monotonic() - started < 5


def test_trickle_sends_the_headers_at_once_and_the_body_in_pieces(fake: FaultyOllama) -> None:
    fake.script(Trickle(pieces=4, gap_s=0.3))
    body = {"model": fake.model.name, "messages": [{"role": "user", "content": "x"}]}
    started = time.monotonic()
    with httpx.stream("POST", f"{fake.url}{CHAT}", json=body, timeout=30) as response:
        headers_at = time.monotonic() - started
        pieces = list(response.iter_raw())
    took = time.monotonic() - started
    assert headers_at < 0.3
    assert len(pieces) >= 3  # TCP may merge two pieces, hardly all of them
    assert took >= 3 * 0.3
    whole = httpx.post(f"{fake.url}{CHAT}", json=body, timeout=30).content
    assert b"".join(pieces) == whole


def test_a_client_giving_up_on_a_trickle_counts_as_abandoned(fake: FaultyOllama) -> None:
    fake.script(Trickle(pieces=40, gap_s=0.05))
    with httpx.stream("POST", f"{fake.url}{CHAT}", json={"model": fake.model.name}) as response:
        next(response.iter_raw())
    # the client closed the connection after its first piece; the next writes fail
    stats = fake.wait_until(lambda s: s.abandoned == 1)
    assert stats.replies == 0


def test_cut_dropped_and_bad_bodies(fake: FaultyOllama) -> None:
    html = BadBody(b"<html>", 502, "text/html")
    fake.script(CloseMidBody(keep=0.5), Drop(), BadBody(b"[]"), html)
    with pytest.raises(httpx.RemoteProtocolError, match="incomplete|without sending complete"):
        chat(fake)
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        chat(fake)
    assert chat(fake).content == b"[]"
    page = chat(fake)
    assert (page.status_code, page.headers["content-type"]) == (502, "text/html")
    assert page.text == "<html>"
    assert fake.replies_sent == 0  # the cut reply never reached its last byte


def test_model_missing_is_ollamas_404(fake: FaultyOllama) -> None:
    fake.script(Answer(), then=ModelMissing())
    assert chat(fake).status_code == 200
    gone = chat(fake)
    assert (gone.status_code, gone.json()) == (404, {"error": "model 'fake-model:1b' not found"})


def test_die_refuses_later_connections_until_started_again(fake: FaultyOllama) -> None:
    port = fake.port
    fake.script(Die())
    with pytest.raises(httpx.RemoteProtocolError):
        chat(fake)
    assert not fake.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()

    fake.start()
    assert fake.port == port
    assert chat(fake).status_code == 200


@dataclass(frozen=True)
class _Teapot:
    """A fault written by a test: anything with play(exchange)."""

    def play(self, exchange: Exchange) -> None:
        exchange.send(Response.error(418, f"no {exchange.request.sample_id} here"))


def test_a_test_can_write_its_own_fault(fake: FaultyOllama) -> None:
    fake.script(_Teapot())
    teapot = chat(fake, 42)
    assert (teapot.status_code, teapot.json()) == (418, {"error": "no 42 here"})
    assert fake.chat_log()[-1].fault == "_Teapot"
