"""Fixtures for the embedded server's tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from mimicry.embedded import EmbeddedServer, EmbeddedSpec, embedded_available

# Small slots keep the session's server light; two slots let requests run side by side.
# One thread: llama.cpp's threads slow down badly when pytest wants the CPUs too.
TEST_SPEC = EmbeddedSpec(parallel=2, ctx_size=2048, threads=1)


@pytest.fixture(scope="session")
def embedded_server() -> Iterator[EmbeddedServer]:
    """The embedded server with the bundled SmolLM2 (2 slots of 2048 tokens), one per session.

    Skipped, with the install command, where the [embedded] extra or the model is missing.
    """
    reason = embedded_available()
    if reason is not None:
        pytest.skip(reason)
    with EmbeddedServer(TEST_SPEC) as server:
        yield server


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Undo the logging setup of an in-process `mimicry-serve` main() call."""
    saved = {
        name: (logger.handlers[:], logger.level, logger.propagate)
        for name in ("mimicry", "uvicorn", "uvicorn.access")
        for logger in [logging.getLogger(name)]
    }
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
