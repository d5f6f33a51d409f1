"""Several machines, for real: xdist's ssh gateway through a private OpenSSH server on loopback,
two workers in their own directories, two Ollama-compatible hosts serving one model.

The README's multi-machine recipe run as written there: one ``--tx ssh=…//python=…`` per
machine (here with ``chdir=``, the directory the machine's copy lives in), ``--rsyncdir`` for
the suite, one ``--ollama-host`` per host. The controller plans the run and hands the plan to
workers that execnet started through ``ssh``; the run must give the report a run without xdist
gives on the same rows, each sample asked once, at the host its dataset index names.

What this cannot show: both "machines" are this one. They share its filesystem, and with it
the row store and the response cache the plan names by absolute path, which two real machines
would not.

Needs Linux (``/proc``, a child subreaper) and OpenSSH (``sshd``, ``ssh``, ``ssh-keygen``); as
root, sshd also needs its privilege separation directory. The test skips, saying how to get
what is missing. Every process the test starts, however deep (sshd's sessions, the workers, the
ssh clients), is adopted by the test's process, and killed and reaped at its end.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

from mimicry.exitcodes import ExitStatus
from mimicry.testing import FakeModel, FakeOllama
from tests.conftest import REAL_ROWS_JSONL
from tests.plugin.conftest import BUILT_IN, Suite, comparable, pinned_imitations
from tests.processes import wait_gone

pytestmark = [pytest.mark.subprocess]

N_SAMPLES = 12
#: Safety nets only: sshd listens within milliseconds and the run takes seconds.
START_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 30.0
#: A free port is picked, then bound by sshd: another process may take it in between.
PORT_ATTEMPTS = 5
#: Where sshd usually is, often not on a user's PATH.
SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")
INSTALL_SERVER = "apt-get install -y openssh-server"
INSTALL_CLIENT = "apt-get install -y openssh-client"
PRIVSEP_MISSING = re.compile(r"Missing privilege separation directory: (\S+)")
#: prctl(2) options: an orphaned descendant goes to its nearest subreaper instead of init.
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
#: One generation of descendants is killed and reaped per round; theirs are adopted meanwhile.
REAP_ROUNDS = 50


# -- processes ---------------------------------------------------------------------------------


def _parents() -> dict[int, tuple[int, str]]:
    """Every process's parent and state (``Z`` for a zombie), from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it ended meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        found[int(entry.name)] = (int(fields[1]), fields[0])
    return found


def _children(pid: int) -> list[int]:
    """``pid``'s children, zombies included (a zombie still has to be reaped)."""
    return [child for child, (parent, _) in _parents().items() if parent == pid]


def _descendants(pid: int) -> list[int]:
    """``pid``'s live descendants, however deep."""
    parents = _parents()
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        children = [c for c, (p, state) in parents.items() if p == parent and state != "Z"]
        found += children
        frontier += children
    return found


@contextlib.contextmanager
def adopting_descendants() -> Iterator[None]:
    """Make this process the reaper of every process started inside the block, however deep
    (Linux's child subreaper: an orphan goes to this process, not to init); at the block's end,
    kill and reap every child it did not have before, generation by generation."""
    libc = ctypes.CDLL(None, use_errno=True)
    before = set(_children(os.getpid()))
    previous = ctypes.c_int(0)
    if (
        libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(previous), 0, 0, 0) != 0
        or libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0
    ):
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(errno)}")
    try:
        yield
    finally:
        try:
            _kill_and_reap_children(exclude=before)
        finally:
            libc.prctl(PR_SET_CHILD_SUBREAPER, previous.value, 0, 0, 0)


def _kill_and_reap_children(exclude: set[int]) -> None:
    me = os.getpid()
    for _ in range(REAP_ROUNDS):
        # a killed child's own children are this process's once it has been reaped (the kernel
        # reparents them as it exits), so the next round finds them
        left = [pid for pid in _children(me) if pid not in exclude]
        if not left:
            return
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in left:
            with contextlib.suppress(ChildProcessError):  # reaped elsewhere (a Popen)
                os.waitpid(pid, 0)
    raise AssertionError(f"children still being born after {REAP_ROUNDS} rounds of kill and reap")


