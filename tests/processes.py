"""Waiting for processes to end, on events rather than polling (Linux pidfds)."""

from __future__ import annotations

import contextlib
import os
import select
import time
from collections.abc import Sequence


def wait_gone(pids: Sequence[int], timeout: float) -> list[int]:
    """Wait for each process to end (its pidfd becomes readable then, zombies included); the
    pids still running after ``timeout``."""
    fds: dict[int, int] = {}
    try:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                fds[os.pidfd_open(pid)] = pid
        deadline = time.monotonic() + timeout
        while fds:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            ready, _, _ = select.select(list(fds), [], [], remaining)
            for fd in ready:
                os.close(fd)
                del fds[fd]
        return sorted(fds.values())
    finally:
        for fd in fds:
            os.close(fd)
