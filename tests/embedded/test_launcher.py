"""Starting and stopping the embedded server as a child process."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

from mimicry.embedded import (
    BUNDLED_MODEL_NAME,
    EmbeddedServer,
    EmbeddedServerError,
    EmbeddedSpec,
    embedded_available,
    slots_for,
)
from tests.embedded.fakes import tiny_gguf
from tests.processes import wait_gone

SMALL = EmbeddedSpec(ctx_size=512, threads=1)


def _alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie (an exited child nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc here: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pid: int, timeout: float) -> bool:
    """Whether the process ended within ``timeout`` (waiting on its pidfd, not polling)."""
    return not wait_gone([pid], timeout)


def _refused(url: str) -> bool:
    try:
        httpx.get(f"{url}/api/version", timeout=2)
    except httpx.ConnectError:
        return True
    return False


def test_importing_the_package_loads_no_engine() -> None:
    code = (
        "import sys, mimicry.embedded; "
        "print(sorted(m for m in ('xllamacpp', 'starlette', 'uvicorn') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )

    assert done.stdout.strip() == "[]"


def test_spec_rejects_impossible_values() -> None:
    with pytest.raises(ValueError, match="parallel=0"):
        EmbeddedSpec(parallel=0)
    with pytest.raises(ValueError, match="ctx_size=8"):
        EmbeddedSpec(ctx_size=8)
    with pytest.raises(ValueError, match="threads=0"):
        EmbeddedSpec(threads=0)


def test_one_slot_per_request_in_flight_up_to_four() -> None:
    assert [slots_for(k) for k in (1, 2, 3, 4, 8, 64)] == [1, 2, 3, 4, 4, 4]
    with pytest.raises(ValueError, match="in_flight=0"):
        slots_for(0)


def test_names_default_to_the_bundle_or_the_file_stem() -> None:
    assert EmbeddedServer(EmbeddedSpec()).model_name == BUNDLED_MODEL_NAME
    assert EmbeddedServer(EmbeddedSpec(gguf=Path("/m/Qwen2-0.5B.gguf"))).model_name == (
        "Qwen2-0.5B:latest"
    )
    assert EmbeddedServer(EmbeddedSpec(model_name="qwen2:0.5b")).model_name == "qwen2:0.5b"


def test_an_unstarted_server_has_no_url_or_pid() -> None:
    server = EmbeddedServer(SMALL)

    with pytest.raises(EmbeddedServerError, match="call start"):
        _ = server.url
    with pytest.raises(EmbeddedServerError, match="call start"):
        _ = server.pid
    server.stop()  # harmless


def test_availability_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name: None if name == "xllamacpp" else real_find_spec(name),
    )

    reason = embedded_available()

    assert reason is not None
    assert "xllamacpp" in reason
    assert "pip install -e '.[embedded]'" in reason


def test_a_missing_model_file_fails_with_the_log(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    server = EmbeddedServer(EmbeddedSpec(gguf=tmp_path / "missing.gguf"), startup_timeout=60)

    with pytest.raises(EmbeddedServerError) as excinfo:
        server.start()

    message = str(excinfo.value)
    assert "exited with status 2 before it was ready" in message
    assert "missing.gguf" in message
    assert "no such file" in message


@pytest.mark.embedded
def test_a_file_llama_cpp_cannot_load_fails_with_the_log(tmp_path: Path) -> None:
    pytest.importorskip("xllamacpp")
    # A valid GGUF header without tensor data: readable metadata, unloadable model.
    gguf = tiny_gguf(tmp_path / "headers-only.gguf")
    server = EmbeddedServer(EmbeddedSpec(gguf=gguf, ctx_size=512), startup_timeout=60)

    with pytest.raises(EmbeddedServerError) as excinfo:
        server.start()

    assert "exited with status 1" in str(excinfo.value)
    assert "llama.cpp could not load" in str(excinfo.value)


@pytest.mark.embedded
def test_a_startup_timeout_stops_the_child() -> None:
    if (reason := embedded_available()) is not None:
        pytest.skip(reason)
    server = EmbeddedServer(SMALL, startup_timeout=0.01)

    with pytest.raises(EmbeddedServerError, match=r"was not ready within 0\.01 s"):
        server.start()
    with pytest.raises(EmbeddedServerError, match="call start"):
        _ = server.pid


@pytest.mark.embedded
def test_a_second_server_gets_its_own_port_and_stops_cleanly(
    embedded_server: EmbeddedServer, capfd: pytest.CaptureFixture[str]
) -> None:
    second = EmbeddedServer(SMALL)
    url = second.start()
    pid = second.pid
    try:
        assert url != embedded_server.url
        assert url.startswith("http://127.0.0.1:")
        for base in (url, embedded_server.url):
            reply = httpx.post(
                f"{base}/api/generate",
                json={"model": BUNDLED_MODEL_NAME, "prompt": "Hi", "stream": False,
                      "options": {"num_predict": 2}},
            )  # fmt: skip
            assert reply.status_code == 200
    finally:
        second.stop()

    assert _wait_gone(pid, timeout=5)
    assert _refused(url)
    second.stop()  # idempotent
    # The first server is untouched, and nothing the servers said reached this test's output.
    assert httpx.get(f"{embedded_server.url}/api/tags").status_code == 200
    assert capfd.readouterr() == ("", "")


@pytest.mark.embedded
def test_the_server_dies_with_a_sigkilled_parent() -> None:
    if (reason := embedded_available()) is not None:
        pytest.skip(reason)
    script = textwrap.dedent(
        """
        import signal
        from mimicry.embedded import EmbeddedServer, EmbeddedSpec
        server = EmbeddedServer(EmbeddedSpec(ctx_size=512, threads=1))
        print(server.start(), server.pid, server._workdir, flush=True)
        signal.pause()  # until the test SIGKILLs this parent
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line, parent.stderr.read() if parent.stderr else "no output"
        url, pid_text, workdir = line.split()
        pid = int(pid_text)
        assert httpx.get(f"{url}/api/version").status_code == 200
    finally:
        parent.kill()
        parent.communicate()

    try:
        # Generous: the server notices within a fraction of a second and shuts down at once.
        assert _wait_gone(pid, timeout=10), f"embedded server {pid} outlived its parent"
        assert _refused(url)
        # The dead parent cannot delete its ready file and log; the server did.
        assert not Path(workdir).exists()
    finally:
        if _alive(pid):  # leave no orphan behind, even when the test fails
            os.kill(pid, signal.SIGKILL)


