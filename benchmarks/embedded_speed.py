"""The embedded server against llama.cpp driven directly, side by side, on the same prompts.

``python benchmarks/embedded_speed.py [--rows 32] [--concurrency 1,2,4,8] [--json PATH]``

Both paths load the same GGUF (the bundled SmolLM2-135M) with the same threads, slots and
context, and get the same prompts (``str(row)`` of the real rows, one user message) with the
same sampling (the suite's: temperature 0, seed 42, Ollama's other defaults) and
``num_predict`` 256:

- **direct**: ``xllamacpp.Server`` in this process, ``handle_chat_completions`` without
  streaming (llama.cpp renders the chat template and tokenizes), no HTTP at all;
- **embedded**: ``POST /api/chat`` with ``"stream": false`` to the embedded server
  (``mimicry.embedded.EmbeddedServer``, a child process), as the suite's client sends it.

The threads are the embedded server's own default (one per usable CPU that other processes
leave free when it starts, read back from its ``/api/version``) unless ``--threads`` is given;
the direct path gets the same number. Requests alternate (direct first for even rows, embedded
first for odd ones), so a shared machine slows both alike.

Single stream: prompt and generation tokens/s from llama.cpp's own timings on each path (the
whole prompt's token count over its prompt time, both paths reuse the cached prefix alike),
and the wall time of every request as its caller saw it. The goal: the embedded path reaches
at least 90% of the direct path's prompt rate, generation rate and wall-time throughput. Each
ratio is shown over the totals and as the median of per-row ratios (robust to a burst of load
on the shared machine).

Concurrency (``--concurrency``): for each K, both paths with K requests in flight (K client
threads) over ``--sweep-rows`` rows, K slots of ``--ctx-size`` tokens each (``--slots`` changes
the embedded server's slots). Throughput is requests/min and tokens/s over the wall time.

A benchmark, not a test: it prints figures and never fails on a missed goal. It exits 0 with a
note when the ``[embedded]`` extra or the bundled model is not installed, 1 when it could not run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mimicry.embedded import EmbeddedServer, EmbeddedSpec, embedded_available
from mimicry.embedded.engine import SamplingOptions
from mimicry.embedded.model import bundled_gguf_path

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_DATASET = ROOT.parent / "shared" / "data" / "lmsys-arena-sample" / "train-first32.jsonl"
GOAL = 0.90
SEED = 42
TEMPERATURE = 0.0


@dataclass(frozen=True)
class Measured:
    """One request as one path served it."""

    prompt_tokens: int
    prompt_ms: float
    gen_tokens: int
    gen_ms: float
    wall_s: float


@dataclass(frozen=True)
class Rates:
    """Totals over many requests of one path."""

    requests: int
    prompt_tokens: int
    gen_tokens: int
    prompt_tps: float
    gen_tps: float
    wall_s: float
    engine_s: float

    @classmethod
    def of(cls, items: Sequence[Measured]) -> Rates:
        prompt_ms = sum(m.prompt_ms for m in items)
        gen_ms = sum(m.gen_ms for m in items)
        return cls(
            requests=len(items),
            prompt_tokens=sum(m.prompt_tokens for m in items),
            gen_tokens=sum(m.gen_tokens for m in items),
            prompt_tps=sum(m.prompt_tokens for m in items) / prompt_ms * 1000 if prompt_ms else 0,
            gen_tps=sum(m.gen_tokens for m in items) / gen_ms * 1000 if gen_ms else 0,
            wall_s=sum(m.wall_s for m in items),
            engine_s=(prompt_ms + gen_ms) / 1000,
        )


def load_prompts(path: Path, rows: int) -> list[str]:
    """``str(row)`` of the first ``rows`` rows of a JSON-lines file: the suite's prompts."""
    with open(path, encoding="utf-8") as fh:
        prompts = [str(json.loads(line)) for line in fh if line.strip()]
    return prompts[:rows]


def _sampling(num_predict: int) -> dict[str, Any]:
    # The fields the embedded server sends llama.cpp for the suite's options.
    fields = SamplingOptions(temperature=TEMPERATURE, seed=SEED).to_llama()
    return {**fields, "n_predict": num_predict, "cache_prompt": True}


