"""Choosing and loading the dataset, the row store that makes its rows cheap to read, and the
selection of the samples to evaluate.

``datasets`` is the loader: a Hugging Face dataset id and a local file alike go through
``datasets.load_dataset`` (the json, csv and parquet builders for files), so rows come back
exactly as ``datasets`` returns them and ``str(row)`` is the prompt the original experiment
sent. Importing ``datasets`` costs 2-3 s per process, so its rows are read once and written to a
row store (:func:`open_rows`); every later reader, the controller on a rerun and each xdist worker
given only the store's path, opens the store (:meth:`RowStore.open`) without importing
``datasets``, ``pyarrow`` or ``pandas``.

The dataset itself is chosen by :func:`choose_dataset`: the one the user named, else the hub
dataset when the hub answers or has it in the local cache, else the 32 rows bundled with the
package (``--dataset sample``), with a note saying so.

The row store is one file, written once and then only read::

    MAGIC | row 0 pickle | row 1 pickle | ... | offsets | lengths | ids | header | len | MAGIC

Each row is pickled on its own (protocol 5), so ``store[i]`` is one ``pickle.loads`` of a slice of
the memory-mapped file: microseconds, whatever the row holds. Pickle, because it gives back every
type ``datasets`` returns (int, float with its exact bits, str, bytes, bool, None, lists, dicts in
key order, datetime, Decimal, ...) as the same objects, so the repr of a row read back is
byte-identical to ``str(ds[i])``; JSON would lose tuples, bytes, datetimes and NaN, and a repr
read back with ``ast.literal_eval`` would lose every non-literal type. Pickle is safe here because
only this module writes the stores, under the user's own cache directory. The offsets and the
prompt lengths (``len(str(row))``) are arrays of little-endian uint64 read in place; the ids are
one pickled list, read when first asked for. The header (JSON) names the source the store was
built from.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import pickle
import random
import re
import struct
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

#: The columns the behavior definitions read. Other columns are kept: they are part of the record.
REQUIRED_COLUMNS = ("id", "prompt")
FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}

#: ``--dataset sample``: the rows bundled with the package.
BUNDLED_SAMPLE: Final = "sample"
#: The bundled rows, under the package (found through ``importlib.resources``).
BUNDLED_SAMPLE_PARTS: Final = ("data", "lmsys-arena-sample", "train-first32.jsonl")
BUNDLED_SAMPLE_ROWS: Final = 32
#: The dataset the bundled rows come from.
BUNDLED_SAMPLE_SOURCE: Final = "lmsys/lmsys-arena-human-preference-55k"

#: How long the default choice waits for the hub (DNS, connection and TLS handshake together). An
#: answer takes tens of milliseconds where the hub is reachable; where it is not, DNS or the
#: connection fails at once, or a black hole is cut off here.
HUB_PROBE_TIMEOUT_S: Final = 0.5
#: The same for a hub dataset the user named: a slow link must not turn a choice into an error.
NAMED_HUB_PROBE_TIMEOUT_S: Final = 3.0
DEFAULT_HUB_ENDPOINT: Final = "https://huggingface.co"
#: huggingface_hub's truthy values of its boolean environment variables.
_TRUE_VALUES: Final = frozenset({"1", "ON", "YES", "TRUE"})

#: Bump when the store layout or the meaning of a key field changes: old stores are then ignored.
STORE_FORMAT: Final = 1
STORE_SUFFIX: Final = ".rows"
_MAGIC: Final = b"MIMICRY-ROWS-v1\n"
_TRAILER: Final = struct.Struct("<Q")
_MODULES_NOT_IMPORTED_BY_READERS: Final = ("datasets", "pyarrow", "pandas")


class DatasetError(ValueError):
    """The dataset cannot be used; the message says why and what to do."""


class RowStoreError(DatasetError):
    """A row store file is missing or damaged (it is rebuilt from the dataset by open_rows)."""


@dataclass(frozen=True)
class DatasetSpec:
    """Which dataset (a hub id, a local file path or ``sample``, the bundled rows) and split."""

    id_or_path: str
    split: str = "train"

    @property
    def bundled(self) -> bool:
        """Whether the spec names the rows bundled with the package (``--dataset sample``)."""
        return self.id_or_path == BUNDLED_SAMPLE

    @property
    def local_path(self) -> Path | None:
        """The file, when the spec names a local file (by suffix or because it exists).

        ``sample`` always means the bundled rows: a local file of that name is ``./sample``.
        """
        if self.bundled:
            return None
        path = Path(self.id_or_path).expanduser()
        if path.suffix.lower() in FILE_BUILDERS or path.exists():
            return path
        return None

    @property
    def is_hub(self) -> bool:
        """Whether the spec names a Hugging Face hub dataset."""
        return not self.bundled and self.local_path is None


@dataclass(frozen=True)
class DatasetChoice:
    """The dataset a run uses, and why.

    ``bundled``: the rows shipped with the package. ``note``: one line for the caller to print and
    to put in the report's notes (the bundled rows replaced the default, or a hub dataset is read
    from the local cache because the hub cannot be reached), None when there is nothing to say.
    ``hub_offline``: read the hub dataset from the local Hugging Face cache only.
    """

    spec: DatasetSpec
    bundled: bool = False
    note: str | None = None
    hub_offline: bool = False

    @property
    def label(self) -> str:
        """What the dataset is, for the report's ``run.dataset`` and the terminal."""
        if self.bundled:
            return (
                f"the bundled sample: the first {BUNDLED_SAMPLE_ROWS} rows of "
                f"{BUNDLED_SAMPLE_SOURCE} ({self.spec.split})"
            )
        return f"{self.spec.id_or_path} ({self.spec.split})"


# -- choosing the dataset -----------------------------------------------------------------------


