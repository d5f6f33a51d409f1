"""Where the suite's time goes: import costs per process and the hot functions of each scenario.

``python benchmarks/profile_suite.py [--rows 2000] [--keep]`` (from the repository root, in the
project's virtualenv). Not timed against anything: it explains the figures of
``benchmarks/run.py``. Every process of every profiled run gets ``-X importtime`` (xdist workers
through ``--tx popen//python=`` a wrapper that gives each worker its own log), and the main
process runs under cProfile. It prints, per run and process: the time spent importing and the
costliest top-level imports (own packages first), then the functions with the most cumulative
and own time in the main process.

Runs profiled, each against a fake server with no latency:

- ``cached-1``: a cached 1-sample run in one process (start-up alone);
- ``cached-1-n2``: the same with ``-n 2`` (what a worker imports and does);
- ``floor-n2``: pytest's floor for 4 items with ``-n 2`` (what a bare worker imports);
- ``replay``: ``--rows`` synthetic rows replayed from the response cache in one process (the cost
  per item).

``--memory`` adds two runs under ``tracemalloc`` (``benchmarks/probe_memory.py``): the replay and
pytest's floor for as many items, each printing what its main process still holds at the end of
the session, by allocating line.
"""

from __future__ import annotations

import argparse
import io
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from harness import (
    BEHAVIORS_PER_SAMPLE,
    PYTHON,
    REAL_ROWS,
    REPO,
    FakeServer,
    bench_env,
    floor_command,
    floor_dir,
    suite_command,
    write_rows,
)

WRAPPER = """#!/bin/sh
exec {python} -X importtime "$@" 2>"{folder}/worker-$$.importtime"
"""
TOP = 25


def importtime_summary(text: str, top: int = 12) -> tuple[float, list[tuple[float, str]]]:
    """(total seconds importing, the costliest top-level imports) of one ``-X importtime`` log."""
    total_us = 0
    tops: list[tuple[float, str]] = []
    for line in text.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if not match:
            continue
        own, cumulative, indent, name = match.groups()
        total_us += int(own)
        if len(indent) == 1:  # a top-level import: its cumulative time is its whole cost
            tops.append((int(cumulative) / 1e6, name))
    tops.sort(reverse=True)
    return total_us / 1e6, tops[:top]


def print_imports(label: str, text: str) -> None:
    total, tops = importtime_summary(text)
    print(f"  {label}: {total:.2f} s importing; costliest top-level imports:")
    for seconds, name in tops:
        print(f"    {seconds * 1000:7.0f} ms  {name}")


