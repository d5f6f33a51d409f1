"""`mimicry-serve` / `python -m mimicry.serve`: run the embedded Ollama-compatible server.

The server binds to loopback unless `--host` says otherwise, picks a free port with
`--port 0` (the default), and can announce its URL through `--ready-file` once it accepts
connections. llama.cpp's logging is silenced unless `--log-level` is info or debug.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

from mimicry.embedded.app import DEFAULT_MAX_BODY_BYTES
from mimicry.embedded.engine import LogLevel, default_threads
from mimicry.embedded.model import (
    ModelFileError,
    ServedModel,
    bundled_gguf_path,
    default_model_name,
    describe_model,
    normalize_model_name,
)

if TYPE_CHECKING:
    import uvicorn

logger = logging.getLogger("mimicry.embedded")

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_CTX_SIZE: Final = 8192
LOG_LEVELS: Final[tuple[LogLevel, ...]] = ("debug", "info", "warning", "error")
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
_ORPHAN_POLL_SECONDS: Final = 0.2
_FORCED_EXIT_SECONDS: Final = 5.0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: a port is 0 (any free port) to 65535")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of `mimicry-serve`."""
    parser = argparse.ArgumentParser(
        prog="mimicry-serve",
        description=(
            "Serve a GGUF model (by default the bundled SmolLM2-135M-Instruct) through "
            "Ollama's HTTP API, with llama.cpp as the engine."
        ),
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address to bind (default: %(default)s; anything but loopback exposes the model)",
    )
    parser.add_argument(
        "--port", type=_port, default=0, help="port to bind; 0 picks a free one (default)"
    )
    parser.add_argument(
        "--gguf", type=Path, default=None, help="GGUF model file (default: the bundled SmolLM2)"
    )
    parser.add_argument(
        "--model-name",
        default=None,
        help="name to serve the model under (default: smollm2:135m-instruct-q4_1 for the "
        "bundled model, else the file's stem)",
    )
    parser.add_argument(
        "--parallel", type=_positive_int, default=1, help="requests generated at once (slots)"
    )
    parser.add_argument(
        "--ctx-size",
        type=_positive_int,
        default=DEFAULT_CTX_SIZE,
        help="context size of each slot in tokens, the largest num_ctx a request can get "
        "(default: %(default)s, capped at the model's training context)",
    )
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="CPU threads for llama.cpp (default: one per CPU this process may use that "
        "other processes leave free when the server starts)",
    )
    parser.add_argument(
        "--ready-file",
        type=Path,
        default=None,
        help="write the base URL to this file (atomically) once connections are accepted",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=_positive_int,
        default=DEFAULT_MAX_BODY_BYTES,
        help="larger request bodies are refused with 413 (default: %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default="warning",
        help="info or debug also show llama.cpp's and uvicorn's logs (default: %(default)s)",
    )
    parser.add_argument(
        "--parent-pid",
        type=_positive_int,
        default=None,
        help="shut down when the process with this id is no longer this server's parent",
    )
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="shut down when standard input reaches end of file (the parent closed it or died)",
    )
    parser.add_argument(
        "--orphan-cleanup-dir",
        type=Path,
        default=None,
        help="a directory of the parent's (ready file, log) to delete when the server exits "
        "because its parent died, since nobody else will",
    )
    return parser


class _Lifeline:
    """Ends the server when its parent goes away, so no orphan outlives a killed test run.

    Two signals of a dead parent are watched: being re-parented (the parent pid changes), and
    end-of-file on stdin (the pipe's only writer was the parent). Either asks the server to
    shut down; if it has not exited a while later, the process is ended outright.
    """

    def __init__(
        self, parent_pid: int | None, watch_stdin: bool, cleanup_dir: Path | None = None
    ) -> None:
        self._parent_pid = parent_pid
        self._watch_stdin = watch_stdin
        self._cleanup_dir = cleanup_dir
        self._lock = threading.Lock()
        self._shutdown: Callable[[], None] | None = None
        self._triggered = False

    @property
    def orphaned(self) -> bool:
        """Whether the parent went away."""
        with self._lock:
            return self._triggered

    def clean_up(self) -> None:
        """Delete the parent's directory, if the parent went away and named one."""
        if self._cleanup_dir is not None and self.orphaned:
            shutil.rmtree(self._cleanup_dir, ignore_errors=True)

    def start(self) -> None:
        if self._parent_pid is not None:
            if os.getppid() != self._parent_pid:
                self._orphaned("the parent process was gone before the server started")
            threading.Thread(target=self._watch_parent, name="parent-watch", daemon=True).start()
        if self._watch_stdin:
            threading.Thread(target=self._watch_eof, name="stdin-watch", daemon=True).start()

    def set_shutdown(self, shutdown: Callable[[], None] | None) -> None:
        with self._lock:
            self._shutdown = shutdown
            triggered = self._triggered
        if triggered and shutdown is not None:
            shutdown()

    def _watch_parent(self) -> None:
        while os.getppid() == self._parent_pid:
            time.sleep(_ORPHAN_POLL_SECONDS)
        self._orphaned(f"the parent process {self._parent_pid} exited")

    def _watch_eof(self) -> None:
        # os.read on the raw descriptor, not sys.stdin: a daemon thread blocked inside a
        # buffered reader makes the interpreter abort at exit.
        with contextlib.suppress(OSError):
            while os.read(0, 65536):
                pass
        self._orphaned("standard input was closed")

    def _orphaned(self, why: str) -> None:
        with self._lock:
            if self._triggered:
                return
            self._triggered = True
            shutdown = self._shutdown
        logger.warning("shutting down: %s", why)
        if shutdown is None:
            # Still loading the model: nothing to shut down gracefully.
            self.clean_up()
            os._exit(EXIT_OK)
        shutdown()
        threading.Thread(target=self._force_exit, name="forced-exit", daemon=True).start()

    def _force_exit(self) -> None:
        time.sleep(_FORCED_EXIT_SECONDS)
        self.clean_up()
        os._exit(EXIT_FAILED)


