"""Loading the dataset and choosing the samples to evaluate.

Both a Hugging Face dataset id and a local file go through ``datasets.load_dataset`` (the json, csv
and parquet builders for files), so rows come back exactly as ``datasets`` returns them and
``str(row)`` is the prompt the original experiment sent. The dataset is Arrow-backed and
memory-mapped: rows are read one at a time, never held once per test item.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The columns the behavior definitions read. Other columns are kept: they are part of the record.
REQUIRED_COLUMNS = ("id", "prompt")
FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


class DatasetError(ValueError):
    """The dataset cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class DatasetSpec:
    """Which dataset: a hub id or a local file path, and the split."""

    id_or_path: str
    split: str = "train"

    @property
    def local_path(self) -> Path | None:
        """The file, when the spec names a local file (by suffix or because it exists)."""
        path = Path(self.id_or_path).expanduser()
        if path.suffix.lower() in FILE_BUILDERS or path.exists():
            return path
        return None


def load_rows(spec: DatasetSpec) -> Any:
    """Load the dataset as a ``datasets.Dataset``; raise :class:`DatasetError` with the fix."""
    import datasets

    path = spec.local_path
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # our messages replace its logs
    datasets.disable_progress_bars()
    try:
        if path is not None:
            builder = FILE_BUILDERS.get(path.suffix.lower())
            if builder is None:
                raise DatasetError(
                    f"--dataset {spec.id_or_path!r}: unsupported file type {path.suffix!r}; "
                    f"use one of {', '.join(sorted(FILE_BUILDERS))}"
                )
            if not path.is_file():
                raise DatasetError(f"--dataset {spec.id_or_path!r}: no such file")
            _prepare_in_child(builder, path, spec)
            ds = datasets.load_dataset(builder, data_files=str(path), split="train")
        else:
            _require_hub(spec)
            ds = datasets.load_dataset(spec.id_or_path, split=spec.split)
    except DatasetError:
        raise
    except Exception as exc:  # noqa: BLE001 - datasets raises many unrelated types; all mean "cannot load"
        raise DatasetError(_explain_load_failure(spec, path, exc)) from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in ds.column_names]
    if missing:
        raise DatasetError(
            f"--dataset {spec.id_or_path!r}: missing column(s) {missing!r} (it has "
            f"{ds.column_names!r}); the suite needs at least {list(REQUIRED_COLUMNS)!r}"
        )
    if len(ds) == 0:
        raise DatasetError(f"--dataset {spec.id_or_path!r}: the dataset has no rows")
    return ds


_PREPARE = (
    "import sys, datasets\n"
    "datasets.disable_progress_bars()\n"
    "datasets.logging.set_verbosity(datasets.logging.CRITICAL)\n"
    "datasets.load_dataset(sys.argv[1], data_files=sys.argv[2], split='train')\n"
)