def choose_dataset(
    given: str | None,
    split: str = "train",
    environ: Mapping[str, str] | None = None,
    *,
    probe_timeout_s: float | None = None,
) -> DatasetChoice:
    """The dataset a run uses: ``given`` (``--dataset``, None when not given) and ``split``.

    A named dataset is used or is an error, never replaced: ``sample`` is the bundled rows, a file
    is that file (loading it reports what is wrong with it), and a hub id needs the hub or the local
    Hugging Face cache (without the hub, a cached copy is read offline, with a note). With nothing
    named, the backend's rule: the default hub dataset when the hub answers within
    ``probe_timeout_s`` (default :data:`HUB_PROBE_TIMEOUT_S`) or the dataset is in the local cache
    (checked without network), else the bundled sample with a note saying why. ``HF_HUB_OFFLINE``
    (or ``HF_DATASETS_OFFLINE``) set means: no probe, the local cache only.

    ``environ`` (default ``os.environ``) gives ``HF_ENDPOINT``, the proxy variables, the cache
    location (``HF_DATASETS_CACHE``, ``HF_HOME``, ``XDG_CACHE_HOME``) and the offline switches.
    Raises :class:`DatasetError`.
    """
    env = os.environ if environ is None else environ
    if given is not None and given.strip() == "":
        raise DatasetError(
            "--dataset '': empty; pass a Hugging Face id, a local .jsonl/.json/.csv/.parquet "
            f"file or {BUNDLED_SAMPLE!r} for the {BUNDLED_SAMPLE_ROWS} bundled rows"
        )
    if given is not None:
        spec = DatasetSpec(given, split)
        if spec.bundled:
            _check_bundled_split(spec)
            return DatasetChoice(spec, bundled=True)
        if spec.local_path is not None:
            return DatasetChoice(spec)
        return _choose_named_hub(spec, env, probe_timeout_s or NAMED_HUB_PROBE_TIMEOUT_S)
    from mimicry.settings import DEFAULT_DATASET  # the one place the default is named

    spec = DatasetSpec(DEFAULT_DATASET, split)
    sample = DatasetSpec(BUNDLED_SAMPLE, split)
    cached = cached_hub_copy(spec.id_or_path, split, env)
    offline = _offline_switch(env)
    if offline is not None:
        if cached is not None:
            return DatasetChoice(spec, hub_offline=True)
        _check_bundled_split(sample, why=f"{offline} is set and {spec.id_or_path} is not cached")
        return DatasetChoice(
            sample,
            bundled=True,
            note=(
                f"no --dataset given, {offline} is set and {spec.id_or_path} is not in the "
                f"Hugging Face cache ({hub_datasets_cache(env)}): {_using_sample()}"
            ),
        )
    endpoint = hub_endpoint(env)
    unreachable = hub_unreachable(env, probe_timeout_s or HUB_PROBE_TIMEOUT_S)
    if unreachable is None:
        return DatasetChoice(spec)
    if cached is not None:
        return DatasetChoice(
            spec, note=_cached_copy_note(endpoint, unreachable, cached), hub_offline=True
        )
    _check_bundled_split(
        sample, why=f"the hub cannot be reached and {spec.id_or_path} is not cached"
    )
    return DatasetChoice(
        sample,
        bundled=True,
        note=(
            f"no --dataset given and the Hugging Face hub ({endpoint.where}) cannot be reached "
            f"({unreachable}): {_using_sample()}"
        ),
    )


def _using_sample() -> str:
    return (
        f"using the bundled sample, the first {BUNDLED_SAMPLE_ROWS} rows of "
        f"{BUNDLED_SAMPLE_SOURCE} (--dataset {BUNDLED_SAMPLE}); name a dataset with --dataset to "
        "use another"
    )


def _cached_copy_note(endpoint: HubEndpoint, reason: str, cached: Path) -> str:
    return (
        f"the Hugging Face hub ({endpoint.where}) cannot be reached ({reason}): using the cached "
        f"copy of the dataset in {cached}"
    )


def _choose_named_hub(spec: DatasetSpec, env: Mapping[str, str], timeout_s: float) -> DatasetChoice:
    cached = cached_hub_copy(spec.id_or_path, spec.split, env)
    offline = _offline_switch(env)
    if offline is not None:
        if cached is None:
            raise DatasetError(_offline_not_cached(spec, offline, env))
        return DatasetChoice(spec, hub_offline=True)
    endpoint = hub_endpoint(env)
    unreachable = hub_unreachable(env, timeout_s)
    if unreachable is None:
        return DatasetChoice(spec)
    if cached is not None:
        return DatasetChoice(
            spec, note=_cached_copy_note(endpoint, unreachable, cached), hub_offline=True
        )
    raise DatasetError(
        f"--dataset {spec.id_or_path!r}: the Hugging Face hub ({endpoint.where}) cannot be reached "
        f"({unreachable}) and the dataset is not in the Hugging Face cache "
        f"({hub_datasets_cache(env)}); {_alternatives()}"
    )


def _alternatives() -> str:
    return (
        "pass a local file instead (--dataset path/to/train.csv, or .jsonl/.json/.parquet) or "
        f"the {BUNDLED_SAMPLE_ROWS} bundled rows (--dataset {BUNDLED_SAMPLE})"
    )


def _offline_not_cached(spec: DatasetSpec, offline: str, env: Mapping[str, str]) -> str:
    variable = offline.split("=", 1)[0]
    return (
        f"--dataset {spec.id_or_path!r}: {offline} is set and the dataset (split "
        f"{spec.split!r}) is not in the Hugging Face cache ({hub_datasets_cache(env)}); unset "
        f"{variable} to download it, or {_alternatives()}"
    )


def _check_bundled_split(spec: DatasetSpec, why: str | None = None) -> None:
    if spec.split != "train":
        because = f" ({why})" if why else ""
        raise DatasetError(
            f"--dataset-split {spec.split!r}: the bundled sample{because} has only the 'train' "
            "split; use --dataset-split train, or name a dataset with that split"
        )


