"""What every benchmark of ``benchmarks/run.py`` shares: the machine, timed processes, the fake
Ollama server, the hermetic environment, the suite's and pytest's floor's commands.

Not a test module and not part of the package: imported by ``benchmarks/run.py`` (which runs with
``benchmarks/`` first on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import re
import select
import shlex
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
TOOLS_DIR = BENCH_DIR / ".tools"
#: The Python the measured commands run: a user's install (``pip install -e '.[embedded]'``,
#: made by install_tools.sh in .tools/user-venv) when there is one, else this one. The project's
#: own virtualenv also holds the test tools, and selenium's trio, which httpcore imports when it
#: is installed, adds 0.17 s to every process that talks HTTP: no user's install pays that.
USER_PYTHON = TOOLS_DIR / "user-venv" / "bin" / "python"
PYTHON = os.environ.get("MIMICRY_BENCH_PYTHON") or (
    str(USER_PYTHON) if USER_PYTHON.exists() else sys.executable
)
#: The 32 real rows: ../shared's copy, else the package's copy of the same file.
REAL_ROWS = REPO.parent / "shared" / "data" / "lmsys-arena-sample" / "train-first32.jsonl"
if not REAL_ROWS.is_file():
    REAL_ROWS = REPO / "src" / "mimicry" / "data" / "lmsys-arena-sample" / "train-first32.jsonl"
FAKE_MODEL = "fake-model:1b"
#: The context length the fake server reports for its model (its default).
FAKE_CONTEXT_LENGTH = 32768
FULL_ROWS = 57_477
#: The four behaviors of the README's table: the suite's "four checks per reply".
SUITE_TARGETS = (
    "evals/test_copies_braces.py",
    "evals/test_preserves_keys.py",
    "evals/test_rewrites_prompt.py",
    "evals/test_truncates.py",
)
BEHAVIORS_PER_SAMPLE = len(SUITE_TARGETS)
RECORD_TARGET = SUITE_TARGETS[0]
#: The distributions whose pytest plugins make up "pytest" in the benchmarks; the others in the
#: virtualenv (the project's own test tools: anyio, hypothesis, pytest-httpserver) are turned off
#: with ``-p no:NAME`` in the suite's runs and the floor's alike.
PRODUCT_PLUGIN_DISTS = frozenset({"pytest-xdist", "mimicry-evals"})
#: The project's own plugins (entry points), off in pytest's floor.
PROJECT_PLUGINS = ("mimicry", "mimicry-fixtures")
RSS_POLL_S = 2.0
# -- machine and processes -------------------------------------------------------------------


def source_state() -> str:
    """A fingerprint of the code measured: the SHA-256 of every file under ``src/`` (others
    edit the same working tree, so a run can measure two versions of it)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((REPO / "src").rglob("*.py")):
        with contextlib.suppress(OSError):
            digest.update(str(path.relative_to(REPO)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def git_head() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "status", "--short", "src"], cwd=REPO, capture_output=True, text=True
    )
    changed = len(dirty.stdout.splitlines())
    return f"{result.stdout.strip()} (+{changed} changed or new files under src/)"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    load = ""
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    versions = {}
    for name in ("mimicry-evals", "pytest", "pytest-xdist", "ollama", "datasets", "xllamacpp"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "cpu_model": cpu_model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": load,
        "versions": versions,
        "git_head": git_head(),
        "src_fingerprint": source_state(),
    }


@dataclass
class Measured:
    """One command, timed from start to exit, with the peak RSS of its largest process."""

    label: str
    command: list[str]
    wall_s: float
    peak_rss_mb: float
    exit_code: int
    summary: str
    log: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "command": shlex.join(self.command),
            "wall_s": round(self.wall_s, 3),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "exit_code": self.exit_code,
            "summary": self.summary,
            **self.extra,
        }


