"""Run the embedded server as a child process, for the pytest plugin and other tools.

The child runs `python -m mimicry.serve` on a free loopback port in its own process group
(so a terminal's Ctrl-C reaches the parent, which then decides), announces its URL through a
ready file, and writes its log to a file rather than to the parent's terminal. It dies with
its parent: it watches its parent's pid and its stdin pipe, so even a SIGKILLed pytest leaves
no server behind.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import mimicry
from mimicry.embedded.model import (
    ModelFileError,
    bundled_gguf_path,
    default_model_name,
    normalize_model_name,
)

ENGINE_MODULES: Final = ("xllamacpp", "starlette", "uvicorn")
ENGINE_INSTALL_COMMAND: Final = "pip install -e '.[embedded]'"
# The server stops at once on SIGTERM (aborting generations in flight); SIGKILL follows if it
# has not within this grace, so stop() returns within about this long whatever happens.
_STOP_GRACE_SECONDS: Final = 2.0
_ERROR_MARKER: Final = " ERROR "  # in the server's log lines, "mimicry-serve ERROR logger: ..."


class EmbeddedServerError(RuntimeError):
    """The embedded server could not be started (the message says why in one line and where
    its whole log was kept)."""


@dataclass(frozen=True)
class EmbeddedSpec:
    """What the embedded server serves and how."""

    gguf: Path | None = None  # None: the bundled SmolLM2
    model_name: str | None = None  # None: BUNDLED_MODEL_NAME, or the gguf's file stem
    parallel: int = 1
    ctx_size: int = 8192  # per slot
    threads: int | None = None  # None: one per usable CPU left free by other processes

    def __post_init__(self) -> None:
        if self.parallel < 1:
            raise ValueError(f"EmbeddedSpec(parallel={self.parallel!r}): must be at least 1")
        if self.ctx_size < 16:
            raise ValueError(
                f"EmbeddedSpec(ctx_size={self.ctx_size!r}): must be at least 16 tokens"
            )
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"EmbeddedSpec(threads={self.threads!r}): must be at least 1")


MAX_USEFUL_SLOTS: Final = 4
"""More slots than this bought no throughput on this project's 2-CPU machine (see slots_for)."""


def slots_for(in_flight: int) -> int:
    """The slots (`EmbeddedSpec.parallel`) to give a server that gets `in_flight` requests at once.

    One slot per request in flight, up to MAX_USEFUL_SLOTS; each slot gets the run's whole
    `num_ctx` as `ctx_size`. The rows' prompts (300-7,000 tokens) take most of the time, and
    prompt processing is bound by the CPUs, so batching more sequences only speeds up the
    generation part. Measured by benchmarks/embedded_speed.py (16 real rows, num_predict 256,
    slots of 8192 tokens, a shared 2-CPU machine): 3.6, 3.4, 4.5 and 4.6 requests/min with
    1, 2, 4 and 8 requests in flight and as many slots, at 378, 559, 922 and 1,647 MB: 8
    slots cost 725 MB more than 4 for no measurable gain. Requests beyond the slots wait in
    llama.cpp's queue, which serves them in order as slots free up.
    """
    if in_flight < 1:
        raise ValueError(f"in_flight={in_flight!r}: must be at least 1 request")
    return min(in_flight, MAX_USEFUL_SLOTS)