# -- the OpenSSH server ------------------------------------------------------------------------


def _require_openssh() -> str:
    """sshd's path; skips, saying what to install, without it, the client or Linux."""
    if sys.platform != "linux":
        pytest.skip(f"needs Linux (/proc, prctl's child subreaper), not {sys.platform!r}")
    path = os.pathsep.join([os.environ.get("PATH", ""), *SBIN])
    sshd = shutil.which("sshd", path=path)
    if sshd is None:
        pytest.skip(f"the OpenSSH server (sshd) is not installed: {INSTALL_SERVER}")
    for client in ("ssh", "ssh-keygen"):
        if shutil.which(client) is None:
            pytest.skip(f"the OpenSSH client ({client}) is not installed: {INSTALL_CLIENT}")
    return os.path.abspath(sshd)  # sshd re-executes itself, so only by an absolute path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Sshd:
    """``sshd -D -e`` on a free loopback port, run as the current user, letting that user in
    with a key and nothing else. Its host key, the client's key, config, pid file and log are
    all in ``directory``; its log (stderr, with ``-e``) is read line by line as it comes.

    Use it as a context manager: on exit its sessions and then sshd itself are killed, and
    sshd reaped (its sessions' orphans are reaped by :func:`adopting_descendants`).
    """

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.user = pwd.getpwuid(os.geteuid()).pw_name
        self.host_key = directory / "host_ed25519"
        self.client_key = directory / "client_ed25519"
        self.config = directory / "sshd_config"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._lines: list[str] = []
        self._eof = False
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None

    def __enter__(self) -> Sshd:
        try:
            self._make_keys()
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _make_keys(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for key in (self.host_key, self.client_key):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mimicry-test", "-f", key],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                check=True,
                timeout=START_TIMEOUT_S,
            )
        (self.directory / "authorized_keys").write_text(
            self.client_key.with_name(f"{self.client_key.name}.pub").read_text()
        )

    def _write_config(self, port: int) -> None:
        lines = [
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key}",
            f"PidFile {self.directory / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.directory / 'authorized_keys'}",
            f"AllowUsers {self.user}",
            "AuthenticationMethods publickey",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "StrictModes no",  # the keys live in tmp_path, not in a home directory's ~/.ssh
            "UsePAM no",
            "PrintMotd no",
            "PrintLastLog no",
            "AllowTcpForwarding no",
            "AllowAgentForwarding no",
            "X11Forwarding no",
            "LogLevel INFO",
        ]
        self.config.write_text("\n".join(lines) + "\n")

    def _check_config(self) -> None:
        """``sshd -t``: a skip when this machine lacks the directory sshd needs as root (the ssh
        service makes it at boot), a failure for anything else."""
        checked = subprocess.run(
            [self.binary, "-t", "-f", str(self.config)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
        )
        if checked.returncode == 0:
            return
        message = (checked.stderr + checked.stdout).strip()
        missing = PRIVSEP_MISSING.search(message)
        if missing is not None:
            where = missing.group(1)
            pytest.skip(
                f"sshd runs as root here and needs its privilege separation directory {where}, "
                f"which the ssh service makes at boot: install -d -m 0755 {where}"
            )
        pytest.fail(f"sshd -t rejected the test's config: {message}\n{self.config.read_text()}")

    def start(self) -> None:
        """Start sshd and wait for its log to say it listens (or for it to end)."""
        for _ in range(PORT_ATTEMPTS):
            port = _free_port()
            self._write_config(port)
            self._check_config()
            self._spawn()
            if self._wait_listening(port):
                self.port = port
                return
            log = self.log  # it ended: maybe another process took the port in between
            self.stop()
            if "Address already in use" not in log:
                pytest.fail(f"sshd ended before it listened; its log:\n{log}")
        pytest.fail(f"sshd found no free port in {PORT_ATTEMPTS} attempts")

    def _spawn(self) -> None:
        with self._cond:
            self._lines, self._eof = [], False
        self.proc = subprocess.Popen(
            [self.binary, "-D", "-e", "-f", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read, name="sshd-log", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stderr is not None
        for raw in iter(self.proc.stderr.readline, b""):
            with self._cond:
                self._lines.append(raw.decode(errors="replace").rstrip("\r\n"))  # CRLF
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _wait_listening(self, port: int) -> bool:
        """True once sshd's log says it listens on ``port``; False when it ended first."""
        wanted = f"Server listening on 127.0.0.1 port {port}."
        with self._cond:
            self._cond.wait_for(lambda: self._eof or wanted in self._lines, timeout=START_TIMEOUT_S)
            if wanted in self._lines:
                return True
            if self._eof:
                return False
        pytest.fail(f"sshd did not listen within {START_TIMEOUT_S:g}s; its log:\n{self.log}")

    @property
    def log(self) -> str:
        with self._cond:
            return "\n".join(self._lines)

    def logins(self) -> int:
        """How many sessions sshd let in (one per ssh connection)."""
        accepted = f"Accepted publickey for {self.user} from 127.0.0.1 "
        with self._cond:
            return sum(1 for line in self._lines if line.startswith(accepted))

    def sessions(self) -> list[int]:
        """The live processes of sshd's sessions (its descendants: the workers among them)."""
        return _descendants(self.proc.pid) if self.proc is not None else []

    def tx(self, *, python: str, chdir: Path) -> str:
        """An xdist ``--tx`` spec: a worker started through ``ssh`` to this server, running
        ``python`` in ``chdir`` (xdist rsyncs the ``--rsyncdir`` folders there)."""
        ssh = [
            "-F /dev/null",  # the user's ~/.ssh/config (ControlMaster, ProxyJump) stays out
            f"-p {self.port}",
            f"-i {self.client_key}",
            "-o IdentitiesOnly=yes",  # and so do an agent's keys
            "-o BatchMode=yes",  # never a prompt: a login that fails is an error at once
            "-o StrictHostKeyChecking=no",
            "-o UserKnownHostsFile=/dev/null",
            "-o LogLevel=ERROR",  # no "Permanently added … to the list of known hosts"
            f"{self.user}@127.0.0.1",
        ]
        # execnet splits the ssh part on whitespace: a path with a space cannot be given
        assert not re.search(r"\s", f"{self.client_key}{python}{chdir}"), "a path has a space"
        return f"ssh={' '.join(ssh)}//python={python}//chdir={chdir}"

    def stop(self) -> None:
        """Kill sshd's sessions, then sshd (SIGTERM, SIGKILL if it lingers), reap it, and read
        its log to the end (every process that could write to it is dead by then)."""
        proc = self.proc
        if proc is None:
            return
        for pid in self.sessions():  # snapshot first: once sshd is gone they have no parent
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(STOP_TIMEOUT_S)
        if proc.stderr is not None:
            proc.stderr.close()
        self.proc = None


# -- the test ----------------------------------------------------------------------------------


#: A conftest beside the suite that has each xdist worker say where and how it ran, in a file in
#: its working directory: the machine's directory when the worker came through ssh as asked.
WHERE_WORKERS_RAN = """
import json
import os
import sys
from pathlib import Path

RAN = []

def pytest_runtest_logreport(report):
    if report.when == "call":
        RAN.append(report.nodeid)

def pytest_sessionfinish(session):
    workerinput = getattr(session.config, "workerinput", None)
    if workerinput is not None:
        facts = {
            "cwd": os.getcwd(),
            "python": sys.executable,
            "ssh_connection": os.environ.get("SSH_CONNECTION"),
            "tests": len(RAN),
        }
        Path(f"ran-{workerinput['workerid']}.json").write_text(json.dumps(facts))
"""


def _imitating_fake() -> FakeOllama:
    """A fake whose model imitates the records; two of them serve the same digest."""
    return FakeOllama(FakeModel(reply=pinned_imitations()))


def _args(*hosts: FakeOllama) -> list[str]:
    return [
        *(f"--ollama-host={host.url}" for host in hosts),
        f"--model={hosts[0].model.name}",
        f"--dataset={REAL_ROWS_JSONL}",
        f"--samples={N_SAMPLES}",
    ]


def _asked(host: FakeOllama) -> list[int]:
    """The sample ids the host was asked about, one per request, sorted."""
    return sorted(served.sample_id or 0 for served in host.chat_log())


def _why(result: pytest.RunResult, sshd: Sshd) -> str:
    return (
        f"exit status {result.ret}\n--- stdout\n{result.stdout.str()}\n--- stderr\n"
        f"{result.stderr.str()}\n--- sshd log\n{sshd.log}"
    )


def test_two_ssh_workers_on_two_hosts_report_what_a_run_without_xdist_reports(
    suite: Suite, tmp_path: Path
) -> None:
    binary = _require_openssh()
    root = suite.pytester.path  # the suite and its ini: rsynced whole, as `--rsyncdir .` does
    machines = [tmp_path / "machine-a", tmp_path / "machine-b"]  # outside what is rsynced

    with (
        adopting_descendants(),
        Sshd(binary, tmp_path / "sshd") as sshd,
        _imitating_fake() as one,
        _imitating_fake() as two,
    ):
        assert one.model.digest == two.model.digest
        suite.pytester.makeconftest(WHERE_WORKERS_RAN)
        result = suite.pytester.runpytest_subprocess(
            # absolute: xdist rewrites each path argument relative to an rsync root
            root / "evals",
            "--dist=load",
            *(f"--tx={sshd.tx(python=sys.executable, chdir=m)}" for m in machines),
            f"--rsyncdir={root}",
            *_args(one, two),
            "--report-json=ssh.json",
            timeout=RUN_TIMEOUT_S,
        )
        assert result.ret == ExitStatus.OK, _why(result, sshd)
        # the workers end with the run: xdist closed the gateways, the sessions ended
        left = wait_gone(sshd.sessions(), STOP_TIMEOUT_S)
        assert not left, f"sshd sessions outlived the run: {left}\n{_why(result, sshd)}"
        asked_over_ssh = {host.url: _asked(host) for host in (one, two)}

        one.reset_counters()
        two.reset_counters()
        # its own replies, not those the ssh run left in the cache: the hosts are asked again
        reference = suite.run(
            *_args(one, two), "--report-json=ref.json", "--response-cache-mode=off"
        )
        assert reference.ret == ExitStatus.OK, reference.stdout.str()
        asked_without_xdist = {host.url: _asked(host) for host in (one, two)}

    # the workers came through sshd, one login each, and ran tests in their machine's directory
    # with the venv's python, on the copy of the suite xdist had rsynced there
    assert sshd.logins() == len(machines), sshd.log
    ran = {}
    for gateway, machine in zip(("gw0", "gw1"), machines, strict=True):
        assert (machine / root.name / "evals" / "test_truncates.py").is_file()
        ran[gateway] = json.loads((machine / f"ran-{gateway}.json").read_text())
        assert ran[gateway]["cwd"] == str(machine)
        assert ran[gateway]["python"] == sys.executable
        assert str(ran[gateway]["ssh_connection"]).startswith("127.0.0.1 "), ran
        assert ran[gateway]["tests"] > 0, ran
    assert sum(facts["tests"] for facts in ran.values()) == len(BUILT_IN) * N_SAMPLES

    report = suite.report("ssh.json")
    assert report["run"]["hosts"] == [one.url, two.url]
    assert report["run"]["complete"] is True
    assert len(report["samples"]) == N_SAMPLES
    # the sample at dataset index i went to host i mod 2, and was asked once
    for host, parity in ((one, 0), (two, 1)):
        expected = sorted(int(s["id"]) for s in report["samples"] if s["index"] % 2 == parity)
        assert expected, "the selection has samples of both parities"
        assert asked_over_ssh[host.url] == expected
    # the same verdicts, measures and records as a run without xdist, which asks the same hosts
    assert comparable(report) == comparable(suite.report("ref.json"))
    assert asked_without_xdist == asked_over_ssh