# A JSON schema that forbids ending early: generation runs until it is stopped.
ENDLESS = {"type": "array", "items": {"type": "integer"}, "minItems": 100000}


@pytest.mark.embedded
@pytest.mark.parametrize("how", ["stop", "SIGINT"])
def test_stopping_aborts_a_generation_in_flight(how: str) -> None:
    if (reason := embedded_available()) is not None:
        pytest.skip(reason)
    server = EmbeddedServer(SMALL)
    url = server.start()
    pid = server.pid
    in_flight = threading.Event()
    seen: dict[str, object] = {"lines": 0, "done": False}

    def generate() -> None:
        body = {"model": BUNDLED_MODEL_NAME, "prompt": "List numbers.", "format": ENDLESS,
                "options": {"num_predict": 100000, "temperature": 0}}  # fmt: skip
        try:
            with httpx.stream("POST", f"{url}/api/generate", json=body, timeout=120) as reply:
                for line in reply.iter_lines():
                    seen["lines"] = int(str(seen["lines"])) + 1
                    seen["done"] = '"done":true' in line
                    in_flight.set()
        except httpx.HTTPError as exc:
            seen["error"] = exc
        finally:
            in_flight.set()

    client = threading.Thread(target=generate, daemon=True)
    client.start()
    try:
        assert in_flight.wait(timeout=60)
        assert "error" not in seen, seen
        started = time.monotonic()
        if how == "stop":
            status = server.stop()
        else:
            os.kill(pid, signal.SIGINT)
            status = server.wait(timeout=10)
        elapsed = time.monotonic() - started
        client.join(timeout=10)
    finally:
        server.stop()
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)

    # It ended by itself (0), not by the SIGKILL that follows a grace, and within 3 s.
    assert status == 0
    assert elapsed < 3.0, f"stopping took {elapsed:.1f} s"
    assert not client.is_alive()
    # The generation was cut short: the client saw a broken stream, never a final line.
    assert isinstance(seen.get("error"), httpx.HTTPError), seen
    assert seen["done"] is False
    assert not _alive(pid)
    assert _refused(url)