@dataclass(frozen=True)
class HubEndpoint:
    """Where the hub is (``HF_ENDPOINT``), and the proxy that reaches it when one applies."""

    scheme: str
    host: str
    port: int
    proxy: tuple[str, int] | None = None
    #: ``Proxy-Authorization`` value from the proxy URL's credentials (never shown)
    proxy_auth: str | None = None

    @property
    def where(self) -> str:
        """The hub's host, and the proxy when one is used, for messages."""
        if self.proxy is None:
            return self.host
        return f"{self.host} through the proxy {self.proxy[0]}:{self.proxy[1]}"


def hub_endpoint(environ: Mapping[str, str]) -> HubEndpoint:
    """The hub's address from ``HF_ENDPOINT`` and the proxy variables httpx honours."""
    import base64
    from urllib.parse import unquote, urlsplit

    url = urlsplit((environ.get("HF_ENDPOINT") or DEFAULT_HUB_ENDPOINT).rstrip("/"))
    scheme = url.scheme or "https"
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if scheme == "https" else 80)
    names = (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY")
    proxy_url = next((environ[n] for n in names if environ.get(n)), None)
    if proxy_url is None or _bypasses_proxy(host, environ):
        return HubEndpoint(scheme, host, port)
    proxy = urlsplit(proxy_url if "://" in proxy_url else f"http://{proxy_url}")
    proxy_port = proxy.port or (443 if proxy.scheme == "https" else 80)
    auth = None
    if proxy.username is not None:
        credentials = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}"
        auth = "Basic " + base64.b64encode(credentials.encode()).decode()
    return HubEndpoint(scheme, host, port, (proxy.hostname or "localhost", proxy_port), auth)


def _bypasses_proxy(host: str, environ: Mapping[str, str]) -> bool:
    """Whether ``NO_PROXY`` exempts ``host`` (``*``, the host itself, or a domain it is in)."""
    entries = (environ.get("no_proxy") or environ.get("NO_PROXY") or "").split(",")
    for entry in (e.strip().lower().lstrip(".").split(":")[0] for e in entries):
        if entry == "*" or (entry and (host == entry or host.endswith(f".{entry}"))):
            return True
    return False


def hub_unreachable(environ: Mapping[str, str], timeout_s: float) -> str | None:
    """None when the hub answers within ``timeout_s``; else why not, in a few words.

    "Answers" means: a TCP connection opens and, for an https endpoint, a TLS handshake with a
    certificate valid for the hub's name completes (through a ``CONNECT`` tunnel when a proxy
    applies). A connection alone proves little: some networks accept every TCP connection and
    then reset it. DNS, connection and handshake share the bound: the attempt runs in a daemon
    thread, so a resolver that hangs costs ``timeout_s``, not its own retries.
    """
    import threading

    endpoint = hub_endpoint(environ)
    outcome: list[BaseException | None] = []
    done = threading.Event()

    def probe() -> None:
        try:
            _probe_hub(endpoint, timeout_s)
            outcome.append(None)
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
            outcome.append(exc)
        finally:
            done.set()

    threading.Thread(target=probe, name="mimicry-hub-probe", daemon=True).start()
    if not done.wait(timeout_s):
        return f"no answer within {timeout_s:g} s"
    error = outcome[0]
    if error is None:
        return None
    import ssl

    if isinstance(error, ssl.SSLCertVerificationError):
        return f"its TLS certificate is not valid for {endpoint.host}: {error.verify_message}"
    if isinstance(error, ssl.SSLError):
        return f"TLS handshake failed: {error.reason or error}"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _probe_hub(endpoint: HubEndpoint, timeout_s: float) -> None:
    """Open a connection to the hub (and a TLS session for https); raise on failure."""
    import socket

    address = endpoint.proxy or (endpoint.host, endpoint.port)
    with socket.create_connection(address, timeout=timeout_s) as sock:
        sock.settimeout(timeout_s)
        if endpoint.proxy is not None:
            target = f"{endpoint.host}:{endpoint.port}"
            auth = f"Proxy-Authorization: {endpoint.proxy_auth}\r\n" if endpoint.proxy_auth else ""
            sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n".encode())
            status = sock.recv(1024).split(b"\r\n", 1)[0].decode("latin-1")
            parts = status.split()
            if len(parts) < 2 or not parts[1].startswith("2"):
                raise OSError(f"the proxy refused the tunnel ({status[:60] or 'no answer'})")
        if endpoint.scheme == "https":
            import ssl

            context = ssl.create_default_context()
            with context.wrap_socket(sock, server_hostname=endpoint.host):
                pass


def _offline_switch(environ: Mapping[str, str]) -> str | None:
    """``NAME=value`` of the variable that puts ``datasets`` offline, None when it is online.

    The same rule as ``datasets.config``: ``HF_DATASETS_OFFLINE`` when set, else
    ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``.
    """
    names = (
        ("HF_DATASETS_OFFLINE",)
        if environ.get("HF_DATASETS_OFFLINE") is not None
        else ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )
    for name in names:
        value = environ.get(name) or ""
        if value.strip().upper() in _TRUE_VALUES:
            return f"{name}={value.strip()}"
    return None


def hub_datasets_cache(environ: Mapping[str, str]) -> Path:
    """Where ``datasets`` keeps prepared hub datasets (the rule of ``datasets.config``)."""
    if environ.get("HF_DATASETS_CACHE"):
        return Path(environ["HF_DATASETS_CACHE"]).expanduser()
    hf_home = environ.get("HF_HOME") or os.path.join(
        environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface"
    )
    return Path(hf_home).expanduser() / "datasets"


