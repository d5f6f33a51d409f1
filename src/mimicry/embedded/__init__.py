"""The embedded model: Ollama's HTTP API in front of llama.cpp, serving a bundled SmolLM2.

Importing this package is cheap: llama.cpp, Starlette and uvicorn (the `[embedded]` extra)
are imported only by the server process itself.
"""

from __future__ import annotations

from mimicry.embedded.launcher import (
    EmbeddedServer,
    EmbeddedServerError,
    EmbeddedSpec,
    embedded_available,
)
from mimicry.embedded.model import BUNDLED_MODEL_NAME

__all__ = [
    "BUNDLED_MODEL_NAME",
    "EmbeddedServer",
    "EmbeddedServerError",
    "EmbeddedSpec",
    "embedded_available",
]
