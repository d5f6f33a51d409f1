"""The default number of llama.cpp threads: one per usable CPU that other processes leave free."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mimicry.embedded import engine
from mimicry.embedded.engine import ThreadChoice, busy_cpus, default_threads, usable_cpus


@pytest.mark.parametrize(
    ("cpus", "busy", "threads"),
    [
        (2, 0.0, 2),  # idle: every CPU
        (2, 0.5, 2),  # half a CPU taken: two threads are still faster than one
        (2, 0.8, 1),  # a CPU mostly taken: leave it
        (2, 1.9, 1),  # both taken: one thread, never none
        (8, 2.6, 6),  # two CPUs taken, a third only 60%
        (1, 0.0, 1),
        (2, None, 2),  # no /proc/stat: assume the CPUs are free
    ],
)
def test_threads_leave_the_busy_cpus_alone(
    monkeypatch: pytest.MonkeyPatch, cpus: int, busy: float | None, threads: int
) -> None:
    monkeypatch.setattr(engine, "usable_cpus", lambda: list(range(cpus)))
    monkeypatch.setattr(engine, "busy_cpus", lambda cpus, seconds: busy)

    choice = default_threads()

    assert choice == ThreadChoice(threads=threads, cpus=cpus, busy=busy)
    assert f"{cpus} CPU(s) usable" in choice.describe()


def test_busy_cpus_leaves_out_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # Over the window, 3 of 4 jiffies busy on 2 CPUs (1.5 CPUs), 0.5 CPU of it this process's.
    readings: Iterator[tuple[int, int]] = iter([(100, 400), (400, 800)])
    clock: Iterator[float] = iter([10.0, 10.05])
    monkeypatch.setattr(engine, "_cpu_times", lambda cpus: next(readings))
    monkeypatch.setattr(engine.time, "process_time", lambda: next(clock))
    monkeypatch.setattr(engine.time, "sleep", lambda seconds: None)

    assert busy_cpus([0, 1], seconds=0.1) == pytest.approx(1.0)


def test_busy_cpus_is_unknown_without_proc_stat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "_cpu_times", lambda cpus: None)
    monkeypatch.setattr(engine.time, "sleep", lambda seconds: None)

    assert busy_cpus([0, 1], seconds=0.1) is None


def test_the_real_cpus_are_read() -> None:
    cpus = usable_cpus()

    assert cpus
    times = engine._cpu_times(cpus)
    assert times is None or 0 <= times[0] <= times[1]
