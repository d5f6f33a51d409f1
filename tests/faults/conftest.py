"""Fixtures of the fault tests: the fake Ollama server with scripted faults, and the eval suite
under pytester."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mimicry.testing import FakeModel, FaultyOllama
from tests.conftest import REAL_ROWS_JSONL
from tests.plugin import conftest as plugin_conftest
from tests.plugin.conftest import SHORT_SAMPLE_IDS, Suite

#: The eval suite in a fresh pytester directory: the same fixture as tests/plugin's.
suite = plugin_conftest.suite

#: Three more short real rows, for tests that script one fault per sample.
MORE_SAMPLE_IDS = "370945,1491225,481524"
CACHE_DIR = "replies-cache"
CACHE_FILE = "replies.sqlite3"


@pytest.fixture
def fault_server() -> Iterator[FaultyOllama]:
    """A fake Ollama server (``mimicry.testing.FaultyOllama``) on a free loopback port: it
    answers like Ollama, with imitating replies, until a test scripts faults.

    Stopped at the end of the test, which then fails if the server's own code raised.
    """
    server = FaultyOllama(FakeModel("fault-model:1b")).start()
    try:
        yield server
    finally:
        server.stop()
    server.check()


def run_args(
    server: FaultyOllama,
    suite: Suite,
    *extra: str,
    ids: str = SHORT_SAMPLE_IDS,
    timeout: float = 5.0,
    retries: int = 1,
) -> list[str]:
    """Arguments of a run against ``server`` with a known cache folder and report file."""
    return [
        f"--ollama-host={server.url}",
        f"--model={server.model.name}",
        f"--dataset={REAL_ROWS_JSONL}",
        f"--sample-ids={ids}",
        f"--request-timeout={timeout}",
        f"--retries={retries}",
        f"--response-cache-dir={cache_dir(suite)}",
        "--report-json=r.json",
        *extra,
    ]


def cache_dir(suite: Suite) -> Path:
    """The response cache folder the runs of :func:`run_args` use."""
    return suite.pytester.path / CACHE_DIR


def cached_rows(suite: Suite) -> int:
    """How many replies the response cache file holds (read directly, not through the cache)."""
    conn = sqlite3.connect(cache_dir(suite) / CACHE_FILE)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM replies").fetchone()[0])
    finally:
        conn.close()


def by_id(report: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """The report's samples by (int) id."""
    return {int(s["id"]): s for s in report["samples"]}


def assert_no_traceback(result: pytest.RunResult) -> None:
    """A fault is a message, never a traceback or an internal error."""
    text = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in text, text
    assert "During handling of the above exception" not in text, text
    assert "INTERNALERROR" not in text, text