def cached_hub_copy(dataset_id: str, split: str, environ: Mapping[str, str]) -> Path | None:
    """The folder of a prepared copy of ``dataset_id`` with ``split`` in the local cache, or None.

    Looks where ``datasets`` looks when offline (``<cache>/<namespace>___<name>/<config>/<version>
    /<hash>/dataset_info.json``), without network and without importing it.
    """
    parts = dataset_id.split("/")
    if len(parts) > 2 or not all(parts):
        return None
    parts[-1] = _camelcase_to_snakecase(parts[-1])
    root = hub_datasets_cache(environ) / "___".join(parts)
    candidates = []
    for info in root.glob("*/*/*/dataset_info.json"):
        try:
            splits = json.loads(info.read_text(encoding="utf-8")).get("splits") or {}
            candidates.append((info.parent.stat().st_mtime, info.parent, split in splits))
        except (OSError, ValueError, AttributeError):
            continue
    # datasets reads the most recent copy; it must have the split
    newest = max(candidates, default=None, key=lambda c: c[0])
    return newest[1] if newest is not None and newest[2] else None


def _camelcase_to_snakecase(name: str) -> str:
    """``datasets.naming.camelcase_to_snakecase``: how a dataset name becomes a folder name."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    name = re.sub(r"([a-z\d])([A-Z])", r"\1_\2", name)
    return name.lower()


# -- loading through datasets --------------------------------------------------------------------


def bundled_sample_file() -> Any:
    """The bundled rows as an ``importlib.resources`` Traversable (a Path in a normal install)."""
    from importlib.resources import files

    return files("mimicry").joinpath(*BUNDLED_SAMPLE_PARTS)


def load_rows(spec: DatasetSpec) -> Any:
    """Load the dataset as a ``datasets.Dataset``; raise :class:`DatasetError` with the fix.

    The path of current callers; :func:`open_rows` is the cheap one. A file pyarrow crashes on is
    converted in a child process first, so the crash is one clear error.
    """
    if spec.is_hub and _offline_switch(os.environ) is None:
        choice = choose_dataset(spec.id_or_path, spec.split)
        if choice.hub_offline:  # this loader does not switch datasets offline by itself
            endpoint = hub_endpoint(os.environ)
            raise DatasetError(
                f"--dataset {spec.id_or_path!r}: the Hugging Face hub ({endpoint.where}) cannot "
                "be reached; the dataset is in your Hugging Face cache "
                f"({hub_datasets_cache(os.environ)}): set HF_HUB_OFFLINE=1 to use it"
            )
    elif spec.is_hub:
        choose_dataset(spec.id_or_path, spec.split)  # the error when it is not cached
    return _load_dataset(spec, crash_guard=True)


def _load_dataset(spec: DatasetSpec, *, crash_guard: bool) -> Any:
    """``datasets.load_dataset`` for ``spec``, checked; ``crash_guard``: files go through a child
    process first (see :func:`_prepare_in_child`)."""
    import datasets

    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # our messages replace its logs
    datasets.disable_progress_bars()
    try:
        if spec.bundled:
            from importlib.resources import as_file

            _check_bundled_split(spec)
            with as_file(bundled_sample_file()) as bundled:
                ds = _load_file(datasets, bundled, "json", spec, crash_guard)
        elif (path := spec.local_path) is not None:
            builder = _builder_for(path, spec)
            if not path.is_file():
                raise DatasetError(f"--dataset {spec.id_or_path!r}: no such file")
            ds = _load_file(datasets, path, builder, spec, crash_guard)
        else:
            from huggingface_hub.utils import logging as hub_logging

            hub_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
            ds = datasets.load_dataset(spec.id_or_path, split=spec.split)
    except DatasetError:
        raise
    except Exception as exc:  # noqa: BLE001 - datasets raises many unrelated types; all mean "cannot load"
        raise DatasetError(_explain_load_failure(spec, exc)) from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in ds.column_names]
    if missing:
        raise DatasetError(
            f"--dataset {spec.id_or_path!r}: missing column(s) {missing!r} (it has "
            f"{ds.column_names!r}); the suite needs at least {list(REQUIRED_COLUMNS)!r}"
        )
    if len(ds) == 0:
        raise DatasetError(f"--dataset {spec.id_or_path!r}: the dataset has no rows")
    return ds


def _builder_for(path: Path, spec: DatasetSpec) -> str:
    builder = FILE_BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise DatasetError(
            f"--dataset {spec.id_or_path!r}: unsupported file type {path.suffix!r}; "
            f"use one of {', '.join(sorted(FILE_BUILDERS))}"
        )
    return builder


def _load_file(
    datasets: Any, path: Path, builder: str, spec: DatasetSpec, crash_guard: bool
) -> Any:
    if crash_guard:
        _prepare_in_child(builder, path, spec)
    return datasets.load_dataset(builder, data_files=str(path), split="train")


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
        raise DatasetError(_crash_message(spec, -child.returncode))
    # any other failure is reported by the parent's own load, with its message


def _crash_message(spec: DatasetSpec, signal_number: int) -> str:
    import signal

    try:
        name = signal.Signals(signal_number).name
    except ValueError:
        name = str(signal_number)
    if spec.is_hub:
        return (
            f"--dataset {spec.id_or_path!r}: loading it crashed the Arrow reader (signal "
            f"{signal_number}, {name}); download the data files and pass one with --dataset"
        )
    return (
        f"--dataset {spec.id_or_path!r}: the file crashed the Arrow reader (signal "
        f"{signal_number}, {name}); check that every line is one JSON object and that each "
        "column keeps one type"
    )


def _explain_load_failure(spec: DatasetSpec, exc: BaseException) -> str:
    innermost = exc
    while innermost.__cause__ is not None or innermost.__context__ is not None:
        innermost = innermost.__cause__ or innermost.__context__  # type: ignore[assignment]
    exc = innermost  # datasets wraps the useful message ("JSON parse error ... in row 1")
    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    if "corresponds to no data" in first_line:  # datasets' words for a file with no rows
        return f"--dataset {spec.id_or_path!r}: the dataset has no rows"
    if not spec.is_hub:
        reason = f"{type(exc).__name__}: {first_line}"
        return f"--dataset {spec.id_or_path!r}: cannot read the file ({reason})"
    offline = _offline_switch(os.environ)
    if offline is not None:
        # datasets' own words name its cache option, often None ("is not cached in None")
        return _offline_not_cached(spec, offline, os.environ)
    return (
        f"--dataset {spec.id_or_path!r}: cannot load it from the Hugging Face hub "
        f"({type(exc).__name__}: {first_line}); {_alternatives()}"
    )


# -- the row store -------------------------------------------------------------------------------


def default_rows_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/mimicry-evals/rows``, else ``~/.cache/mimicry-evals/rows``."""
    env = os.environ if environ is None else environ
    return Path(env.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "mimicry-evals" / "rows"


class RowStore:
    """The rows of a dataset as ``datasets`` returned them, read from a memory-mapped file.

    ``store[i]`` is row ``i`` (a new dict each time); ``ids`` the rows' ``id`` values;
    ``prompt_chars(i)`` is ``len(str(store[i]))``; ``longest`` the largest of those. Opening and
    reading import neither ``datasets``, ``pyarrow`` nor ``pandas``: only a row holding a value
    of another library's type imports that library when it is read (see ``value_types``).
    """

    def __init__(self, path: Path, mm: mmap.mmap, header: dict[str, Any]) -> None:
        self.path = path
        self._mm = mm
        self._header = header
        self._view = memoryview(mm)
        sections = header["sections"]
        self._offsets = self._view[slice(*sections["offsets"])].cast("Q")
        self._lengths = self._view[slice(*sections["lengths"])].cast("Q")
        self._ids: list[Any] | None = None
        self._unreadable: dict[int, str] | None = None

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> RowStore:
        """Open the store at ``path``; raise :class:`RowStoreError` if it is missing or damaged."""
        store_path = Path(path)
        try:
            with store_path.open("rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size < 2 * len(_MAGIC) + _TRAILER.size:
                    raise RowStoreError(_damaged(store_path, f"{size} bytes, too short"))
                mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except FileNotFoundError:
            raise RowStoreError(
                f"row store {str(store_path)!r}: no such file (removed during the run?); run "
                "again to rebuild it from the dataset"
            ) from None
        except OSError as exc:
            raise RowStoreError(
                f"row store {str(store_path)!r}: cannot be opened ({exc.strerror or exc}); "
                "check its permissions"
            ) from None
        try:
            header = _read_header(store_path, mm)
            return cls(store_path, mm, header)
        except BaseException:
            mm.close()
            raise

    def close(self) -> None:
        """Unmap the file (rows already read stay valid)."""
        self._offsets.release()
        self._lengths.release()
        self._view.release()
        self._mm.close()

    def __enter__(self) -> RowStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __len__(self) -> int:
        return int(self._header["n_rows"])

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Row ``index`` (negative counts from the end); :class:`DatasetError` if unreadable."""
        n_rows = len(self)
        position = index + n_rows if index < 0 else index
        if not 0 <= position < n_rows:
            raise IndexError(f"row {index} out of range: the store has {n_rows} rows")
        if self._lengths[position] == 0:
            raise DatasetError(self._unreadable_message(position))
        row: dict[str, Any] = pickle.loads(
            self._view[self._offsets[position] : self._offsets[position + 1]]
        )
        return row

    def row(self, index: int) -> dict[str, Any]:
        """Row ``index``, as ``store[index]``."""
        return self[index]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))

    @property
    def column_names(self) -> list[str]:
        """The dataset's columns, in order."""
        return list(self._header["columns"])

    @property
    def ids(self) -> list[Any]:
        """Every row's ``id`` value, as ``datasets`` returned it (read on first use)."""
        if self._ids is None:
            self._load_meta()
        assert self._ids is not None
        return self._ids

    @property
    def prompt_lengths(self) -> Sequence[int]:
        """``len(str(row))`` of every row, read in place (0 marks a row that cannot be read)."""
        return self._lengths

    def prompt_chars(self, index: int) -> int:
        """``len(str(store[index]))``; :class:`DatasetError` for a row that cannot be read."""
        length = int(self._lengths[index])
        if length == 0:
            raise DatasetError(self._unreadable_message(index % len(self)))
        return length

    @property
    def longest(self) -> int:
        """The longest ``str(row)`` of all readable rows."""
        return int(self._header["longest"])

    def longest_of(self, indices: Iterable[int]) -> int:
        """The longest ``str(row)`` among ``indices``; :class:`DatasetError` names the first row
        among them that cannot be read."""
        lengths = self._lengths
        longest = 0
        for index in indices:
            length = lengths[index]
            if length == 0:
                raise DatasetError(self._unreadable_message(index))
            longest = max(longest, length)
        return int(longest)

    @property
    def unreadable(self) -> dict[int, str]:
        """Rows ``datasets`` could not give back: index to the error message for that row."""
        if self._unreadable is None:
            self._load_meta()
        assert self._unreadable is not None
        return self._unreadable

    @property
    def source(self) -> dict[str, Any]:
        """What the store was built from (its key): kind, path or id, split, versions."""
        return dict(self._header["key"])

    @property
    def value_types(self) -> list[str]:
        """Types of row values beyond Python's builtins (``module.name``); reading a row holding
        one imports its module (``pandas.Timestamp`` for ``timestamp[ns]`` columns)."""
        return list(self._header["value_types"])

    def _load_meta(self) -> None:
        meta = pickle.loads(self._view[slice(*self._header["sections"]["meta"])])
        self._ids = meta["ids"]
        self._unreadable = meta["unreadable"]

    def _unreadable_message(self, index: int) -> str:
        return self.unreadable.get(index, f"row {index} cannot be read")

    def __repr__(self) -> str:
        return f"RowStore({str(self.path)!r}, rows={len(self)})"


def _damaged(path: Path, reason: str) -> str:
    return (
        f"row store {str(path)!r} is damaged ({reason}); delete it and run again (it is rebuilt "
        "from the dataset)"
    )


def _read_header(path: Path, mm: mmap.mmap) -> dict[str, Any]:
    size = len(mm)
    if mm[: len(_MAGIC)] != _MAGIC or mm[size - len(_MAGIC) :] != _MAGIC:
        raise RowStoreError(_damaged(path, "not a row store, or cut short"))
    (header_len,) = _TRAILER.unpack_from(mm, size - len(_MAGIC) - _TRAILER.size)
    header_end = size - len(_MAGIC) - _TRAILER.size
    if not 0 < header_len <= header_end - len(_MAGIC):
        raise RowStoreError(_damaged(path, f"header length {header_len}"))
    try:
        header: dict[str, Any] = json.loads(mm[header_end - header_len : header_end])
        sections = header["sections"]
        n_rows = int(header["n_rows"])
        spans_ok = all(
            len(span) == 2 and 0 <= span[0] <= span[1] <= header_end for span in sections.values()
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise RowStoreError(_damaged(path, f"unreadable header: {exc}")) from None
    if header.get("format") != STORE_FORMAT:
        raise RowStoreError(_damaged(path, f"format {header.get('format')!r}, not {STORE_FORMAT}"))
    if header.get("byteorder") != sys.byteorder:
        raise RowStoreError(
            _damaged(path, f"written on a {header.get('byteorder')}-endian machine")
        )
    offsets, lengths = sections["offsets"], sections["lengths"]
    if (
        not spans_ok
        or offsets[1] - offsets[0] != 8 * (n_rows + 1)
        or lengths[1] - lengths[0] != 8 * n_rows
    ):
        raise RowStoreError(_damaged(path, "inconsistent sections"))
    return header


@dataclass(frozen=True)
class _Unreadable:
    """A row ``datasets`` raised on: the message for the user."""

    message: str


def write_row_store(
    rows: Iterable[dict[str, Any] | _Unreadable],
    target: Path,
    *,
    key: Mapping[str, Any],
    columns: Sequence[str],
    ids: Callable[[int, dict[str, Any] | None], Any],
) -> Path:
    """Write ``rows`` (in order) to a store at ``target``, atomically.

    The file is written under a temporary name in the same folder, flushed to disk and renamed:
    a reader sees the whole store or none, and a killed writer leaves only a temporary file that
    nothing trusts. ``ids(index, row)`` gives a row's id (``row`` is None for an unreadable row).
    """
    import secrets

    temporary = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    offsets, lengths = array("Q"), array("Q")
    all_ids: list[Any] = []
    unreadable: dict[int, str] = {}
    types: set[str] = set()
    longest = 0
    try:
        with temporary.open("wb") as fh:
            fh.write(_MAGIC)
            position = len(_MAGIC)
            for index, row in enumerate(rows):
                offsets.append(position)
                if isinstance(row, _Unreadable):
                    lengths.append(0)
                    unreadable[index] = row.message
                    all_ids.append(ids(index, None))
                    continue
                data = pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL)
                length = len(str(row))
                fh.write(data)
                position += len(data)
                lengths.append(length)
                longest = max(longest, length)
                all_ids.append(ids(index, row))
                _collect_types(row, types)
            offsets.append(position)
            position += _pad(fh, position)
            sections: dict[str, tuple[int, int]] = {}
            for name, blob in (
                ("offsets", offsets.tobytes()),
                ("lengths", lengths.tobytes()),
                ("meta", pickle.dumps({"ids": all_ids, "unreadable": unreadable}, protocol=5)),
            ):
                fh.write(blob)
                sections[name] = (position, position + len(blob))
                position += len(blob)
                position += _pad(fh, position)
            header = json.dumps(
                {
                    "format": STORE_FORMAT,
                    "byteorder": sys.byteorder,
                    "key": dict(key),
                    "n_rows": len(lengths),
                    "columns": list(columns),
                    "longest": longest,
                    "unreadable_rows": len(unreadable),
                    "value_types": sorted(types),
                    "sections": sections,
                },
                sort_keys=True,
            ).encode()
            fh.write(header)
            fh.write(_TRAILER.pack(len(header)))
            fh.write(_MAGIC)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, target)
        _fsync_dir(target.parent)
    finally:
        temporary.unlink(missing_ok=True)
    return target


def _pad(fh: Any, position: int) -> int:
    """Align the next section to 8 bytes (the arrays are read in place)."""
    padding = -position % 8
    fh.write(b"\0" * padding)
    return padding


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_PLAIN_TYPES: Final = (str, int, float, bool, type(None), bytes)


def _collect_types(value: Any, types: set[str]) -> None:
    """Add the types beyond builtins found in ``value`` (walked through dicts, lists, tuples)."""
    kind = type(value)
    if kind in _PLAIN_TYPES:
        return
    if kind is dict:
        for item in value.values():
            _collect_types(item, types)
    elif kind is list or kind is tuple:
        for item in value:
            _collect_types(item, types)
    elif kind.__module__ != "builtins":
        types.add(f"{kind.__module__}.{kind.__qualname__}")


# -- building and finding stores -----------------------------------------------------------------


def source_key(spec: DatasetSpec) -> dict[str, Any]:
    """The key of a file's or the bundled sample's store, computed without ``datasets``.

    A local file: its resolved path, size, mtime_ns, builder, the split and the datasets version;
    the bundled sample: the package version, the file's sha256, the split and the datasets
    version (its rows are what that version returns). Hub datasets are keyed when loaded
    (:func:`_hub_key`). Raises :class:`DatasetError` for a missing or unsupported file.
    """
    from importlib.metadata import version

    common = {"format": STORE_FORMAT, "split": spec.split, "datasets": version("datasets")}
    if spec.bundled:
        from mimicry import __version__

        digest = hashlib.sha256(bundled_sample_file().read_bytes()).hexdigest()
        return {"kind": "sample", "package": __version__, "sha256": digest, **common}
    path = spec.local_path
    if path is None:
        raise ValueError(f"{spec!r}: a hub dataset is keyed by its fingerprint, once loaded")
    builder = _builder_for(path, spec)
    try:
        resolved = path.resolve(strict=True)
        stat = resolved.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise DatasetError(f"--dataset {spec.id_or_path!r}: no such file") from None
    if not resolved.is_file():
        raise DatasetError(f"--dataset {spec.id_or_path!r}: no such file (it is a folder)")
    return {
        "kind": "file",
        "path": str(resolved),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "builder": builder,
        **common,
    }


def _hub_key(spec: DatasetSpec, ds: Any) -> dict[str, Any]:
    import datasets

    fingerprint = getattr(ds, "_fingerprint", None) or repr(
        sorted(f["filename"] for f in ds.cache_files)
    )
    return {
        "format": STORE_FORMAT,
        "kind": "hub",
        "id": spec.id_or_path,
        "split": spec.split,
        "fingerprint": fingerprint,
        "datasets": datasets.__version__,
    }


def store_path(directory: Path, key: Mapping[str, Any]) -> Path:
    """Where the store of ``key`` lives: ``<kind>-<file or dataset name>-<key hash>.rows``."""
    digest = hashlib.sha256(json.dumps(dict(key), sort_keys=True).encode()).hexdigest()[:32]
    kind = str(key["kind"])
    name = {"file": Path(str(key.get("path"))).stem, "hub": str(key.get("id")).split("/")[-1]}
    label = re.sub(r"[^A-Za-z0-9._-]+", "-", name.get(kind, ""))[:40].strip("-.")
    return directory / f"{'-'.join(filter(None, (kind, label, digest)))}{STORE_SUFFIX}"


def _open_existing(path: Path, key: Mapping[str, Any]) -> RowStore | None:
    """The store at ``path`` if it is whole and was built from ``key``; else None."""
    if not path.is_file():
        return None
    try:
        store = RowStore.open(path)
    except RowStoreError:
        return None
    if store.source != dict(key):
        store.close()
        return None
    return store


def open_rows(
    dataset: DatasetChoice | DatasetSpec,
    *,
    rows_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> RowStore:
    """The dataset's row store: reused when its source is unchanged, else built first.

    A local file or the bundled sample is keyed without ``datasets`` (see :func:`source_key`): an
    existing store opens in milliseconds and nothing heavy is imported. Otherwise (and always for
    a hub dataset, keyed by its fingerprint) a child process loads the dataset with ``datasets``
    and writes the store; a crash there (pyarrow's JSON reader on some malformed files) is one
    clear error. ``rows_dir`` defaults to :func:`default_rows_dir`; ``environ`` (default
    ``os.environ``) is the child's environment. A :class:`DatasetSpec` is chosen as named (see
    :func:`choose_dataset`). Raises :class:`DatasetError`.
    """
    env = dict(os.environ if environ is None else environ)
    choice = (
        dataset
        if isinstance(dataset, DatasetChoice)
        else choose_dataset(dataset.id_or_path, dataset.split, env)
    )
    directory = rows_dir if rows_dir is not None else default_rows_dir(env)
    if not choice.spec.is_hub:
        key = source_key(choice.spec)
        existing = _open_existing(store_path(directory, key), key)
        if existing is not None:
            return existing
    path = _build_in_child(choice, directory, env, rows_dir_given=rows_dir is not None)
    return RowStore.open(path)


_RESULT_MARK: Final = "mimicry-rows-result: "
_BUILD_CHILD: Final = (
    "import sys\nfrom mimicry.dataset import _build_main\nsys.exit(_build_main(sys.argv[1]))\n"
)


def _build_in_child(
    choice: DatasetChoice, directory: Path, env: Mapping[str, str], *, rows_dir_given: bool
) -> Path:
    import subprocess

    spec = choice.spec
    request = {
        "id_or_path": spec.id_or_path,
        "split": spec.split,
        "rows_dir": str(directory),
        "rows_dir_given": rows_dir_given,
    }
    child_env = dict(env)
    if choice.hub_offline:
        child_env["HF_HUB_OFFLINE"] = "1"
    # the child imports this very package, wherever it was imported from
    package_root = str(Path(__file__).resolve().parent.parent)
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_root, child_env.get("PYTHONPATH", "")) if p
    )
    child = subprocess.run(
        [sys.executable, "-c", _BUILD_CHILD, json.dumps(request)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=child_env,
        check=False,
    )
    if child.returncode < 0:
        raise DatasetError(_crash_message(spec, -child.returncode))
    marked = [line for line in child.stdout.splitlines() if line.startswith(_RESULT_MARK)]
    if not marked:
        last = (child.stderr.strip().splitlines() or [f"exit status {child.returncode}"])[-1]
        raise DatasetError(
            f"--dataset {spec.id_or_path!r}: preparing its rows failed ({last[:300]})"
        )
    result = json.loads(marked[-1][len(_RESULT_MARK) :])
    if "error" in result:
        raise DatasetError(str(result["error"]))
    return Path(result["path"])


def _build_main(request_json: str) -> int:
    """The child of :func:`open_rows`: load with ``datasets``, write the store, print its path."""
    request = json.loads(request_json)
    spec = DatasetSpec(request["id_or_path"], request["split"])
    try:
        path = _build_store(spec, Path(request["rows_dir"]), bool(request["rows_dir_given"]))
        result = {"path": str(path)}
    except DatasetError as exc:
        result = {"error": str(exc)}
    sys.stdout.write(_RESULT_MARK + json.dumps(result) + "\n")
    return 0


def _build_store(spec: DatasetSpec, directory: Path, rows_dir_given: bool) -> Path:
    """Load ``spec`` with ``datasets`` and write its store unless a valid one exists."""
    from filelock import FileLock

    key = None if spec.is_hub else source_key(spec)
    ds = _load_dataset(spec, crash_guard=False)  # this process is the crash guard
    if key is None:
        key = _hub_key(spec, ds)
    elif source_key(spec) != key:
        raise DatasetError(
            f"--dataset {spec.id_or_path!r}: the file changed while it was read; run again "
            "once it is complete"
        )
    target = store_path(directory, key)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{target}.lock"):
            existing = _open_existing(target, key)  # another process built it meanwhile
            if existing is not None:
                existing.close()
                return target
            for leftover in directory.glob(f".{target.name}.*.tmp"):
                leftover.unlink(missing_ok=True)  # from a killed builder (we hold the lock)
            store_dataset(ds, target, key=key, spec=spec)
    except OSError as exc:
        fix = (
            "choose a writable rows directory"
            if rows_dir_given
            else "set XDG_CACHE_HOME to a writable folder"
        )
        raise DatasetError(
            f"--dataset {spec.id_or_path!r}: cannot write its row store in {str(directory)!r} "
            f"({exc.strerror or exc}); {fix}"
        ) from None
    return target


def store_dataset(ds: Any, target: Path, *, key: Mapping[str, Any], spec: DatasetSpec) -> Path:
    """Write every row of ``ds`` (a ``datasets.Dataset``) as it returns them to a store at
    ``target`` (see :func:`write_row_store`); a row it cannot give back is recorded as such and
    raises :class:`DatasetError` when read. ``spec`` names the dataset in messages."""
    return write_row_store(
        _dataset_rows(ds, spec), target, key=key, columns=ds.column_names, ids=_id_reader(ds, spec)
    )


#: Rows read per slice when building a store.
_BATCH_ROWS: Final = 1000


def _dataset_rows(ds: Any, spec: DatasetSpec) -> Iterator[dict[str, Any] | _Unreadable]:
    """Every row of ``ds`` as ``datasets`` returns it; a row it raises on becomes _Unreadable.

    ``ds[i]`` formats one row as ``ds[a:b]`` formats each row of a slice (the same Arrow to
    Python conversion), then decodes it; features that need no decoding (plain values, lists,
    dicts) decode to themselves, so for those the rows are read by slices, 20 times faster.
    Features that decode (images, audio) are read row by row, exactly as ``ds[i]``.
    """
    from datasets.features.features import require_decoding

    if any(require_decoding(feature) for feature in ds.features.values()):
        yield from _rows_one_by_one(ds, spec, range(len(ds)))
        return
    columns = list(ds.column_names)
    for start in range(0, len(ds), _BATCH_ROWS):
        stop = min(start + _BATCH_ROWS, len(ds))
        try:
            batch = ds[start:stop]
        except Exception:  # noqa: BLE001 - some row of the slice cannot be given back: find it
            yield from _rows_one_by_one(ds, spec, range(start, stop))
            continue
        for values in zip(*(batch[c] for c in columns), strict=True):
            yield dict(zip(columns, values, strict=True))


def _rows_one_by_one(
    ds: Any, spec: DatasetSpec, indices: range
) -> Iterator[dict[str, Any] | _Unreadable]:
    for index in indices:
        try:
            row = ds[index]
        except Exception as exc:  # noqa: BLE001 - a row Arrow stored but cannot give back
            yield _Unreadable(_unreadable_row(index, exc, spec))
        else:
            yield row


def _id_reader(ds: Any, spec: DatasetSpec) -> Callable[[int, dict[str, Any] | None], Any]:
    def read_id(index: int, row: dict[str, Any] | None) -> Any:
        if row is not None:
            return row.get("id")
        try:
            return ds.select_columns(["id"])[index]["id"]
        except Exception as exc:  # noqa: BLE001
            raise DatasetError(
                f"--dataset {spec.id_or_path!r}: the id of row {index} cannot be read "
                f"({type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}); fix or "
                "drop that row"
            ) from None

    return read_id


# -- choosing the samples ------------------------------------------------------------------------


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
    """The longest ``str(row)`` among the selected rows.

    From a :class:`RowStore`, its stored lengths; from a ``datasets.Dataset``, the rows read
    column-wise in batches.
    """
    if isinstance(ds, RowStore):
        return ds.longest_of(indices)
    longest = 0
    batch = 1024
    for start in range(0, len(indices), batch):
        chunk = indices[start : start + batch]
        try:
            rows = [f"{row}" for row in ds.select(chunk)]
        except Exception as exc:  # noqa: BLE001 - a row Arrow stored but cannot give back
            raise DatasetError(_first_unreadable(ds, chunk, exc, spec)) from None
        longest = max([longest, *map(len, rows)])
    return longest


def _first_unreadable(
    ds: Any, chunk: Sequence[int], exc: Exception, spec: DatasetSpec | None
) -> str:
    """Name the first row of ``chunk`` that cannot be read, and why."""
    for index in chunk:
        try:
            f"{ds[index]}"
        except Exception as row_exc:  # noqa: BLE001
            exc = row_exc
            break
    else:
        index = chunk[0]
    return _unreadable_row(index, exc, spec)


def _unreadable_row(index: int, exc: BaseException, spec: DatasetSpec | None) -> str:
    detail = (str(exc).splitlines() or [""])[0][:200]
    where = f"--dataset {spec.id_or_path!r}" if spec is not None else "--dataset"
    return (
        f"{where}: row {index} cannot be read ({type(exc).__name__}: {detail}); "
        "fix or drop that row"
    )