def embedded_available() -> str | None:
    """None when the embedded server can run here, else a one-line reason with the fix."""
    missing = [name for name in ENGINE_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        return (
            f"the embedded engine is not installed ({', '.join(missing)} missing); "
            f"install it with `{ENGINE_INSTALL_COMMAND}`"
        )
    try:
        bundled_gguf_path()
    except ModelFileError as exc:
        return str(exc)
    return None


def _reason(log: str) -> str:
    """The one line of a failed server's log that says why: the server's own last error (which
    names the fix), else the log's last line."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for line in reversed(lines):
        prefix, marker, message = line.partition(_ERROR_MARKER)
        if marker and prefix.startswith("mimicry-serve"):
            return message.split(": ", 1)[-1] if ": " in message else message
    return lines[-1] if lines else "its log is empty"


def _keep_log(log_file: Path, command: str) -> Path | None:
    """Copy a failed server's log where it outlives the server's folder; None if it cannot."""
    kept = Path(tempfile.gettempdir()) / f"mimicry-embedded-{os.getpid()}.log"
    try:
        text = log_file.read_text(encoding="utf-8", errors="replace")
        kept.write_text(f"$ {command}\n{text}", encoding="utf-8")
    except OSError:
        return None
    return kept


class EmbeddedServer:
    """The embedded server in a child process; a context manager that starts and stops it."""

    def __init__(self, spec: EmbeddedSpec, *, startup_timeout: float = 120.0) -> None:
        """Prepare (not start) a server for `spec`; `start()` waits up to `startup_timeout`."""
        if startup_timeout <= 0:
            raise ValueError(f"startup_timeout={startup_timeout!r}: must be positive seconds")
        self._spec = spec
        self._startup_timeout = startup_timeout
        self._model_name = normalize_model_name(spec.model_name or default_model_name(spec.gguf))
        self._lock = threading.RLock()
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:40123 (only once started)."""
        if self._url is None:
            raise EmbeddedServerError("the embedded server is not running; call start() first")
        return self._url

    @property
    def model_name(self) -> str:
        """The name the model is served under, as /api/tags lists it."""
        return self._model_name

    @property
    def pid(self) -> int:
        """The server process's id (only once started)."""
        if self._process is None:
            raise EmbeddedServerError("the embedded server is not running; call start() first")
        return self._process.pid

    def command(self, ready_file: Path) -> list[str]:
        """The command line that runs the server for this spec (its files beside ready_file)."""
        spec = self._spec
        command = [
            sys.executable,
            "-m",
            "mimicry.serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--ready-file",
            str(ready_file),
            "--model-name",
            self._model_name,
            "--parallel",
            str(spec.parallel),
            "--ctx-size",
            str(spec.ctx_size),
            "--parent-pid",
            str(os.getpid()),
            "--exit-on-stdin-eof",
            "--orphan-cleanup-dir",
            str(ready_file.parent),
        ]
        if spec.gguf is not None:
            command += ["--gguf", str(spec.gguf)]
        if spec.threads is not None:
            command += ["--threads", str(spec.threads)]
        return command

    def start(self) -> str:
        """Start the server and wait until it accepts connections; return its base URL.

        Raises EmbeddedServerError with the end of the server's log if it exits or does not
        become ready within the startup timeout.
        """
        with self._lock:
            if self._process is not None and self._url is not None:
                return self._url
            workdir = Path(tempfile.mkdtemp(prefix="mimicry-embedded-"))
            ready_file = workdir / "url"
            log_file = workdir / "server.log"
            env = dict(os.environ)
            # The child must import this very copy of mimicry, installed or not.
            source_root = str(Path(mimicry.__file__).resolve().parent.parent)
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (source_root, env.get("PYTHONPATH", "")) if p
            )
            try:
                with open(log_file, "wb") as log:
                    process = subprocess.Popen(
                        self.command(ready_file),
                        stdin=subprocess.PIPE,
                        stdout=subprocess.DEVNULL,
                        stderr=log,
                        env=env,
                        start_new_session=True,
                    )
            except OSError as exc:
                shutil.rmtree(workdir, ignore_errors=True)
                raise EmbeddedServerError(f"cannot start the embedded server: {exc}") from exc
            self._process = process
            self._workdir = workdir
            atexit.register(self.stop)

            deadline = time.monotonic() + self._startup_timeout
            while True:
                url = self._read_ready(ready_file)
                if url:
                    self._url = url
                    return url
                status = process.poll()
                if status is not None:
                    self._fail(f"exited with status {status} before it was ready", log_file)
                if time.monotonic() > deadline:
                    self._fail(
                        f"was not ready within {self._startup_timeout:g} s "
                        "(raise startup_timeout on a slow machine)",
                        log_file,
                    )
                time.sleep(0.02)

    @staticmethod
    def _read_ready(ready_file: Path) -> str:
        try:
            return ready_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return ""

    def _fail(self, what: str, log_file: Path) -> None:
        try:
            log = log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            log = ""
        kept = _keep_log(log_file, " ".join(self.command(Path("<ready-file>"))))
        self.stop()
        where = f"; its whole log: {kept}" if kept is not None else ""
        raise EmbeddedServerError(f"the embedded server {what}: {_reason(log)}{where}")

    def stop(self) -> int | None:
        """Stop the server at once, aborting generations in flight; safe to repeat.

        SIGTERM to its process group, which ends it within a fraction of a second; SIGKILL if
        it is still there after a short grace. Returns the server's exit status (0 when it
        stopped by itself, negative when a signal killed it), None when it was not running.
        """
        status: int | None = None
        with self._lock:
            process, self._process = self._process, None
            workdir, self._workdir = self._workdir, None
            self._url = None
            if process is not None:
                atexit.unregister(self.stop)
                if process.poll() is None:
                    self._signal_group(process, signal.SIGTERM)
                    try:
                        process.wait(timeout=_STOP_GRACE_SECONDS)
                    except subprocess.TimeoutExpired:
                        self._signal_group(process, signal.SIGKILL)
                        process.wait()
                status = process.returncode
                if process.stdin is not None:
                    with contextlib.suppress(OSError):
                        process.stdin.close()
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)
        return status

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the server process to end by itself; its exit status, or None on timeout.

        The server keeps running until stopped, so this returns only after something ended it
        (a signal, its parent going away); call stop() afterwards to release what is left.
        """
        process = self._process
        if process is None:
            raise EmbeddedServerError("the embedded server is not running; call start() first")
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    @staticmethod
    def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        # The child leads its own session, so its group id is its pid.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)

    def __enter__(self) -> EmbeddedServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
