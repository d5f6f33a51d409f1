"""A pytest plugin for ``python benchmarks/profile_suite.py --memory``: what the main process
still holds at the end of its session, by the line that allocated it.

Loaded through ``PYTEST_PLUGINS=probe_memory`` with ``benchmarks/`` on ``PYTHONPATH``; traces
allocations (``tracemalloc``, one frame) in the main process from ``pytest_configure`` on, and
at the end of the session (after every other plugin's ``pytest_sessionfinish``) writes the top
lines to ``$MIMICRY_BENCH_MEMORY_OUT``. Slow (several times slower): never in a timed run.
"""

from __future__ import annotations

import linecache
import os
import tracemalloc
from typing import Any

import pytest

TOP = 30


def pytest_configure(config: Any) -> None:
    if not hasattr(config, "workerinput"):
        tracemalloc.start(1)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: Any) -> None:
    out = os.environ.get("MIMICRY_BENCH_MEMORY_OUT")
    if not out or not tracemalloc.is_tracing():
        return
    stats = tracemalloc.take_snapshot().statistics("lineno")
    tracemalloc.stop()
    total = sum(s.size for s in stats)
    lines = [f"total traced at the end of the session: {total / 1e6:.1f} MB"]
    for stat in stats[:TOP]:
        frame = stat.traceback[0]
        code = linecache.getline(frame.filename, frame.lineno).strip()[:90]
        where = f"{frame.filename}:{frame.lineno}"
        lines.append(f"{stat.size / 1e6:8.2f} MB {stat.count:8d} blocks  {where}  {code}")
    with open(out, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
