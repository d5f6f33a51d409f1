from __future__ import annotations

import multiprocessing
import sqlite3
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest

from mimicry.cache import CacheWarning, ResponseCache, cache_key

MESSAGES = [{"role": "user", "content": "{'id': 1}"}]


def test_key_depends_on_digest_options_and_messages() -> None:
    base = cache_key(model_digest="a", options={"seed": 1}, messages=MESSAGES)

    assert base == cache_key(model_digest="a", options={"seed": 1}, messages=MESSAGES)
    assert base != cache_key(model_digest="b", options={"seed": 1}, messages=MESSAGES)
    assert base != cache_key(model_digest="a", options={"seed": 2}, messages=MESSAGES)
    assert base != cache_key(
        model_digest="a", options={"seed": 1}, messages=[{"role": "user", "content": "x"}]
    )


def test_key_accepts_lone_surrogates() -> None:
    assert (
        len(
            cache_key(
                model_digest="a", options={}, messages=[{"role": "user", "content": "\ud800"}]
            )
        )
        == 64
    )


def test_put_get_roundtrip(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path)
    cache.put("k", {"content": "{'id': 2", "eval_count": 3})

    assert ResponseCache(tmp_path).get("k") == {"content": "{'id': 2", "eval_count": 3}
    assert cache.get("missing") is None
    assert len(cache) == 1


def test_corrupted_file_is_set_aside_with_a_warning(tmp_path: Path) -> None:
    first = ResponseCache(tmp_path)
    first.put("k", {"content": "x"})
    first.close()
    (tmp_path / "replies.sqlite3").write_bytes(b"this is not a database" * 100)

    with pytest.warns(CacheWarning, match="was unreadable"):
        cache = ResponseCache(tmp_path)

    assert cache.get("k") is None
    assert list(tmp_path.glob("replies.sqlite3.corrupt-*"))


def test_damaged_entry_is_dropped_not_served(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path)
    conn = sqlite3.connect(tmp_path / "replies.sqlite3")
    conn.execute("INSERT INTO replies VALUES ('k', '{\"content\": tru', 0)")
    conn.commit()
    conn.close()

    with pytest.warns(CacheWarning, match="damaged reply"):
        assert cache.get("k") is None
    assert cache.get("k") is None  # dropped: no second warning needed


def _writer(directory: str, worker: int, n: int) -> None:
    cache = ResponseCache(Path(directory))
    for i in range(n):
        key = f"{i:04d}"
        with cache.lock(key):
            if cache.get(key) is None:
                cache.put(key, {"content": f"from {worker}", "i": i})


def test_concurrent_writers_store_each_key_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 200)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)

    assert [p.exitcode for p in procs] == [0] * 8
    cache = ResponseCache(tmp_path)
    assert len(cache) == 200
    assert all(cache.get(f"{i:04d}")["i"] == i for i in range(200))  # type: ignore[index]


def _endless_writer(directory: str, writing: Event) -> None:
    cache = ResponseCache(Path(directory))
    i = 0
    while True:
        cache.put(f"k{i}", {"content": "x" * 10_000, "i": i})
        i += 1
        if i == 50:
            writing.set()  # well into its writes, and it goes on writing


def test_a_process_killed_while_writing_leaves_a_consistent_cache(tmp_path: Path) -> None:
    import os
    import signal

    ctx = multiprocessing.get_context("spawn")
    writing = ctx.Event()
    proc = ctx.Process(target=_endless_writer, args=(str(tmp_path), writing))
    proc.start()
    assert writing.wait(60), "the writer never got going"
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)

    cache = ResponseCache(tmp_path)  # opens with quick_check: no warning, nothing set aside
    stored = len(cache)
    assert stored > 0
    assert all(cache.get(f"k{i}") == {"content": "x" * 10_000, "i": i} for i in range(stored))
    assert not list(tmp_path.glob("*.corrupt-*"))
