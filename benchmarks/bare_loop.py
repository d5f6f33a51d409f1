"""The baselines the suite is measured against: the same requests without the harness.

``python benchmarks/bare_loop.py DATASET.jsonl HOST MODEL [--concurrency K] [--num-ctx N]``
reads the rows with :mod:`json` (``str(row)`` of such a dict is byte for byte the prompt the suite
sends, see ``tests/test_dataset.py``), sends each one as the suite does (one user message, the
suite's default options) with the official ``ollama`` client, and prints one JSON line:
``{"requests", "loop_s", "import_s"}``. With ``--concurrency 1`` (the default) it is a plain
loop over ``ollama.Client.chat``; above 1 it keeps K requests in flight with
``ollama.AsyncClient``, the most a client with no work of its own can get from the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

STARTED = time.perf_counter()

import ollama  # noqa: E402 - timed: part of what a bare script pays for

IMPORTED = time.perf_counter()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="a .jsonl file of rows")
    parser.add_argument("host")
    parser.add_argument("model")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--num-ctx", type=int, default=32768)
    args = parser.parse_args(argv)
    options = {"temperature": 0.0, "seed": 42, "num_predict": 1024, "num_ctx": args.num_ctx}
    with open(args.dataset, encoding="utf-8") as fh:
        prompts = [str(json.loads(line)) for line in fh if line.strip()]
    started = time.perf_counter()
    if args.concurrency <= 1:
        client = ollama.Client(host=args.host)
        for prompt in prompts:
            client.chat(
                model=args.model,
                messages=[{"role": "user", "content": prompt}],
                options=options,
                stream=False,
            )
    else:
        asyncio.run(_concurrent(args.host, args.model, prompts, options, args.concurrency))
    loop_s = time.perf_counter() - started
    result = {"requests": len(prompts), "loop_s": loop_s, "import_s": IMPORTED - STARTED}
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


async def _concurrent(
    host: str, model: str, prompts: list[str], options: dict[str, object], concurrency: int
) -> None:
    client = ollama.AsyncClient(host=host)
    queue = iter(prompts)

    async def worker() -> None:
        for prompt in queue:
            await client.chat(
                model=model,
                messages=[{"role": "user", "content": prompt}],
                options=options,
                stream=False,
            )

    await asyncio.gather(*(worker() for _ in range(concurrency)))


if __name__ == "__main__":
    sys.exit(main())