def run_profiled(
    label: str, command: list[str], cwd: Path, env: dict[str, str], folder: Path, xdist: bool
) -> None:
    """Run ``command`` (``python -m pytest ...``) with importtime everywhere and cProfile in the
    main process; print what they found."""
    folder.mkdir(parents=True)
    prof = folder / "main.prof"
    assert command[:3] == [PYTHON, "-m", "pytest"]
    args = list(command[3:])
    if xdist:
        wrapper = folder / "python-wrapper.sh"
        wrapper.write_text(WRAPPER.format(python=PYTHON, folder=folder))
        wrapper.chmod(0o755)
        n = int(args[args.index("-n") + 1])
        at = args.index("-n")
        args[at : at + 2] = ["-d", "--tx", f"{n}*popen//python={wrapper}"]
    profiled = [PYTHON, "-X", "importtime", "-m", "cProfile", "-o", str(prof), "-m", "pytest"]
    print(f"\n== {label}\n  $ {' '.join([*profiled, *args])}", flush=True)
    result = subprocess.run(
        [*profiled, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    (folder / "stdout.log").write_text(result.stdout)
    print(f"  exit {result.returncode}: {(result.stdout.strip().splitlines() or [''])[-1]}")
    print_imports("main process", result.stderr)
    for log in sorted(folder.glob("worker-*.importtime")):
        print_imports(f"xdist worker (pid {log.stem.split('-')[1]})", log.read_text())
    if prof.exists():
        print_stats(prof)


def trace_memory(label: str, command: list[str], cwd: Path, env: dict[str, str], out: Path) -> None:
    """Run ``command`` with :mod:`probe_memory` and print what it found."""
    traced_env = {
        **env,
        "PYTEST_PLUGINS": "probe_memory",
        "PYTHONPATH": str(Path(__file__).resolve().parent),
        "MIMICRY_BENCH_MEMORY_OUT": str(out),
    }
    print(f"\n== memory: {label} (tracemalloc)\n  $ {' '.join(command)}", flush=True)
    subprocess.run(command, cwd=cwd, env=traced_env, capture_output=True, check=False)
    text = out.read_text() if out.exists() else "(nothing written)\n"
    print("".join(f"  {line}\n" for line in text.splitlines()), end="")


def print_stats(prof: Path) -> None:
    stats = pstats.Stats(str(prof))
    total = stats.total_tt  # type: ignore[attr-defined]
    print(f"  main process under cProfile: {total:.2f} s of CPU in profiled code")
    for key, title in (("cumulative", "cumulative"), ("tottime", "own")):
        out = io.StringIO()
        pstats.Stats(str(prof), stream=out).sort_stats(key).print_stats(TOP)
        lines = [
            line
            for line in out.getvalue().splitlines()
            if re.match(r"\s+\d", line) and "{built-in method builtins.exec}" not in line
        ]
        print(f"  top {TOP} by {title} time (ncalls tottime percall cumtime percall where):")
        for line in lines[:TOP]:
            print(f"    {_shorten(line)}")
    by_package: dict[str, float] = defaultdict(float)
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        by_package[_package(filename)] += tottime
    print("  own time by package:")
    for name, seconds in sorted(by_package.items(), key=lambda kv: -kv[1])[:12]:
        print(f"    {seconds:6.2f} s  {name}")


def _shorten(line: str) -> str:
    line = re.sub(r"/\S*/site-packages/", "", line)
    return line.replace(str(REPO) + "/src/", "").replace(str(REPO) + "/", "")


def _package(filename: str) -> str:
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins"
    match = re.search(r"site-packages/([^/]+)", filename)
    if match:
        return match.group(1)
    match = re.search(r"/src/(mimicry/[^/]+)", filename)
    if match:
        return match.group(1).removesuffix(".py")
    match = re.search(r"/lib/python3\.\d+/([^/]+)", filename)
    if match:
        return f"stdlib {match.group(1).removesuffix('.py')}"
    return filename


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="replay: synthetic rows")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--memory", action="store_true", help="also trace memory (slow)")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="mimicry-profile-"))
    env = bench_env(tmp)
    try:
        one = tmp / "one.jsonl"
        one.write_text(REAL_ROWS.read_text().splitlines()[0] + "\n")
        rows = write_rows(tmp / "replay.jsonl", args.rows, seed=0)
        cache = tmp / "cache"
        floor = floor_dir(tmp, 1)
        with FakeServer(latency_ms=0, slots=8, log=tmp / "server.log") as server:
            for dataset, n in ((one, 1), (rows, args.rows)):
                # untimed: the row store, the replies, the bytecode of every module
                fill = suite_command(dataset, server.url, cache, "use", "-n", "2")
                subprocess.run(fill, cwd=REPO, env=env, capture_output=True, check=False)
                print(f"  filled the response cache: {n} samples")
            subprocess.run(
                floor_command(tmp / "floor-cache", "-n", "2"),
                cwd=floor,
                env=env,
                capture_output=True,
                check=False,
            )
            runs = [
                ("cached-1", suite_command(one, server.url, cache, "use", "-p", "no:xdist"), REPO),
                ("cached-1-n2", suite_command(one, server.url, cache, "use", "-n", "2"), REPO),
                ("floor-n2", floor_command(tmp / "floor-cache", "-n", "2"), floor),
                (
                    f"replay-{args.rows} ({args.rows * BEHAVIORS_PER_SAMPLE} items)",
                    suite_command(rows, server.url, cache, "replay", "-p", "no:xdist"),
                    REPO,
                ),
            ]
            for label, command, cwd in runs:
                xdist = "-n" in command
                folder = tmp / re.sub(r"[^A-Za-z0-9]+", "-", label)
                run_profiled(label, command, cwd, env, folder, xdist)
            if args.memory:
                big_floor = floor_dir(tmp, args.rows)
                traced = [
                    (
                        "replay",
                        suite_command(rows, server.url, cache, "replay", "-p", "no:xdist"),
                        REPO,
                    ),
                    ("floor", floor_command(tmp / "floor-cache", "-p", "no:xdist"), big_floor),
                ]
                for label, command, cwd in traced:
                    trace_memory(label, command, cwd, env, tmp / f"memory-{label}.txt")
    finally:
        if args.keep:
            print(f"\nkept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