def _process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def _vm_hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def measure(
    label: str, command: list[str], *, cwd: Path, env: dict[str, str], log: Path
) -> Measured:
    """Run ``command`` to completion; wall time and the largest process's peak RSS."""
    print(f"  $ {shlex.join(command)}", flush=True)
    source = source_state()
    peak_kb = 0
    done = threading.Event()
    started = time.perf_counter()
    rusage_file = log.with_suffix(".rusage.json")
    launched = [PYTHON, str(BENCH_DIR / "launch.py"), str(rusage_file), *command]
    with log.open("wb") as out:
        process = subprocess.Popen(launched, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)

    others: set[str] = set()
    largest = ""

    def poll() -> None:
        # wait4's rusage misses descendants that were never reaped; VmHWM is a high-water mark,
        # so sampling it now and then still sees each process's peak (the launcher's own ~10 MB
        # is in the tree too, far below anything measured)
        nonlocal peak_kb, largest
        while not done.wait(RSS_POLL_S):
            with contextlib.suppress(Exception):
                for pid in _process_tree(process.pid):
                    hwm = _vm_hwm_kb(pid)
                    if hwm > peak_kb:
                        peak_kb, largest = hwm, _role(pid)
                others.update(heavy_processes())

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        process.wait()
    except BaseException:
        # interrupted (Ctrl-C, or SIGTERM made KeyboardInterrupt by run.py): end the command's
        # launcher, which ends the command, and go on unwinding (the fake servers stop too)
        done.set()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise
    wall = time.perf_counter() - started
    done.set()
    poller.join()
    launched_rss_kb = json.loads(rusage_file.read_text())["maxrss_kb"]
    text = log.read_text(errors="replace")
    summary = _pytest_summary(text)
    rss_mb = max(launched_rss_kb, peak_kb) / 1024
    which = f" ({largest})" if largest and peak_kb >= launched_rss_kb else ""
    print(
        f"    {wall:.2f} s, peak RSS {rss_mb:.0f} MB{which}, exit {process.returncode}: {summary}"
    )
    if others:
        print(
            f"    warning: {len(others)} other pytest process(es) ran meanwhile: timing distorted"
        )
    if process.returncode != 0:
        tail = "\n".join(text.strip().splitlines()[-15:])
        print(f"    the command failed; the end of its output ({log}):\n{tail}")
    measured = Measured(label, command, wall, rss_mb, process.returncode, summary, str(log))
    measured.extra["src_fingerprint"] = source
    measured.extra["load_average_after"] = _load()
    if largest:
        measured.extra["largest_process"] = largest
    if others:
        measured.extra["other_pytest_processes_meanwhile"] = sorted(others)
    return measured


def _load() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return ""


def _role(pid: int) -> str:
    """What a process of a measured tree is: an xdist worker, the main process, a server."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [w.decode(errors="replace") for w in cmdline if w]
    text = " ".join(words)
    if "exec(eval(sys.stdin.readline()))" in text:  # how execnet starts an xdist worker
        return "xdist worker"
    if "mimicry.serve" in text:
        return "embedded server"
    return "main process"


def _pytest_summary(text: str) -> str:
    for line in reversed(text.strip().splitlines()):
        match = re.match(r"^=+ (.+ in [\d.]+s.*?) =+$", line.strip())
        if match:
            return match.group(1)
    return (text.strip().splitlines() or [""])[-1][:200]


class FakeServer:
    """The package's fake Ollama server (``python -m mimicry.testing.fake_ollama``) as a child
    process on a free loopback port: a fixed latency per reply, ``slots`` replies at once, and
    cheap deterministic imitations of the records (``--reply mixed``)."""

    def __init__(self, *, latency_ms: float, slots: int, log: Path) -> None:
        self.command = [
            PYTHON,
            "-m",
            "mimicry.testing.fake_ollama",
            "--port",
            "0",
            "--ready-file",
            str(log.with_suffix(".url")),
            "--latency-ms",
            str(latency_ms),
            "--slots",
            str(slots),
            "--model",
            FAKE_MODEL,
            "--reply",
            "mixed",
        ]
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> FakeServer:
        print(f"  fake server: {shlex.join(self.command)}", flush=True)
        with self.log.open("wb") as err:
            self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=err)
        assert self.process.stdout is not None
        # its first line of output is its URL, printed once it accepts connections
        ready, _, _ = select.select([self.process.stdout], [], [], 30)
        line = self.process.stdout.readline().decode().strip() if ready else ""
        if not line.startswith("http://"):
            self.__exit__()
            raise RuntimeError(f"the fake server did not start: {self.log.read_text()[-2000:]}")
        self.url = line
        return self

    def stats(self) -> dict[str, Any]:
        """What it served: ``replies``, ``max_in_flight``, ``window_s`` (first request to last
        reply, in the server's clock), ``requests`` per path."""
        data: dict[str, Any] = httpx.get(f"{self.url}/_fake/stats", timeout=10).json()
        return data

    def reset(self) -> None:
        httpx.post(f"{self.url}/_fake/reset", timeout=10)

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        try:
            if self.process.poll() is None:
                self.process.terminate()  # SIGTERM: it stops cleanly, exit status 0
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
        finally:
            self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()


def bench_env(tmp: Path) -> dict[str, str]:
    """The environment of every measured command: hermetic caches, no hub, no stray host."""
    env = dict(os.environ)
    env.pop("OLLAMA_HOST", None)
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_PLUGINS", None)
    # Bytecode is cached as on a user's machine (this machine sets PYTHONDONTWRITEBYTECODE, which
    # would make every process recompile and assertion-rewrite the suite: about 1 s), but in the
    # temporary folder, not in the checkout; warm_up() fills it before anything is timed.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        HF_DATASETS_CACHE=str(tmp / "hf-datasets-cache"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        PYTHONPYCACHEPREFIX=str(tmp / "pycache"),
        # the row stores (mimicry.dataset.default_rows_dir) and other tools' caches
        XDG_CACHE_HOME=str(tmp / "xdg-cache"),
        XDG_DATA_HOME=str(tmp / "xdg-data"),
        XDG_CONFIG_HOME=str(tmp / "xdg-config"),
    )
    return env


