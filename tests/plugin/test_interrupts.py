"""Ctrl-C during a run: a partial report marked incomplete, a consistent cache, exit status 2,
and no embedded server left behind.

Run as a user would: pytest in its own process group with default signal handling (what a
terminal gives a foreground job), SIGINT to that whole group (what a terminal's Ctrl-C does).
Every wait is on an event (a line of the run's output, a request reaching the fake server, a
process ending), never a sleep, and every process group is reaped in ``finally``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from mimicry.embedded import embedded_available
from mimicry.exitcodes import ExitStatus
from mimicry.testing import CHAT, Answer, FaultyOllama, Hang
from tests.conftest import REAL_ROWS_JSONL
from tests.plugin.conftest import BUILT_IN, Suite
from tests.processes import wait_gone

#: The samples (the first ones in the plan's order) whose replies the fake answers before
#: Ctrl-C; every later request is held, so the run is waiting on the fake when the signal comes.
ANSWERED = 4
#: A held request waits at most this long; the fake stopping ends it at once.
HOLD_S = 600.0
#: Safety nets only: the events below come within seconds; these bound a broken run.
EVENT_TIMEOUT_S = 120.0
EXIT_TIMEOUT_S = 120.0
#: A verdict line of ``-v`` output, with or without xdist's ``[gw0] [ 3%]`` prefix.
VERDICT = re.compile(
    r"::test_\S+ (SHOWN|NOT SHOWN|NOT JUDGED)\b|\b(SHOWN|NOT SHOWN|NOT JUDGED) \S+::test_"
)


def _default_sigint() -> None:
    """In the child, before exec: SIGINT back to its default. An ignored SIGINT (a test session
    started with ``nohup`` or ``&``) stays ignored across exec, and Python then installs no
    KeyboardInterrupt handler: Ctrl-C would never reach the run."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Child:
    """``python -m pytest ARGS`` as a terminal runs a foreground job: its own process group,
    default SIGINT. Its output (stdout and stderr) is read line by line as it comes."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:randomly", *args],
            cwd=cwd,
            env=dict(os.environ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,
            preexec_fn=_default_sigint,
        )
        self.pgid = self.proc.pid
        self.lines: list[str] = []
        self._eof = False
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="child-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        for raw in iter(stdout.readline, b""):
            with self._cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for(self, what: str, predicate: Callable[[Sequence[str]], bool]) -> None:
        """Block until ``predicate(lines)`` holds (checked on every new line); fail if the run
        ends or stays silent first."""
        with self._cond:
            self._cond.wait_for(lambda: self._eof or predicate(self.lines), timeout=EVENT_TIMEOUT_S)
            if not predicate(self.lines):
                ended = "ended" if self._eof else f"did not within {EVENT_TIMEOUT_S:g}s"
                tail = "\n".join(self.lines[-40:])
                raise AssertionError(f"the run {ended} before it did {what}; its output:\n{tail}")

    def ctrl_c(self) -> None:
        """What a terminal's Ctrl-C does: SIGINT to the whole process group."""
        os.killpg(self.pgid, signal.SIGINT)

    def finish(self) -> int:
        """Wait for the run to exit, its output to be read and every process of its group (xdist
        workers) to be gone; its exit status."""
        status = self.proc.wait(timeout=EXIT_TIMEOUT_S)
        self._reader.join(EXIT_TIMEOUT_S)
        left = wait_gone(_group(self.pgid), EXIT_TIMEOUT_S)
        assert not left, f"processes of the run outlived it: {left}\n{self.output}"
        return status

    def reap(self) -> None:
        """Whatever happened: kill what is left of the process group, reap the run, close."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, signal.SIGKILL)
        self.proc.wait()
        left = _group(self.pgid)
        if left:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, signal.SIGKILL)
            wait_gone(left, EXIT_TIMEOUT_S)
        self._reader.join(EXIT_TIMEOUT_S)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, pgrp, ...)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def _processes() -> Iterator[tuple[int, list[str]]]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and fields[0] != "Z":  # a zombie has ended already
                yield int(entry.name), fields


def _group(pgid: int) -> list[int]:
    """The live processes of process group ``pgid``."""
    return [pid for pid, fields in _processes() if int(fields[2]) == pgid]


def _serving_children(pid: int) -> list[int]:
    """The live children of ``pid`` that run the embedded server (``python -m mimicry.serve``)."""
    found = []
    for child, fields in _processes():
        if int(fields[1]) != pid:
            continue
        with contextlib.suppress(OSError):
            if b"mimicry.serve" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
    return found


def _row_ids() -> list[int]:
    """The shared rows' ids in file order: the order of a ``--samples=all`` plan."""
    with REAL_ROWS_JSONL.open(encoding="utf-8") as fh:
        return [int(json.loads(line)["id"]) for line in fh if line.strip()]


def _verdicts(lines: Sequence[str]) -> int:
    return sum(1 for line in lines if VERDICT.search(line))


#: A user's behavior that asks the model something about the last answered sample: the run's
#: main thread then waits on a request it sent itself, which the fake holds. Ctrl-C comes once
#: that request has arrived, so it finds the run blocked on the model, not in the middle of
#: pytest's own code (where CPython 3.11 can raise it at an instruction without a line number,
#: and pytest 9.2 then crashes formatting the KeyboardInterrupt: exit status 1, not 2).
ASKS_THE_MODEL = """\
def test_zz_asks_the_model(sample, reply, ask):
    if sample["id"] == {held}:
        assert ask("{{'id': {held}, 'question': 'and then?'}}").text
"""


