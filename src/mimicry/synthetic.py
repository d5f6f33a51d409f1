"""Synthetic rows shaped like lmsys-arena-human-preference-55k, for scale work and benchmarks.

The real dataset cannot be downloaded on every machine, yet the suite has to be measured on its
full size (57,477 rows). This module writes a seeded stand-in with the same 9 columns, in the same
order and with the same types as ``datasets`` returns them for the real file::

    id int, model_a str, model_b str, prompt str, response_a str, response_b str,
    winner_model_a int, winner_model_b int, winner_tie int

``prompt``, ``response_a`` and ``response_b`` are JSON-encoded lists of strings, one per turn,
encoded as the real ones are (compact separators, ``\\uXXXX`` escapes for non-ASCII and ``\\/``
for slashes). The winner columns are one-hot (shares 34.9% / 34.2% / 30.9%, as in the real
dataset); ids increase by a random step averaging 74,723 from 30,192 (the real ids span 30,192 to
about 4.29e9 in 57,477 rows); ``model_a`` and ``model_b`` are two different names of arena models.

How long a row is (``len(str(row))``, the prompt the suite sends) is what matters for scale, so
that is what is matched to the 32 real rows in ``../shared/data/lmsys-arena-sample``:

1. The target length of each row is drawn from a log-normal distribution fitted by maximum
   likelihood to the real rows' log-lengths: ``ln(len) ~ Normal(LOG_LENGTH_MEAN,
   LOG_LENGTH_SD)`` with mean 7.8837 and (sample) standard deviation 1.0072, i.e. a median of
   2,654 characters (the real rows: 2,450), quartiles 1,345 and 5,235 (real: 1,253 and 4,792),
   a 90th percentile of 9,648 (real: 9,971) and a 99th of 27,600 (the longest real row is 33,776).
   Targets are kept within ``[MIN_ROW_CHARS, MAX_ROW_CHARS]``.
2. The number of turns grows with the length, as in the real rows (a 33,776-character row has
   10 turns, most rows under 5,000 characters have 1): ``1 + Poisson(max(0.1, length / 3,300 -
   1))``, at most 10. About three rows in four have one turn (24 of the 32 real rows do).
3. The characters left after the fixed part of the row go to the prompt turns (short: about 70
   characters each, log-normal, as real prompts) and the rest to the two responses (split by a
   Beta(2, 2) share, each response's turns by random weights). The text is pseudo-English cut
   from a seeded pool of sentences with paragraphs, list items, quotes, apostrophes, slashes and
   a little non-ASCII, so that ``str(row)`` escapes characters as the real rows do.
4. The row is built, measured, and its longest turn trimmed or extended once so that
   ``len(str(row))`` lands within a few characters of the target.

Not modelled: the real dataset's handful of empty or ``null`` responses (13 ``response_a``, 15
``response_b``) and the real text itself (the replies a fake server gives only need the shape).

Rows are generated one at a time and written as they are made (JSON Lines, or Parquet in
batches), so the full size takes well under a minute and little memory (about 5 s and 20 MB for
the 57,477 rows, 256 MB of JSON Lines). Same ``seed``, same rows, byte for byte, on a given Python
version: only :class:`random.Random` is used, and Python guarantees the sequence of ``random()``
across versions but not that of every distribution built on it.

Command line: ``python -m mimicry.synthetic OUT.jsonl [--rows N] [--seed S]`` (``.parquet`` for
Parquet).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

COLUMNS: Final = (
    "id",
    "model_a",
    "model_b",
    "prompt",
    "response_a",
    "response_b",
    "winner_model_a",
    "winner_model_b",
    "winner_tie",
)
TEXT_COLUMNS: Final = ("prompt", "response_a", "response_b")
#: Rows of the real training split.
FULL_SIZE_ROWS: Final = 57_477
#: Maximum-likelihood log-normal fit of ``len(str(row))`` over the 32 real rows (ddof=1 for sd).
LOG_LENGTH_MEAN: Final = 7.8837
LOG_LENGTH_SD: Final = 1.0072
#: The shortest real row has 340 characters; the fixed part of a row takes about 200.
MIN_ROW_CHARS: Final = 300
#: A ceiling far above the longest real row (33,776) that still fits a model's context window.
MAX_ROW_CHARS: Final = 200_000
MAX_TURNS: Final = 10
#: Each 3,300 characters beyond the first 3,300 add one expected turn (fitted by eye to the rows).
CHARS_PER_TURN: Final = 3_300
MIN_EXTRA_TURNS: Final = 0.1
FIRST_ID: Final = 30_192
MEAN_ID_STEP: Final = 74_723
#: Winner shares of the real dataset: model_a, model_b, tie.
WINNER_WEIGHTS: Final = (0.349, 0.342, 0.309)
#: Arena model names (those of the 32 real rows).
MODELS: Final = (
    "alpaca-13b",
    "chatglm-6b",
    "chatglm2-6b",
    "chatglm3-6b",
    "claude-1",
    "claude-2.0",
    "claude-2.1",
    "claude-instant-1",
    "deepseek-llm-67b-chat",
    "dolly-v2-12b",
    "gemini-pro",
    "gemini-pro-dev-api",
    "gpt-3.5-turbo-0314",
    "gpt-3.5-turbo-0613",
    "gpt-3.5-turbo-1106",
    "gpt-4-0125-preview",
    "gpt-4-0314",
    "gpt-4-0613",
    "gpt-4-1106-preview",
    "gpt4all-13b-snoozy",
    "guanaco-33b",
    "koala-13b",
    "llama-2-13b-chat",
    "llama2-70b-steerlm-chat",
    "mistral-7b-instruct",
    "mistral-medium",
    "mixtral-8x7b-instruct-v0.1",
    "mpt-30b-chat",
    "openchat-3.5",
    "pplx-70b-online",
    "vicuna-13b",
    "vicuna-7b",
    "wizardlm-13b",
    "wizardlm-70b",
)
#: Median length of one prompt turn (the real ones: 13 to 1,500 characters, median about 70).
PROMPT_TURN_MEDIAN: Final = 70
PROMPT_TURN_LOG_SD: Final = 0.9
#: The prompt never takes more than this share of a row's text (one real row has 70%).
MAX_PROMPT_SHARE: Final = 0.7

_POOL_CHARS: Final = 2 * MAX_ROW_CHARS + 4096  # any turn fits in one slice of the pool
_PARQUET_BATCH: Final = 2048

_WORDS: Final = (
    "the of and to a in is it you that for on are with as be this was have or by not can but "
    "from at an they which one all your there their if will more when use so what about would "
    "out up other into time some could them these than then its also two how first may way "
    "like only new most after any should well because each people data model system value "
    "function example number code file question answer important different however using "
    "provide following information help make sure here steps approach result process list "
    "string python server request response user task language learn simple general specific "
    "possible consider example world story water energy market history theory design"
).split()
_SPICE: Final = (
    "it's",
    "don't",
    "here's",
    "I'm",
    "and/or",
    "input/output",
    "https://example.com/docs",
    '"quoted"',
    "`code`",
    "**bold**",
    "café",
    "naïve",
    "it\u2019s",
    "\u2014",
    "\u2248",
    "(e.g.",
    "etc.)",
    "3.14",
    "2023",
    "100%",
)


def _build_pool(rng: random.Random) -> str:
    """A long seeded text with the features that change how a row is escaped."""
    parts: list[str] = []
    size = 0
    sentences_in_paragraph = 0
    while size < _POOL_CHARS:
        words = rng.choices(_WORDS, k=rng.randint(4, 22))
        if rng.random() < 0.35:
            words.insert(rng.randrange(len(words) + 1), rng.choice(_SPICE))
        sentence = " ".join(words)
        sentence = sentence[0].upper() + sentence[1:] + rng.choice(".....?:!")
        roll = rng.random()
        if sentences_in_paragraph >= 4 and roll < 0.4:
            separator = "\n\n"
            sentences_in_paragraph = 0
        elif roll < 0.08:
            separator = f"\n{rng.randint(1, 9)}. "
        elif roll < 0.12:
            separator = "\n- "
        else:
            separator = " "
        sentences_in_paragraph += 1
        parts.append(sentence + separator)
        size += len(sentence) + len(separator)
    return "".join(parts)


def _poisson(rng: random.Random, lam: float) -> int:
    """Knuth's method; ``lam`` is at most about 60 here (MAX_ROW_CHARS / CHARS_PER_TURN)."""
    limit = math.exp(-lam)
    k, product = 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def _encode(turns: Sequence[str]) -> str:
    """A list of turns encoded as the real rows are: compact JSON, ASCII, escaped slashes."""
    return json.dumps(list(turns), separators=(",", ":")).replace("/", "\\/")