def _configure_logging(level: LogLevel) -> None:
    # Only this package's and uvicorn's loggers: main() may run inside another program
    # (or a test), whose root logging is not ours to change.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("mimicry-serve %(levelname)s %(name)s: %(message)s"))
    for name in ("mimicry", "uvicorn"):
        named = logging.getLogger(name)
        named.handlers[:] = [handler]
        named.setLevel(level.upper())
        named.propagate = False
    logging.getLogger("uvicorn.access").setLevel("INFO" if level == "debug" else "WARNING")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only for sockets
    # that say they are TCP; without it every reply waited ~40 ms for a delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def write_ready_file(path: Path, url: str) -> None:
    """Write `url` to `path` so that a reader sees either nothing or the whole line."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(url + "\n", encoding="utf-8")
    os.replace(tmp, path)


class _Stop:
    """A request to stop serving, from a signal or the lifeline, in whatever thread it comes.

    Stopping does not wait for generations in flight: `finish` (which ends the process) runs
    in the event loop as soon as the loop sees the request. The connections close with the
    process, so clients get an error at once, and llama.cpp's threads end with it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._reason: str | None = None

    @property
    def reason(self) -> str | None:
        """Why serving stopped (None while it has not been asked to)."""
        with self._lock:
            return self._reason

    def attach(self, event: asyncio.Event) -> None:
        """Bind to the running event loop (called in it)."""
        with self._lock:
            self._loop, self._event = asyncio.get_running_loop(), event
            requested = self._reason is not None
        if requested:
            event.set()

    def request(self, reason: str) -> None:
        """Ask serving to stop; safe from signal handlers and other threads."""
        with self._lock:
            if self._reason is None:
                self._reason = reason
            loop, event = self._loop, self._event
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(event.set)

    def on_signal(self, signum: int, frame: object) -> None:
        """A signal handler (SIGINT, SIGTERM)."""
        self.request(f"received {signal.Signals(signum).name}")


def _make_uvicorn_server(config: uvicorn.Config, stop: _Stop) -> uvicorn.Server:
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn's own handlers shut down gracefully, waiting for every request in flight
            # (a generation can take minutes); ours stop at once.
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, stop.on_signal) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return _Server(config)


async def _serve(
    server: uvicorn.Server,
    sock: socket.socket,
    url: str,
    ready_file: Path | None,
    stop: _Stop,
    finish: Callable[[], None],
) -> bool:
    stopping = asyncio.Event()
    stop.attach(stopping)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not serving.done() and not stopping.is_set():
        await asyncio.sleep(0.01)
    started = server.started
    if started and not stopping.is_set():
        if ready_file is not None:
            write_ready_file(ready_file, url)
        logger.info("accepting connections at %s", url)
    waiting = asyncio.create_task(stopping.wait())
    await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
    if stopping.is_set():
        logger.info("stopping: %s; generations in flight are aborted", stop.reason)
        finish()  # does not return
    waiting.cancel()
    await serving
    return started


