"""The persistent response cache: one model reply per key, shared by all workers of a run.

A key is the SHA-256 of everything that determines the reply: the model digest (not its tag), the
server-side options and the exact messages. Replies live in one SQLite file (WAL mode), so
concurrent writers from many xdist workers and a process killed mid-write cannot corrupt it;
a file that is corrupted anyway is detected at open, set aside with a warning and replaced. A
per-key file lock makes sure that concurrent workers ask the model once per key: the first takes
the lock and asks, the others wait and then read the stored reply.

Errors are never cached: only a reply that the caller hands to :meth:`ResponseCache.put` is.

What was set aside is said through ``on_problem`` when the owner passes one (an eval run prints
it in its summary: a warning raised in its prefetching thread would escape pytest's warnings
capture, and under ``-W error`` kill that thread), else as a :class:`CacheWarning`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from filelock import FileLock

SCHEMA_VERSION = 2  # 2: num_ctx left out of the key and kept beside the reply
_LOCK_BUCKETS_HEX = 3  # 4096 lock files at most: per-key locking without a file per key


class CacheWarning(UserWarning):
    """Something in the cache was wrong and was set aside (never served)."""


def cache_key(
    *, model_digest: str, options: Mapping[str, object], messages: Sequence[Mapping[str, str]]
) -> str:
    """The key of one request: SHA-256 over a canonical JSON of digest, options and messages."""
    payload = {
        "v": SCHEMA_VERSION,
        "model_digest": model_digest,
        "options": dict(options),
        "messages": [dict(m) for m in messages],
    }
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


class ResponseCache:
    """Replies keyed by :func:`cache_key`, stored in ``<directory>/replies.sqlite3``."""

    def __init__(
        self,
        directory: Path,
        *,
        busy_timeout_s: float = 60.0,
        on_problem: Callable[[str], None] | None = None,
    ) -> None:
        self.directory = directory
        self._on_problem = on_problem
        self.path = directory / "replies.sqlite3"
        self._lock_dir = directory / "locks"
        self._busy_timeout_s = busy_timeout_s
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_dir.mkdir(exist_ok=True)
        self._db_lock = threading.Lock()
        self._conn = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect_and_check()
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            with contextlib.suppress(OSError):
                self.path.replace(aside)
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(OSError):
                    self.path.with_name(self.path.name + suffix).unlink()
            self._problem(
                f"the response cache {str(self.path)!r} was unreadable ({exc}); it was moved to "
                f"{str(aside)!r} and a new one started, so replies will be asked again"
            )
            return self._connect_and_check()

    def _connect_and_check(self) -> sqlite3.Connection:
        # one connection shared by this process's threads (prefetching), serialized by _db_lock
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout_s,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS replies ("
                " key TEXT PRIMARY KEY, value TEXT NOT NULL, stored_at REAL NOT NULL)"
            )
            # failures are kept for the run that saw them only, so that every test of a sample
            # in that run sees the same outcome; a later run asks again
            conn.execute(
                "CREATE TABLE IF NOT EXISTS failures ("
                " key TEXT NOT NULL, run_id TEXT NOT NULL, reason TEXT NOT NULL,"
                " PRIMARY KEY (key, run_id))"
            )
            row = conn.execute("PRAGMA quick_check").fetchone()
            if row is None or row[0] != "ok":
                raise sqlite3.DatabaseError(f"quick_check said {row!r}")
        except BaseException:
            conn.close()
            raise
        return conn

    def get(self, key: str) -> dict[str, object] | None:
        """The stored reply for ``key``, or None. A damaged entry is dropped with a warning."""
        with self._db_lock:
            row = self._conn.execute("SELECT value FROM replies WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            value = json.loads(row[0])
            if not isinstance(value, dict):
                raise ValueError(f"expected an object, got {type(value).__name__}")
        except ValueError as exc:
            self.discard(key, reason=str(exc))
            return None
        return value

    def put(self, key: str, value: Mapping[str, object]) -> None:
        """Store (or replace) the reply for ``key``; atomic, durable against a killed process."""
        # ensure_ascii: a reply may hold a lone surrogate (a server can send one, escaped in its
        # JSON, and the client passes it on), which SQLite's UTF-8 text cannot; escaped, it is
        # stored and read back as it came
        text = json.dumps(dict(value), ensure_ascii=True)
        with self._db_lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO replies (key, value, stored_at) VALUES (?, ?, ?)",
                (key, text, time.time()),
            )

    def put_failure(self, key: str, run_id: str, reason: str) -> None:
        """Remember, for this run only, that asking for ``key`` failed and why."""
        with self._db_lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO failures (key, run_id, reason) VALUES (?, ?, ?)",
                (key, run_id, reason),
            )

    def get_failure(self, key: str, run_id: str) -> str | None:
        """Why asking for ``key`` failed earlier in this run, or None."""
        with self._db_lock:
            row = self._conn.execute(
                "SELECT reason FROM failures WHERE key = ? AND run_id = ?", (key, run_id)
            ).fetchone()
        return None if row is None else str(row[0])

    def drop_failures(self, run_id: str) -> None:
        """Forget a finished run's failures."""
        with self._db_lock:
            self._conn.execute("DELETE FROM failures WHERE run_id = ?", (run_id,))

    def discard(self, key: str, *, reason: str) -> None:
        """Drop a damaged entry so it is asked again, and say so."""
        with self._db_lock:
            self._conn.execute("DELETE FROM replies WHERE key = ?", (key,))
        self._problem(
            f"a damaged reply in the response cache was dropped and will be asked again "
            f"(key {key[:12]}…: {reason})"
        )

    def _problem(self, message: str) -> None:
        """Say what was set aside: to ``on_problem``, else as a warning (may run in any thread)."""
        if self._on_problem is not None:
            self._on_problem(message)
        else:
            # the caller's caller: the code that opened the cache or asked for the entry
            warnings.warn(message, CacheWarning, stacklevel=4)

    def __len__(self) -> int:
        with self._db_lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM replies").fetchone()[0])

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold the cross-process lock for ``key`` (shared by keys with the same prefix)."""
        with FileLock(str(self._lock_dir / f"{key[:_LOCK_BUCKETS_HEX]}.lock")):
            yield

    def close(self) -> None:
        with self._db_lock:
            self._conn.close()