class _Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.pool = _build_pool(random.Random(f"mimicry-synthetic-pool-{seed}"))
        self.next_id = FIRST_ID

    def text(self, n_chars: int) -> str:
        n_chars = max(1, min(n_chars, len(self.pool) // 2))
        start = self.rng.randrange(len(self.pool) - n_chars - 64)
        start = self.pool.find(" ", start, start + 64) + 1  # begin at a word (0 if none found)
        return self.pool[start : start + n_chars]

    def row(self) -> dict[str, Any]:
        rng = self.rng
        target = round(rng.lognormvariate(LOG_LENGTH_MEAN, LOG_LENGTH_SD))
        target = min(max(target, MIN_ROW_CHARS), MAX_ROW_CHARS)
        n_turns = 1 + _poisson(rng, max(MIN_EXTRA_TURNS, target / CHARS_PER_TURN - 1))
        n_turns = min(n_turns, MAX_TURNS)
        row_id = self.next_id
        self.next_id += rng.randint(1, 2 * MEAN_ID_STEP - 1)
        model_a, model_b = rng.sample(MODELS, 2)
        winner = rng.choices(range(3), weights=WINNER_WEIGHTS)[0]
        row: dict[str, Any] = {
            "id": row_id,
            "model_a": model_a,
            "model_b": model_b,
            "prompt": "",
            "response_a": "",
            "response_b": "",
            "winner_model_a": int(winner == 0),
            "winner_model_b": int(winner == 1),
            "winner_tie": int(winner == 2),
        }
        # JSON brackets, quotes and commas of the three lists cost one character each in repr
        fixed = len(str(row)) + 3 * (3 * n_turns + 1)
        budget = max(target - fixed, 3 * n_turns)
        prompt_turns = [
            max(5, round(rng.lognormvariate(math.log(PROMPT_TURN_MEDIAN), PROMPT_TURN_LOG_SD)))
            for _ in range(n_turns)
        ]
        prompt_total = sum(prompt_turns)
        prompt_cap = max(n_turns, int(MAX_PROMPT_SHARE * budget))
        if prompt_total > prompt_cap:
            prompt_turns = [max(1, n * prompt_cap // prompt_total) for n in prompt_turns]
        responses_total = max(2 * n_turns, budget - sum(prompt_turns))
        share_a = min(max(rng.betavariate(2, 2), 0.02), 0.98)
        lengths = {
            "prompt": prompt_turns,
            "response_a": self._split(round(share_a * responses_total), n_turns),
            "response_b": self._split(responses_total - round(share_a * responses_total), n_turns),
        }
        turns = {column: [self.text(n) for n in lengths[column]] for column in TEXT_COLUMNS[1:]}
        turns["prompt"] = [self.text(n - 1).rstrip() + "?" for n in lengths["prompt"]]
        for column in TEXT_COLUMNS:
            row[column] = _encode(turns[column])
        # escapes make the text longer in repr than in characters: correct the longest turn once
        excess = len(str(row)) - target
        if excess:
            column = max(("response_a", "response_b"), key=lambda c: len(row[c]))
            longest = max(range(n_turns), key=lambda i: len(turns[column][i]))
            turns[column][longest] = self.text(len(turns[column][longest]) - excess)
            row[column] = _encode(turns[column])
        return row

    def _split(self, total: int, parts: int) -> list[int]:
        weights = [self.rng.random() + 0.2 for _ in range(parts)]
        scale = total / sum(weights)
        return [max(1, round(w * scale)) for w in weights]


def generate_rows(n_rows: int = FULL_SIZE_ROWS, seed: int = 0) -> Iterator[dict[str, Any]]:
    """Yield ``n_rows`` synthetic rows (dicts with :data:`COLUMNS` in order), one at a time.

    ``str(row)`` of a yielded dict equals ``str(row)`` of the same row read back through
    ``datasets`` from the file :func:`write_dataset` writes. Same ``seed``, same rows.
    """
    if n_rows < 1:
        raise ValueError(f"n_rows={n_rows!r}: must be at least 1 (the real dataset has 57,477)")
    generator = _Generator(seed)
    for _ in range(n_rows):
        yield generator.row()


def write_dataset(path: str | Path, n_rows: int = FULL_SIZE_ROWS, seed: int = 0) -> Path:
    """Write ``n_rows`` synthetic rows to ``path`` (``.jsonl`` or ``.parquet``); return the path.

    The file is written under a temporary name and renamed at the end, so a reader never sees
    half a dataset. Rows are streamed: memory stays small at any size.
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in (".jsonl", ".parquet"):
        raise ValueError(
            f"write_dataset({str(path)!r}): unsupported file type {target.suffix!r}; "
            "name the file .jsonl or .parquet"
        )
    rows = generate_rows(n_rows, seed)  # validates n_rows before any file is created
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    try:
        if suffix == ".jsonl":
            with partial.open("w", encoding="ascii", newline="\n") as fh:
                for row in rows:
                    fh.write(json.dumps(row))
                    fh.write("\n")
        else:
            _write_parquet(partial, rows)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _write_parquet(path: Path, rows: Iterator[dict[str, Any]]) -> None:
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    int_columns = {"id", "winner_model_a", "winner_model_b", "winner_tie"}
    schema = pa.schema(
        [(name, pa.int64() if name in int_columns else pa.string()) for name in COLUMNS]
    )
    with pq.ParquetWriter(str(path), schema) as writer:
        batch: list[dict[str, Any]] = []
        for row in rows:
            batch.append(row)
            if len(batch) == _PARQUET_BATCH:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m mimicry.synthetic`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m mimicry.synthetic",
        description="Write seeded synthetic rows shaped like lmsys-arena-human-preference-55k.",
    )
    parser.add_argument("out", type=Path, help="output file, .jsonl or .parquet")
    parser.add_argument(
        "--rows",
        type=int,
        default=FULL_SIZE_ROWS,
        help=f"number of rows (default: {FULL_SIZE_ROWS}, the real dataset's size)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0, or 4 for a usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        path = write_dataset(args.out, n_rows=args.rows, seed=args.seed)
    except ValueError as exc:
        sys.stderr.write(f"{parser.prog}: {exc}\n")
        return 4
    sys.stdout.write(f"wrote {args.rows} rows to {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
