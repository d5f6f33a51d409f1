"""The embedded model: Ollama's HTTP API in front of llama.cpp, serving a bundled SmolLM2.

Importing this package is cheap: llama.cpp, Starlette and uvicorn (the `[embedded]` extra)
are imported only by the server process itself.
"""

from __future__ import annotations

from mimicry.embedded.info import embedded_model_info
from mimicry.embedded.launcher import (
    EmbeddedServer,
    EmbeddedServerError,
    EmbeddedSpec,
    embedded_available,
    slots_for,
)
from mimicry.embedded.model import BUNDLED_MODEL_NAME, ModelFileError, default_cache_dir

__all__ = [
    "BUNDLED_MODEL_NAME",
    "EmbeddedServer",
    "EmbeddedServerError",
    "EmbeddedSpec",
    "ModelFileError",
    "default_cache_dir",
    "embedded_available",
    "embedded_model_info",
    "slots_for",
]
