"""A pytest plugin for ``python benchmarks/run.py modules``: what each process of a run loaded.

Loaded in every process of the run (the controller and each xdist worker) through
``PYTEST_PLUGINS=probe_modules`` with ``benchmarks/`` on ``PYTHONPATH``. At the end of each
process it writes ``<MIMICRY_BENCH_PROBE_DIR>/<role>-<pid>.json``: its role (``controller`` or
the xdist worker id), the heavy modules it holds, how many modules it holds, and the seconds
since the process started at which it reached each phase (configure, session start, collection
done, first and last test, session finish). Not for timed runs: it is only a few hooks, but it
is not part of the suite.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

HEAVY = ("datasets", "pyarrow", "pandas", "scipy", "matplotlib", "numpy")
OUT_ENV = "MIMICRY_BENCH_PROBE_DIR"

_marks: dict[str, float] = {}


def _since_start() -> float:
    """Seconds since this process started (its start time in /proc, in clock ticks)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of stat(5), counted after "pid (comm)"
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return round(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 3)
    except (OSError, ValueError, IndexError):
        return float("nan")


def _mark(name: str) -> None:
    _marks.setdefault(name, _since_start())


def pytest_configure(config: Any) -> None:
    _mark("configure")


def pytest_sessionstart(session: Any) -> None:
    _mark("sessionstart")


def pytest_collection_finish(session: Any) -> None:
    _mark("collected")


def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
    _mark("first_test")


def pytest_runtest_logfinish(nodeid: str, location: Any) -> None:
    _marks["last_test"] = _since_start()


def pytest_sessionfinish(session: Any) -> None:
    _mark("sessionfinish")


def pytest_unconfigure(config: Any) -> None:
    folder = os.environ.get(OUT_ENV)
    if not folder:
        return
    workerinput = getattr(config, "workerinput", None)
    role = str(workerinput["workerid"]) if workerinput is not None else "controller"
    _mark("unconfigure")
    data = {
        "role": role,
        "pid": os.getpid(),
        "heavy": [name for name in HEAVY if name in sys.modules],
        "n_modules": len(sys.modules),
        "marks": dict(sorted(_marks.items(), key=lambda kv: kv[1])),
        "written_at": time.time(),
    }
    Path(folder, f"{role}-{os.getpid()}.json").write_text(json.dumps(data))
