"""The README is the contract: its commands use flags that exist, and its quick start runs."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()
SH_BLOCKS = re.findall(r"```sh\n(.*?)```", README, flags=re.S)
COMMANDS = [
    line.strip()
    for block in SH_BLOCKS
    for line in block.replace("\\\n", " ").splitlines()
    if line.strip() and not line.strip().startswith("#")
]


def _pytest_help() -> str:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--help", "-p", "no:randomly"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


def test_the_two_quick_start_commands_are_there() -> None:
    assert any(c.endswith("pytest tests -n 2") for c in COMMANDS)
    assert any("pytest evals -n 2 --dataset ../shared/data/" in c for c in COMMANDS)


def test_every_flag_in_a_pytest_command_exists() -> None:
    help_text = _pytest_help()
    flags = {
        word.split("=", 1)[0]
        for command in COMMANDS
        for part in command.split("&&")
        if part.split()[:1] == ["pytest"] or " pytest " in f" {part} "
        for word in shlex.split(part)
        if word.startswith("--")
    }
    assert flags, "no pytest command found in the README"
    missing = sorted(
        f for f in flags if not re.search(rf"(^|[\s,]){re.escape(f)}[\s=,]", help_text, re.M)
    )
    assert missing == []


def test_every_flag_of_the_compare_command_exists() -> None:
    for command in (c for c in COMMANDS if c.startswith("python -m mimicry ")):
        sub = shlex.split(command)[3]
        help_text = subprocess.run(
            [sys.executable, "-m", "mimicry", sub, "--help"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for word in shlex.split(command):
            if word.startswith("--"):
                assert word.split("=", 1)[0] in help_text, (command, word)


@pytest.mark.slow
def test_the_quick_start_eval_command_collects_as_written() -> None:
    command = next(c for c in COMMANDS if "pytest evals -n 2 --dataset ../shared/data/" in c)
    pytest_part = command.split("&&")[-1].strip()
    args = shlex.split(pytest_part)[1:]
    out = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "--collect-only", "-q", "-p", "no:randomly"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "128 tests collected" in out.stdout  # 32 real rows x 4 behaviors
