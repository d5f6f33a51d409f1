"""Ctrl-C during a run: a partial report marked incomplete, a consistent cache, exit status 2,
and no embedded server left behind. Run as a user would: pytest in its own process, SIGINT to
its whole process group (what a terminal's Ctrl-C does)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mimicry.embedded import embedded_available
from tests.conftest import REAL_ROWS_JSONL, REPO_ROOT
from tests.fake_ollama import FakeOllama
from tests.plugin.conftest import Suite
from tests.plugin.test_embedded_end_to_end import _children_serving


def _start(suite: Suite, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "evals", "-p", "no:randomly", *args],
        cwd=suite.pytester.path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, like a foreground job
    )


def _wait_for(condition: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the run to get going")
        time.sleep(0.05)


def _ctrl_c(proc: subprocess.Popen[bytes]) -> str:
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    # xdist's workers may outlive the controller by a moment: wait for the whole group to be
    # gone, so that no request of this run is counted as the next run's
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    return out.decode(errors="replace")


@pytest.mark.slow
@pytest.mark.parametrize("dist", [["-p", "no:xdist"], ["-n", "2"]], ids=["no-xdist", "n2"])
def test_ctrl_c_leaves_a_partial_report_and_a_usable_cache(suite: Suite, dist: list[str]) -> None:
    with FakeOllama(delay_s=0.3) as fake:
        args = [
            f"--ollama-host={fake.url}",
            f"--model={fake.model}",
            f"--dataset={REAL_ROWS_JSONL}",
            "--samples=all",
            "--report-json=r.json",
        ]
        proc = _start(suite, *dist, *args)
        _wait_for(lambda: fake.requests["/api/chat"] >= 4)
        out = _ctrl_c(proc)
        asked_before = fake.requests["/api/chat"]

        assert proc.returncode == 2, out
        report = json.loads((suite.pytester.path / "r.json").read_text())
        assert report["run"]["complete"] is False
        assert report["run"]["incomplete_reason"] == "interrupted"
        assert report["run"]["exit_status"] == 2
        done = [s for s in report["samples"] if s["status"] == "ok"]
        assert 1 <= len(done) < 32

        # the rerun asks the model only for what the first run did not get
        rerun = _start(suite, *dist, *args)
        out, _ = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, out.decode(errors="replace")
        asked_again = fake.requests["/api/chat"] - asked_before
        assert asked_again <= 32 - len(done)
        report = json.loads((suite.pytester.path / "r.json").read_text())
        assert report["run"]["complete"] is True
        assert sum(s["cached"] for s in report["samples"]) >= len(done)


@pytest.mark.slow
@pytest.mark.embedded
@pytest.mark.skipif(embedded_available() is not None, reason=f"embedded: {embedded_available()}")
def test_ctrl_c_leaves_no_embedded_server(suite: Suite) -> None:
    proc = _start(
        suite,
        "-n",
        "2",
        "--backend=embedded",
        f"--dataset={REAL_ROWS_JSONL}",
        "--samples=all",
        "--num-predict=64",
        "--report-json=r.json",
    )
    servers: list[int] = []

    def server_up() -> bool:
        servers[:] = _children_serving(proc.pid)
        return bool(servers) and (Path(suite.pytester.path) / ".pytest_cache").exists()

    _wait_for(server_up, timeout=120)
    time.sleep(2)  # let the workers start asking
    out = _ctrl_c(proc)

    assert proc.returncode == 2, out
    deadline = time.monotonic() + 15
    while any(Path(f"/proc/{pid}").exists() for pid in servers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in servers if Path(f"/proc/{pid}").exists()]
    assert json.loads((suite.pytester.path / "r.json").read_text())["run"]["complete"] is False