def main(argv: Sequence[str] | None = None) -> int:
    """Run the embedded server until interrupted; return the process exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already explained
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    level = cast(LogLevel, args.log_level)
    _configure_logging(level)

    lifeline = _Lifeline(args.parent_pid, args.exit_on_stdin_eof, args.orphan_cleanup_dir)
    lifeline.start()

    try:
        gguf: Path = args.gguf if args.gguf is not None else bundled_gguf_path()
        if not gguf.is_file():
            raise ModelFileError(
                f"--gguf {str(gguf)!r}: no such file; give the path of a .gguf model file"
            )
        name = normalize_model_name(args.model_name or default_model_name(args.gguf))
        model = describe_model(gguf, name)
    except (ModelFileError, ValueError) as exc:
        logger.error("%s", exc)
        return EXIT_USAGE

    ctx_size: int = args.ctx_size
    trained = model.metadata.context_length
    if trained is not None and ctx_size > trained:
        logger.warning(
            "--ctx-size %d exceeds the %d tokens %s was trained on; using %d",
            ctx_size,
            trained,
            model.name,
            trained,
        )
        ctx_size = trained
    if not _is_loopback(args.host):
        logger.warning(
            "listening on %s, not loopback: anyone who can reach this address can use the model",
            args.host,
        )

    try:
        sock = _bind(args.host, args.port)
    except OSError as exc:
        logger.error(
            "cannot listen on %s port %d: %s; choose another --port (0 picks a free one)",
            args.host,
            args.port,
            exc,
        )
        return EXIT_USAGE
    url = _base_url(sock)

    threads: int | None = args.threads
    if threads is None:
        choice = default_threads()
        threads = choice.threads
        logger.info("llama.cpp gets %s", choice.describe())

    stop = _Stop()
    previous_handlers: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        # From here on SIGINT or SIGTERM ends the process at once, even while the model
        # loads (it is acted on once loading is done, well under a second for SmolLM2).
        previous_handlers = {
            sig: signal.signal(sig, stop.on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
    try:
        return _load_and_serve(
            args, level, gguf, model, ctx_size, threads, sock, url, lifeline, stop
        )
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)


def _load_and_serve(
    args: argparse.Namespace,
    level: LogLevel,
    gguf: Path,
    model: ServedModel,
    ctx_size: int,
    threads: int,
    sock: socket.socket,
    url: str,
    lifeline: _Lifeline,
    stop: _Stop,
) -> int:
    # Imported late: the engine and the ASGI stack are the optional [embedded] extra.
    import uvicorn

    from mimicry.embedded.app import create_app
    from mimicry.embedded.engine import EngineConfig, EngineError, LlamaCppEngine

    started_at = time.perf_counter()
    try:
        engine = LlamaCppEngine(
            EngineConfig(
                gguf=gguf,
                parallel=args.parallel,
                ctx_size=ctx_size,
                threads=threads,
                log_level=level,
            )
        )
    except (EngineError, ValueError) as exc:
        sock.close()
        logger.error("%s", exc)
        return EXIT_FAILED
    logger.info("loaded %s in %.2f s", gguf, time.perf_counter() - started_at)

    app = create_app(engine, model, max_body_bytes=args.max_body_bytes)
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level=logging.getLevelName(level.upper()),
        access_log=level == "debug",
        lifespan="on",
        ws="none",
        timeout_graceful_shutdown=5,
        server_header=False,
    )
    server = _make_uvicorn_server(config, stop)

    def forget_ready_file() -> None:
        if args.ready_file is not None:
            with contextlib.suppress(OSError):
                if args.ready_file.read_text(encoding="utf-8").strip() == url:
                    args.ready_file.unlink()

    def finish() -> None:
        # Ends the process without waiting for llama.cpp: its destructor would first finish
        # the batch it is computing (seconds, for a long prompt on a busy machine). The
        # listening socket is closed first: the kernel releases a process's files only once
        # its last thread has exited, and until then new connections must be refused, not
        # accepted into a queue nobody reads.
        with contextlib.suppress(OSError):
            sock.close()
        forget_ready_file()
        lifeline.clean_up()
        logging.shutdown()
        sys.stderr.flush()
        os._exit(EXIT_OK)

    lifeline.set_shutdown(lambda: stop.request("the parent went away"))
    if level != "error":
        sys.stderr.write(
            f"mimicry-serve: serving {model.name} ({model.metadata.parameter_size} "
            f"{model.metadata.quantization_level}, sha256 {model.digest[:12]}) at {url} "
            f"with {args.parallel} slot(s) of {ctx_size} tokens and {threads} thread(s)\n"
        )
        sys.stderr.flush()
    try:
        started = asyncio.run(_serve(server, sock, url, args.ready_file, stop, finish))
    finally:
        sock.close()
        lifeline.set_shutdown(None)
        forget_ready_file()
        lifeline.clean_up()
    if not started:
        logger.error("the server failed to start (see the errors above)")
        return EXIT_FAILED
    return EXIT_OK
