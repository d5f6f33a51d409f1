"""What the preflight would learn from an embedded server, learned without starting one.

A run whose replies are all cached, or that only replays them, needs the model's facts (the
digest keys the response cache) but no model: `embedded_model_info` reads them from the GGUF file
itself, and remembers the file's sha256 across processes so a repeat costs a `stat` and a
small JSON read instead of hashing the whole file.
"""

from __future__ import annotations

from pathlib import Path

from mimicry.embedded.launcher import EmbeddedSpec
from mimicry.embedded.model import (
    bundled_gguf_path,
    default_model_name,
    model_facts,
    normalize_model_name,
    server_version,
)


def embedded_model_info(spec: EmbeddedSpec, *, cache_dir: Path | None = None) -> dict[str, object]:
    """What `ModelClient.preflight(...).to_dict()` returns for `EmbeddedServer(spec)`, without
    starting it: the same name, digest (the GGUF file's sha256, as `/api/tags` lists it),
    context length (the one the model was trained for, as `/api/show` reports it), family,
    parameter size, quantization and server version, under the same keys.

    Nothing is started and llama.cpp is not needed (only the model file). The sha256 and the
    GGUF metadata are remembered in `cache_dir` (default: `$XDG_CACHE_HOME/mimicry-evals`, else
    `~/.cache/mimicry-evals`), keyed by the file's path, size and modification time. Raises
    `ModelFileError` (an `OSError`, naming the fix) when the model file is missing or not a
    GGUF file, and `ValueError` for a model name the server would refuse.
    """
    from mimicry.client import ModelInfo

    name = normalize_model_name(spec.model_name or default_model_name(spec.gguf))
    gguf = spec.gguf if spec.gguf is not None else bundled_gguf_path()
    facts = model_facts(gguf, cache_dir)
    info = ModelInfo(
        name=name,
        digest=facts.sha256,
        context_length=facts.context_length,
        family=facts.family,
        parameter_size=facts.parameter_size,
        quantization=facts.quantization_level,
        server_version=server_version(),
    )
    return info.to_dict()