def warm_up(tmp: Path) -> None:
    """One untimed run of each kind of process, so that every timed one finds warm caches."""
    print("\n== warm-up (not timed)", flush=True)
    dataset = write_rows(tmp / "warm-up.jsonl", 20, seed=99)
    env = bench_env(tmp)
    floor = floor_dir(tmp, 20)
    with FakeServer(latency_ms=0, slots=8, log=tmp / "warm-up-server.log") as server:
        bare = [PYTHON, str(BENCH_DIR / "bare_loop.py"), str(dataset), server.url, FAKE_MODEL]
        measure("warm-up", bare, cwd=REPO, env=env, log=tmp / "warm-up-bare.log")
        for xdist in (["-p", "no:xdist"], ["-n", "2"]):
            suite = suite_command(dataset, server.url, tmp / "warm-up-cache", "off", *xdist)
            measure("warm-up", suite, cwd=REPO, env=env, log=tmp / "warm-up-suite.log")
            floor_run = floor_command(tmp / "warm-up-floor-cache", *xdist)
            measure("warm-up", floor_run, cwd=floor, env=env, log=tmp / "warm-up-floor.log")


def suite_options() -> str:
    """``pytest --help`` of this checkout (to see which options the suite has)."""
    result = subprocess.run(
        [PYTHON, "-m", "pytest", "--help"], cwd=REPO, capture_output=True, text=True, check=False
    )
    return result.stdout


def has_concurrency() -> bool:
    return "--concurrency" in suite_options()


def other_plugins_off() -> list[str]:
    """``-p no:NAME`` for every pytest plugin installed beside pytest-xdist and the project's
    (the project's test tools): the suite and the floor run on the same plugins."""
    off: list[str] = []
    for entry in importlib.metadata.entry_points(group="pytest11"):
        dist = getattr(entry, "dist", None)
        name = dist.metadata["Name"] if dist is not None else ""
        if name.lower() not in PRODUCT_PLUGIN_DISTS:
            off += ["-p", f"no:{entry.name}"]
    return off


def suite_command(
    dataset: Path,
    url: str,
    cache_dir: Path,
    mode: str,
    *extra: str,
    targets: Sequence[str] = SUITE_TARGETS,
) -> list[str]:
    """``pytest`` on the suite's four behaviors against the fake server; pytest's cache and the
    replies in ``cache_dir``."""
    return [
        PYTHON,
        "-m",
        "pytest",
        *targets,
        "--dataset",
        str(dataset),
        "--samples",
        "all",
        "--backend",
        "ollama",
        "--ollama-host",
        url,
        "--model",
        FAKE_MODEL,
        "--response-cache-mode",
        mode,
        "-o",
        f"cache_dir={cache_dir}",
        *other_plugins_off(),
        *extra,
    ]


FLOOR_TEST = '''"""pytest's floor: as many trivial parametrized items as the suite has."""

import pytest

N = {n}


@pytest.mark.parametrize("i", range(N))
def test_copies_braces(i):
    assert True


@pytest.mark.parametrize("i", range(N))
def test_preserves_keys(i):
    assert True


@pytest.mark.parametrize("i", range(N))
def test_rewrites_prompt(i):
    assert True


@pytest.mark.parametrize("i", range(N))
def test_truncates(i):
    assert True
'''


def floor_dir(tmp: Path, rows: int) -> Path:
    """A folder with pytest's floor for ``rows`` samples: rows x 4 ``assert True`` items."""
    folder = tmp / f"floor-{rows}"
    if not folder.exists():
        folder.mkdir(parents=True)
        (folder / "pytest.ini").write_text("[pytest]\n")
        (folder / "test_floor.py").write_text(FLOOR_TEST.format(n=rows))
    return folder