class Direct:
    """llama.cpp through xllamacpp in this process, no HTTP."""

    def __init__(self, gguf: Path, *, threads: int, parallel: int, ctx_size: int) -> None:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(gguf)
        params.n_ctx = ctx_size * parallel
        params.n_parallel = parallel
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.cache_ram_mib = 0
        params.verbosity = 1
        params.ui = False
        self._server: Any = xllamacpp.Server(params)

    def chat(self, prompt: str, num_predict: int) -> Measured:
        request = {"messages": [{"role": "user", "content": prompt}], **_sampling(num_predict)}
        started = time.perf_counter()
        reply = self._server.handle_chat_completions(request)
        wall = time.perf_counter() - started
        timings = reply.get("timings")
        if not isinstance(timings, dict):
            raise RuntimeError(f"xllamacpp answered without timings: {str(reply)[:300]}")
        return Measured(
            prompt_tokens=int(reply["usage"]["prompt_tokens"]),
            prompt_ms=float(timings["prompt_ms"]),
            gen_tokens=int(timings["predicted_n"]),
            gen_ms=float(timings["predicted_ms"]),
            wall_s=wall,
        )

    def close(self) -> None:
        del self._server
        gc.collect()


class Embedded:
    """The embedded server in its child process, asked as the suite asks it."""

    def __init__(self, spec: EmbeddedSpec, ctx_size: int) -> None:
        import httpx

        self._server = EmbeddedServer(spec)
        self._server.start()
        self._ctx_size = ctx_size
        self._http = httpx.Client(base_url=self._server.url, timeout=600, trust_env=False)
        self.settings: Mapping[str, int] = self._http.get("/api/version").json()["engine"]

    @property
    def pid(self) -> int:
        return self._server.pid

    def chat(self, prompt: str, num_predict: int) -> Measured:
        body = {
            "model": self._server.model_name,
            "messages": [{"role": "user", "content": prompt}],
            "stream": False,
            "options": {
                "temperature": TEMPERATURE,
                "seed": SEED,
                "num_predict": num_predict,
                "num_ctx": self._ctx_size,
            },
        }
        started = time.perf_counter()
        response = self._http.post("/api/chat", json=body)
        wall = time.perf_counter() - started
        reply = response.json()
        if response.status_code != 200:
            raise RuntimeError(f"the embedded server answered {response.status_code}: {reply}")
        return Measured(
            prompt_tokens=int(reply["prompt_eval_count"]),
            prompt_ms=reply["prompt_eval_duration"] / 1e6,
            gen_tokens=int(reply["eval_count"]),
            gen_ms=reply["eval_duration"] / 1e6,
            wall_s=wall,
        )

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def close(self) -> None:
        self._http.close()
        self._server.stop()


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def _median_ratio(pairs: Sequence[tuple[float, float]]) -> float:
    ratios = [a / b for a, b in pairs if b]
    return statistics.median(ratios) if ratios else float("nan")


