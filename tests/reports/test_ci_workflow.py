"""The example CI workflow in docs/ uses only options that exist (the suite's, pytest's and
xdist's, and ``python -m mimicry``'s), and files the repository has."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mimicry.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / "docs" / "ci" / "mimicry-evals.yml"


def _commands() -> list[list[str]]:
    """Every ``run:`` command of the workflow, split as a shell would (variables left as is)."""
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    commands = []
    for job in data["jobs"].values():
        for step in job["steps"]:
            if "run" in step:
                commands.append(shlex.split(step["run"]))
    return commands


def _long_flags(words: list[str]) -> set[str]:
    return {w.split("=", 1)[0] for w in words if w.startswith("--")}


@pytest.fixture(scope="module")
def pytest_flags() -> set[str]:
    """Every long option ``pytest --help`` lists in this repository (the plugin's included)."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", result.stdout))


def _mimicry_flags(command: str) -> set[str]:
    parser = build_parser()
    subparsers = next(
        a
        for a in parser._actions
        if isinstance(a, argparse._SubParsersAction)  # noqa: SLF001
    )
    sub = subparsers.choices[command]
    return {flag for action in sub._actions for flag in action.option_strings}  # noqa: SLF001


def test_the_workflow_is_valid_yaml_with_the_steps_the_readme_names() -> None:
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))

    job = data["jobs"]["evals"]
    assert "ollama" in job["services"]
    uses = [step.get("uses", "") for step in job["steps"]]
    assert any(u.startswith("actions/upload-artifact@") for u in uses)
    runs = " ".join(" ".join(c) for c in _commands())
    assert "--baseline" in runs
    assert "--report-md" in runs  # appended to $GITHUB_STEP_SUMMARY by the plugin
    assert "--report-html" in runs
    assert "history" in runs


def test_every_pytest_option_of_the_workflow_exists(pytest_flags: set[str]) -> None:
    checked = 0
    for words in _commands():
        if words[:1] == ["pytest"]:
            unknown = _long_flags(words) - pytest_flags
            assert not unknown, f"options pytest does not know: {sorted(unknown)}"
            assert (REPO / words[1]).is_dir(), words[1]
            checked += 1
    assert checked == 1
    assert "--report-html" in pytest_flags  # the plugin was loaded for the help text


def test_every_mimicry_command_option_of_the_workflow_exists() -> None:
    checked = 0
    for words in _commands():
        if words[:3] == ["python", "-m", "mimicry"]:
            command = words[3]
            unknown = _long_flags(words) - _mimicry_flags(command)
            assert not unknown, f"options `{command}` does not know: {sorted(unknown)}"
            checked += 1
    assert checked == 1


def test_the_install_step_names_files_the_repository_has() -> None:
    for words in _commands():
        if words[:2] == ["pip", "install"]:
            if "-c" in words:
                assert (REPO / words[words.index("-c") + 1]).is_file()