def _prepare_in_child(builder: str, path: Path, spec: DatasetSpec) -> None:
    """Build the Arrow cache of a new file in a child process.

    pyarrow's JSON reader can crash the whole process on some malformed files (a first line
    that is ``null``; a column whose type changes after a blank line). Converting the file in a
    child turns that into one clear error; the parent then loads the prepared cache. A file
    already in the cache costs nothing here.
    """
    import subprocess
    import sys

    import datasets

    cache = Path(datasets.load_dataset_builder(builder, data_files=str(path)).cache_dir)
    if (cache / "dataset_info.json").exists():
        return
    child = subprocess.run(
        [sys.executable, "-c", _PREPARE, builder, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode < 0:
        raise DatasetError(
            f"--dataset {spec.id_or_path!r}: the file crashed the Arrow reader (signal "
            f"{-child.returncode}); check that every line is one JSON object and that each "
            "column keeps one type"
        )
    # any other failure is reported by the parent's own load, with its message


def _require_hub(spec: DatasetSpec) -> None:
    """Fail fast, with the fix, when the hub cannot be reached (instead of minutes of retries).

    With ``HF_HUB_OFFLINE=1`` the user asks for a cached copy: no probe, ``datasets`` reads
    its cache.
    """
    import os
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return
    url = urlsplit(constants.ENDPOINT)
    host, port = (
        url.hostname or "huggingface.co",
        url.port or (443 if url.scheme == "https" else 80),
    )
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        raise DatasetError(
            f"--dataset {spec.id_or_path!r}: the Hugging Face hub ({host}) cannot be reached "
            f"({exc.strerror or type(exc).__name__}). Pass a local file instead: "
            "--dataset path/to/train.csv (or .jsonl/.json/.parquet); if the dataset is already "
            "in your Hugging Face cache, set HF_HUB_OFFLINE=1"
        ) from None


def _explain_load_failure(spec: DatasetSpec, path: Path | None, exc: BaseException) -> str:
    innermost = exc
    while innermost.__cause__ is not None or innermost.__context__ is not None:
        innermost = innermost.__cause__ or innermost.__context__  # type: ignore[assignment]
    exc = innermost  # datasets wraps the useful message ("JSON parse error ... in row 1")
    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    if "corresponds to no data" in first_line:  # datasets' words for a file with no rows
        return f"--dataset {spec.id_or_path!r}: the dataset has no rows"
    if path is not None:
        reason = f"{type(exc).__name__}: {first_line}"
        return f"--dataset {spec.id_or_path!r}: cannot read the file ({reason})"
    return (
        f"--dataset {spec.id_or_path!r}: cannot load it from the Hugging Face hub "
        f"({type(exc).__name__}: {first_line}). Without internet access, download the dataset "
        "elsewhere and pass the local file: --dataset path/to/train.csv (or .jsonl/.parquet)"
    )


def select_indices(
    ids: Sequence[object],
    *,
    samples: int | None,
    samples_given: bool,
    seed: int,
    sample_ids: Sequence[str] | None,
) -> list[int]:
    """Row indices to evaluate, in dataset order.

    ``sample_ids`` wins; else ``samples`` rows chosen by a seeded ``random.Random`` (stable across
    runs and Python versions), else all rows. A default ``samples`` larger than the dataset means
    all rows; an explicit one is an error.
    """
    n_rows = len(ids)
    if sample_ids is not None:
        position = {str(value): i for i, value in reversed(list(enumerate(ids)))}
        unknown = [s for s in sample_ids if s not in position]
        if unknown:
            raise DatasetError(
                f"--sample-ids: {len(unknown)} id(s) not in the dataset: {unknown[:10]!r}; "
                f"ids look like {[str(v) for v in ids[:3]]!r}"
            )
        return sorted({position[s] for s in sample_ids})
    if samples is None or (samples >= n_rows and not samples_given):
        return list(range(n_rows))
    if samples > n_rows:
        raise DatasetError(
            f"--samples {samples}: the dataset has only {n_rows} rows; pass --samples all "
            f"or a number up to {n_rows}"
        )
    return sorted(random.Random(seed).sample(range(n_rows), samples))


def estimate_prompt_chars(ds: Any, indices: Sequence[int], spec: DatasetSpec | None = None) -> int:
    """The longest ``str(row)`` among the selected rows (read column-wise in batches)."""
    longest = 0
    batch = 1024
    for start in range(0, len(indices), batch):
        chunk = indices[start : start + batch]
        try:
            rows = [f"{row}" for row in ds.select(chunk)]
        except Exception as exc:  # noqa: BLE001 - a row Arrow stored but cannot give back
            raise DatasetError(_unreadable_row(ds, chunk, exc, spec)) from None
        longest = max([longest, *map(len, rows)])
    return longest


def _unreadable_row(ds: Any, chunk: Sequence[int], exc: Exception, spec: DatasetSpec | None) -> str:
    """Name the first row of ``chunk`` that cannot be read, and why."""
    for index in chunk:
        try:
            f"{ds[index]}"
        except Exception as row_exc:  # noqa: BLE001
            exc = row_exc
            break
    else:
        index = chunk[0]
    detail = (str(exc).splitlines() or [""])[0][:200]
    where = f"--dataset {spec.id_or_path!r}" if spec is not None else "--dataset"
    return (
        f"{where}: row {index} cannot be read ({type(exc).__name__}: {detail}); "
        "fix or drop that row"
    )