def single_stream(
    prompts: Sequence[str],
    *,
    num_predict: int,
    ctx_size: int,
    threads: int | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Both paths, one request at a time, alternating; the figures and the goal's verdict."""
    embedded = Embedded(EmbeddedSpec(parallel=1, ctx_size=ctx_size, threads=threads), ctx_size)
    try:
        chosen = int(embedded.settings["threads"])
        log(f"threads: {chosen} (from the embedded server: {dict(embedded.settings)})")
        direct = Direct(bundled_gguf_path(), threads=chosen, parallel=1, ctx_size=ctx_size)
        try:
            for path in (direct, embedded):  # warm-up, not counted
                path.chat("Hi", 4)
            results: dict[str, list[Measured]] = {"direct": [], "embedded": []}
            for index, prompt in enumerate(prompts):
                order: list[tuple[str, Direct | Embedded]] = [
                    ("direct", direct),
                    ("embedded", embedded),
                ]
                if index % 2:
                    order.reverse()
                for name, path in order:
                    results[name].append(path.chat(prompt, num_predict))
                d, e = results["direct"][-1], results["embedded"][-1]
                log(
                    f"row {index:2d}: prompt {d.prompt_tokens:5d} tokens, generated "
                    f"{d.gen_tokens:3d}/{e.gen_tokens:3d}; prompt tok/s "
                    f"{d.prompt_tokens / d.prompt_ms * 1000:6.1f}/"
                    f"{e.prompt_tokens / e.prompt_ms * 1000:6.1f}, gen tok/s "
                    f"{d.gen_tokens / max(d.gen_ms, 1e-9) * 1000:5.1f}/"
                    f"{e.gen_tokens / max(e.gen_ms, 1e-9) * 1000:5.1f}; wall "
                    f"{d.wall_s:6.2f}/{e.wall_s:6.2f} s (direct/embedded)"
                )
        finally:
            direct.close()
    finally:
        embedded.close()

    d_items, e_items = results["direct"], results["embedded"]
    mismatched = [
        i for i, (d, e) in enumerate(zip(d_items, e_items, strict=True))
        if d.prompt_tokens != e.prompt_tokens
    ]  # fmt: skip
    direct_rates, embedded_rates = Rates.of(d_items), Rates.of(e_items)
    pairs = list(zip(d_items, e_items, strict=True))
    ratios = {
        "prompt": _ratio(embedded_rates.prompt_tps, direct_rates.prompt_tps),
        "generation": _ratio(embedded_rates.gen_tps, direct_rates.gen_tps),
        "wall": _ratio(direct_rates.wall_s, embedded_rates.wall_s),
    }
    median_ratios = {
        "prompt": _median_ratio(
            [(e.prompt_tokens / e.prompt_ms, d.prompt_tokens / d.prompt_ms) for d, e in pairs]
        ),
        "generation": _median_ratio(
            [(e.gen_tokens / e.gen_ms, d.gen_tokens / d.gen_ms) for d, e in pairs if e.gen_ms]
        ),
        "wall": _median_ratio([(d.wall_s, e.wall_s) for d, e in pairs]),
    }
    return {
        "threads": chosen,
        "rows": len(prompts),
        "num_predict": num_predict,
        "ctx_size": ctx_size,
        "direct": asdict(direct_rates),
        "embedded": asdict(embedded_rates),
        "ratios": ratios,
        "median_ratios": median_ratios,
        "goal": GOAL,
        "goal_met": all(r >= GOAL for r in ratios.values()),
        "prompt_token_mismatches": mismatched,
    }


def _in_flight(
    chat: Callable[[str, int], Measured], prompts: Sequence[str], k: int, num_predict: int
) -> dict[str, float]:
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=k) as pool:
        done = list(pool.map(lambda p: chat(p, num_predict), prompts))
    wall = time.perf_counter() - started
    return {
        "wall_s": wall,
        "requests_per_min": len(done) / wall * 60,
        "prompt_tps": sum(m.prompt_tokens for m in done) / wall,
        "gen_tps": sum(m.gen_tokens for m in done) / wall,
    }