def floor_command(cache_dir: Path, *extra: str) -> list[str]:
    """pytest on the floor's file (run in :func:`floor_dir`), with pytest-xdist's plugin but
    neither the project's nor the other installed ones."""
    project_off = [arg for name in PROJECT_PLUGINS for arg in ("-p", f"no:{name}")]
    return [
        PYTHON,
        "-m",
        "pytest",
        "test_floor.py",
        "-o",
        f"cache_dir={cache_dir}",
        *project_off,
        *other_plugins_off(),
        *extra,
    ]


# -- interleaved runs ------------------------------------------------------------------------


@dataclass
class Run:
    """One command of an interleaved set, run ``repeat`` times."""

    label: str
    command: list[str]
    cwd: Path
    env: dict[str, str]
    server: FakeServer | None = None
    #: a fresh folder per repetition replaces this placeholder in the command (e.g. a cache dir)
    fresh: str | None = None


def run_interleaved(
    runs: Sequence[Run], repeat: int, tmp: Path, tag: str
) -> dict[str, list[Measured]]:
    """Run every command ``repeat`` times, one round after another, each round in another
    order (rotated), so that a slow moment of the machine falls on all of them alike."""
    measured: dict[str, list[Measured]] = {run.label: [] for run in runs}
    for rep in range(repeat):
        shift = rep % max(1, len(runs))
        order = [*runs[shift:], *runs[:shift]]
        for number, run in enumerate(order):
            slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{tag}-{run.label}-{rep}").strip("-")
            command = run.command
            if run.fresh is not None:
                folder = tmp / f"fresh-{slug}"
                command = [part.replace(run.fresh, str(folder)) for part in command]
            if run.server is not None:
                run.server.reset()
            print(f"  [{tag} round {rep + 1}/{repeat}, {number + 1}/{len(order)}] {run.label}")
            m = measure(run.label, command, cwd=run.cwd, env=run.env, log=tmp / f"{slug}.log")
            if run.server is not None:
                m.extra["server"] = run.server.stats()
            measured[run.label].append(m)
    versions = {m.extra.get("src_fingerprint") for ms in measured.values() for m in ms}
    if len(versions) > 1:
        print(f"  warning: src/ changed during these runs (fingerprints {sorted(versions)})")
    return measured


def source_note(*groups: Sequence[Measured]) -> str:
    """A note when the code under src/ changed between the runs of a figure."""
    versions = {m.extra.get("src_fingerprint") for runs in groups for m in runs}
    if len(versions) <= 1:
        return ""
    return f"src/ changed between these runs ({len(versions)} versions)"


def median_wall(runs: Sequence[Measured]) -> float:
    return statistics.median(m.wall_s for m in runs)


def median_rss(runs: Sequence[Measured]) -> float:
    return statistics.median(m.peak_rss_mb for m in runs)


@dataclass
class Goal:
    """One goal of the issue, measured: a ratio against its limit."""

    group: str
    goal: str
    figures: str
    ratio: float
    limit: float
    op: str = "<="  # "<=" or ">=" or "<"
    note: str = ""

    @property
    def met(self) -> bool:
        if self.ratio != self.ratio:  # NaN: not measured
            return False
        if self.op == "<":
            return self.ratio < self.limit
        if self.op == ">=":
            return self.ratio >= self.limit
        return self.ratio <= self.limit

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "goal": self.goal,
            "figures": self.figures,
            "ratio": round(self.ratio, 4),
            "limit": f"{self.op} {self.limit:g}",
            "met": self.met,
            "note": self.note,
        }


def any_failed(runs: Sequence[Measured]) -> str:
    """A note when a run exited non-zero (its figure then measures a failure) or measured
    another version of src/ than the others."""
    bad = sorted({m.exit_code for m in runs if m.exit_code != 0})
    notes = [f"exit status {bad} in some runs: see their logs"] if bad else []
    changed = source_note(runs)
    return "; ".join([*notes, changed] if changed else notes)


def write_rows(path: Path, n_rows: int, seed: int) -> Path:
    from mimicry.synthetic import write_dataset

    started = time.perf_counter()
    write_dataset(path, n_rows=n_rows, seed=seed)
    size, took = path.stat().st_size / 1e6, time.perf_counter() - started
    print(f"  dataset: {n_rows} synthetic rows, {size:.0f} MB, written in {took:.1f} s")
    return path


def heavy_processes() -> list[str]:
    """Other pytest runs on the machine (they would distort every timing)."""
    mine = set(_process_tree(os.getpid()))
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        with contextlib.suppress(OSError):
            cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            if "pytest" in cmd and "benchmarks/run.py" not in cmd:
                found.append(f"{entry.name}: {cmd[:120]}")
    return found


def print_table(
    rows: Sequence[tuple[str, ...]],
    header: tuple[str, ...] = ("benchmark", "figure", "value", "goal", "met"),
) -> None:
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    print(line)
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print(line)
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    print(line)