@pytest.mark.subprocess
@pytest.mark.parametrize("dist", [["-p", "no:xdist"], ["-n", "2"]], ids=["no-xdist", "n2"])
def test_ctrl_c_leaves_a_partial_report_and_a_usable_cache(suite: Suite, dist: list[str]) -> None:
    ids = _row_ids()
    answered, last = ids[:ANSWERED], ids[ANSWERED - 1]
    # every sample is judged by the built-in behaviors and the one that asks (last in order)
    behaviors = len(BUILT_IN) + 1
    suite.add_behavior("zz_asks_the_model", ASKS_THE_MODEL.format(held=last))
    fake = FaultyOllama()
    with fake:
        # the first samples' replies are answered, the question about the last of them and
        # every later request are held until the fake stops
        fake.script(path=CHAT, then=Hang(HOLD_S))
        for sample_id in answered[:-1]:
            fake.script(sample_id=sample_id, then=Answer())
        fake.script(Answer(), sample_id=last, then=Hang(HOLD_S))
        args = [
            "evals",
            *dist,
            f"--ollama-host={fake.url}",
            f"--model={fake.model.name}",
            f"--dataset={REAL_ROWS_JSONL}",
            "--samples=all",
            "--report-json=r.json",
        ]
        first = Child(suite.pytester.path, *args, "-v")
        try:
            # every answered sample judged (the last one by the built-in behaviors), and the run
            # waiting on the question it asked
            first.wait_for(
                f"judge the {ANSWERED} answered samples",
                lambda lines: _verdicts(lines) >= behaviors * ANSWERED - 1,
            )
            fake.wait_until(lambda _: len(fake.chat_log(last)) == 2, EVENT_TIMEOUT_S)
            first.ctrl_c()
            status = first.finish()
        finally:
            first.reap()
        out = first.output

        assert status == ExitStatus.INTERRUPTED, out
        assert "INCOMPLETE RUN: " in out, out  # the reason is in the report
        assert _verdicts(first.lines) == behaviors * ANSWERED - 1, out
        report = json.loads((suite.pytester.path / "r.json").read_text())
        assert report["run"]["complete"] is False
        assert report["run"]["incomplete_reason"] == "interrupted"
        assert report["run"]["exit_status"] == ExitStatus.INTERRUPTED
        done = [s["id"] for s in report["samples"] if s["status"] == "ok"]
        assert sorted(done) == sorted(str(i) for i in answered)

        # the rerun asks the model exactly what the first run did not get: the other samples'
        # replies, and the question
        fake.clear_script()
        asked_before = fake.count(CHAT)
        rerun = Child(suite.pytester.path, *args)
        try:
            status = rerun.finish()
        finally:
            rerun.reap()

        assert status == ExitStatus.OK, rerun.output
        assert fake.count(CHAT) - asked_before == len(ids) - ANSWERED + 1
        report = json.loads((suite.pytester.path / "r.json").read_text())
        assert report["run"]["complete"] is True
        cached = [s["id"] for s in report["samples"] if s["cached"]]
        assert sorted(cached) == sorted(str(i) for i in answered)


#: A user's behavior that, on the first sample, says so and waits (until Ctrl-C): the run's
#: main thread is then blocked, with the embedded server working on the next sample's reply.
WAITS_FOR_CTRL_C = """\
import threading


def test_zz_waits_for_ctrl_c(sample, reply):
    if sample["id"] == {first}:
        print("waiting for Ctrl-C", flush=True)
        threading.Event().wait()
"""


@pytest.mark.subprocess
@pytest.mark.embedded
@pytest.mark.skipif(embedded_available() is not None, reason=f"embedded: {embedded_available()}")
def test_ctrl_c_leaves_no_embedded_server(suite: Suite) -> None:
    suite.add_behavior("zz_waits_for_ctrl_c", WAITS_FOR_CTRL_C.format(first=_row_ids()[0]))
    run = Child(
        suite.pytester.path,
        "evals",
        "-p",
        "no:xdist",
        "-s",  # the waiting test's line reaches the output
        "--backend=embedded",
        f"--dataset={REAL_ROWS_JSONL}",
        "--samples=all",
        "--num-predict=64",
        "--report-json=r.json",
    )
    server_fd: int | None = None
    try:
        # the server is started before the session's first line
        run.wait_for(
            "start the embedded server", lambda lines: any(" via embedded at " in x for x in lines)
        )
        url = next(m for x in run.lines if (m := re.search(r" via embedded at (\S+),", x)))[1]
        servers = _serving_children(run.proc.pid)
        assert len(servers) == 1, (servers, run.output)
        server_fd = os.pidfd_open(servers[0])
        run.wait_for("judge a sample", lambda lines: any("waiting for Ctrl-C" in x for x in lines))
        run.ctrl_c()
        status = run.finish()

        assert status == ExitStatus.INTERRUPTED, run.output
        ready, _, _ = select.select([server_fd], [], [], EXIT_TIMEOUT_S)
        assert ready, f"the embedded server (pid {servers[0]}) outlived the run"
        parts = urlsplit(url)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((parts.hostname, parts.port), timeout=5).close()
        report = json.loads((suite.pytester.path / "r.json").read_text())
        assert report["run"]["complete"] is False
        assert report["run"]["incomplete_reason"] == "interrupted"
        assert [s["id"] for s in report["samples"]] == [str(_row_ids()[0])]
    finally:
        run.reap()
        if server_fd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(server_fd, signal.SIGKILL)
            os.close(server_fd)