def concurrency(
    prompts: Sequence[str],
    levels: Sequence[int],
    *,
    num_predict: int,
    ctx_size: int,
    threads: int | None,
    slots: int | None,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Throughput with K requests in flight, for each K, on both paths (alternating)."""
    rows: list[dict[str, Any]] = []
    for position, k in enumerate(levels):
        parallel = slots or k
        embedded = Embedded(
            EmbeddedSpec(parallel=parallel, ctx_size=ctx_size, threads=threads), ctx_size
        )
        try:
            chosen = int(embedded.settings["threads"])
            direct = Direct(bundled_gguf_path(), threads=chosen, parallel=k, ctx_size=ctx_size)
            try:
                for path in (direct, embedded):
                    path.chat("Hi", 4)
                runs: list[tuple[str, Direct | Embedded]] = [
                    ("direct", direct),
                    ("embedded", embedded),
                ]
                if position % 2:
                    runs.reverse()
                figures = {name: _in_flight(p.chat, prompts, k, num_predict) for name, p in runs}
                rss = embedded.rss_mb()
            finally:
                direct.close()
        finally:
            embedded.close()
        row = {
            "k": k,
            "embedded_slots": parallel,
            "threads": chosen,
            "embedded_rss_mb": round(rss),
            **{f"{name}_{key}": value for name, f in figures.items() for key, value in f.items()},
            "ratio": _ratio(
                figures["embedded"]["requests_per_min"], figures["direct"]["requests_per_min"]
            ),
        }
        log(
            f"K={k}: embedded ({parallel} slots) {row['embedded_requests_per_min']:.1f} req/min, "
            f"{row['embedded_gen_tps']:.1f} gen tok/s; direct ({k} slots) "
            f"{row['direct_requests_per_min']:.1f} req/min; ratio {row['ratio']:.2f}"
        )
        rows.append(row)
    return rows


def _print_single(single: Mapping[str, Any]) -> None:
    d, e = single["direct"], single["embedded"]
    print()
    print(
        f"single stream: {single['rows']} rows, num_predict {single['num_predict']}, "
        f"{single['threads']} thread(s), 1 slot of {single['ctx_size']} tokens"
    )
    print(f"{'path':10} {'prompt tok/s':>13} {'gen tok/s':>10} {'wall s':>8} {'engine s':>9}")
    for name, r in (("direct", d), ("embedded", e)):
        print(
            f"{name:10} {r['prompt_tps']:13.1f} {r['gen_tps']:10.1f} {r['wall_s']:8.1f} "
            f"{r['engine_s']:9.1f}"
        )
    ratios, medians = single["ratios"], single["median_ratios"]
    for key in ("prompt", "generation", "wall"):
        verdict = "met" if ratios[key] >= GOAL else "NOT met"
        print(
            f"embedded / direct {key:10}: {ratios[key]:.3f} "
            f"(median per row {medians[key]:.3f}); goal >= {GOAL:.2f}: {verdict}"
        )
    print(f"90% goal met: {'yes' if single['goal_met'] else 'no'}")
    if single["prompt_token_mismatches"]:
        rows = single["prompt_token_mismatches"]
        print(f"note: rows whose prompts differ in token count between the paths: {rows}")
    print(flush=True)


def _print_sweep(sweep: Sequence[Mapping[str, Any]]) -> None:
    print()
    print(
        f"{'K':>2} {'slots':>5} {'RSS MB':>7} {'embedded req/min':>17} {'gen tok/s':>10} "
        f"{'direct req/min':>15} {'gen tok/s':>10} {'ratio':>6}"
    )
    for row in sweep:
        print(
            f"{row['k']:2d} {row['embedded_slots']:5d} {row['embedded_rss_mb']:7d} "
            f"{row['embedded_requests_per_min']:17.1f} {row['embedded_gen_tps']:10.1f} "
            f"{row['direct_requests_per_min']:15.1f} {row['direct_gen_tps']:10.1f} "
            f"{row['ratio']:6.2f}"
        )


def _levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected comma-separated request counts, e.g. 1,2,4,8"
        ) from None
    if any(k < 1 for k in levels):
        raise argparse.ArgumentTypeError(f"{text!r}: every K must be at least 1")
    return levels


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--rows", type=int, default=32, help="rows for the single stream")
    parser.add_argument("--num-predict", type=int, default=256)
    parser.add_argument(
        "--ctx-size", type=int, default=8192, help="tokens per slot (the longest row needs 7,092)"
    )
    parser.add_argument("--threads", type=int, default=None, help="default: the server's own")
    parser.add_argument(
        "--concurrency",
        type=_levels,
        default=[1, 2, 4, 8],
        help="K values for the throughput sweep; '' skips it (default: 1,2,4,8)",
    )
    parser.add_argument("--sweep-rows", type=int, default=16, help="rows per K in the sweep")
    parser.add_argument("--slots", type=int, default=None, help="embedded slots (default: K)")
    parser.add_argument("--no-single", action="store_true", help="only the concurrency sweep")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    reason = embedded_available()
    if reason is not None:
        print(f"embedded_speed: skipped: {reason}")
        return 0
    try:
        prompts = load_prompts(args.dataset, max(args.rows, args.sweep_rows))
    except OSError as exc:
        print(f"embedded_speed: cannot read --dataset {str(args.dataset)!r}: {exc}")
        return 1

    def log(line: str) -> None:
        print(line, flush=True)

    started = time.perf_counter()
    figures: dict[str, Any] = {"single_stream": None, "concurrency": []}

    def save() -> None:
        if args.json is not None:
            args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")

    try:
        if not args.no_single:
            figures["single_stream"] = single_stream(
                prompts[: args.rows],
                num_predict=args.num_predict,
                ctx_size=args.ctx_size,
                threads=args.threads,
                log=log,
            )
            _print_single(figures["single_stream"])
            save()
        if args.concurrency:
            figures["concurrency"] = concurrency(
                prompts[: args.sweep_rows],
                args.concurrency,
                num_predict=args.num_predict,
                ctx_size=args.ctx_size,
                threads=args.threads,
                slots=args.slots,
                log=log,
            )
            _print_sweep(figures["concurrency"])
            save()
    except Exception as exc:  # noqa: BLE001 - a benchmark reports and exits 1
        print(f"embedded_speed: could not run: {type(exc).__name__}: {exc}")
        return 1
    print(f"\n(took {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
