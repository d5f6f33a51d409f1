"""Bad input and broken servers: one precise message, the right exit status, no test run."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from mimicry.exitcodes import ExitStatus
from mimicry.testing import CHAT, FakeOllama
from tests.conftest import REAL_ROWS_JSONL
from tests.plugin.conftest import BUILT_IN, Suite, dataset_args


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_named_server_down_is_one_message_and_exit_69(suite: Suite) -> None:
    port = _closed_port()
    result = suite.run(f"--ollama-host=http://127.0.0.1:{port}", f"--dataset={REAL_ROWS_JSONL}")

    assert result.ret == ExitStatus.SERVER_UNUSABLE
    # exactly one line, before any session output
    assert result.stderr.lines == [
        f"mimicry: no Ollama server answers at 'http://127.0.0.1:{port}' (cannot connect: "
        "[Errno 111] Connection refused, 2 attempt(s)): start it with `ollama serve`, or pass "
        "--ollama-host / set OLLAMA_HOST"
    ]
    assert result.stdout.lines == []


def test_missing_model_says_what_to_pull(suite: Suite, fake_ollama: FakeOllama) -> None:
    result = suite.run(
        f"--ollama-host={fake_ollama.url}", "--model=qwen2:0.5b", f"--dataset={REAL_ROWS_JSONL}"
    )

    assert result.ret == ExitStatus.SERVER_UNUSABLE
    url = re.escape(fake_ollama.url)
    assert len(result.stderr.lines) == 1
    result.stderr.re_match_lines(
        [
            rf"mimicry: model 'qwen2:0\.5b' is not on the server at '{url}': run "
            rf"`OLLAMA_HOST={url} ollama pull qwen2:0\.5b` \(available: 'fake-model:1b'\)"
        ]
    )
    assert result.stdout.lines == []
    assert fake_ollama.count(CHAT) == 0


def test_missing_judge_model_says_what_to_pull(suite: Suite, fake_ollama: FakeOllama) -> None:
    result = suite.run(
        f"--ollama-host={fake_ollama.url}",
        f"--model={fake_ollama.model.name}",
        "--judge-model=judge:7b",
        f"--dataset={REAL_ROWS_JSONL}",
    )

    assert result.ret == ExitStatus.SERVER_UNUSABLE
    result.stderr.re_match_lines(
        [r"mimicry: model 'judge:7b' is not on the server .*pull judge:7b.*"]
    )
    assert fake_ollama.count(CHAT) == 0


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            "--response-cache-mode=sometimes",
            r".*--response-cache-mode 'sometimes': unknown value; "
            r"choose one of use, refresh, off, replay",
        ),
        ("--samples=lots", r".*--samples 'lots': expected a whole number"),
        ("--max-errors=150%", r".*--max-errors '150%': a share must be between 0 and 1.*"),
        ("--prompt-template=yaml", r".*--prompt-template 'yaml': unknown template.*"),
    ],
)
def test_bad_option_is_a_usage_error_naming_the_value(
    suite: Suite, option: str, message: str
) -> None:
    result = suite.run(option)

    assert result.ret == ExitStatus.USAGE_ERROR
    result.stderr.re_match_lines([message])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sample-ids=1,2"], r".*--sample-ids: 2 id\(s\) not in the dataset: \['1', '2'\].*"),
        (["--samples=33"], r".*--samples 33: the dataset has only 32 rows; pass --samples all.*"),
        (["--dataset=nowhere.jsonl"], r".*--dataset 'nowhere.jsonl': no such file"),
        (["--dataset=rows.txt"], r".*unsupported file type '.txt'.*"),
    ],
)
def test_bad_dataset_selection_is_a_usage_error(
    suite: Suite, fake_ollama: FakeOllama, args: list[str], message: str
) -> None:
    (suite.pytester.path / "rows.txt").write_text("x")
    base = [
        f"--ollama-host={fake_ollama.url}",
        f"--model={fake_ollama.model.name}",
        f"--dataset={REAL_ROWS_JSONL}",
    ]
    result = suite.run(*base, *args)

    assert result.ret == ExitStatus.USAGE_ERROR
    result.stderr.re_match_lines([message])
    assert fake_ollama.count(CHAT) == 0


def test_collect_only_needs_no_server(suite: Suite) -> None:
    result = suite.run(
        f"--ollama-host=http://127.0.0.1:{_closed_port()}",
        f"--dataset={REAL_ROWS_JSONL}",
        "--sample-ids=887722,1594211",
        "--collect-only",
        "-q",
    )

    assert result.ret == ExitStatus.OK
    result.stdout.re_match_lines([r"evals/test_copies_braces.py::test_copies_braces\[887722\]"])
    # the judge-based behavior is deselected without --judge-model
    n = 2 * len(BUILT_IN)
    result.stdout.re_match_lines([rf"{n}/{n + 2} tests collected \(2 deselected\).*"])
    result.stdout.no_fnmatch_line("*test_answers_prompt*")


def test_plugin_is_inert_outside_the_eval_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_other="def test_ok():\n    assert True\n")
    result = pytester.runpytest("-p", "no:xdist", "--ollama-host=http://127.0.0.1:9")

    result.assert_outcomes(passed=1)
    assert result.ret == ExitStatus.OK
    result.stdout.no_re_match_line(r"mimicry: ")  # no run was planned


def test_ini_keys_set_options(suite: Suite, fake_ollama: FakeOllama) -> None:
    suite.pytester.makeini(
        f"[pytest]\nmimicry_ollama_host = {fake_ollama.url}\n"
        f"mimicry_model = {fake_ollama.model.name}\nmimicry_dataset = {REAL_ROWS_JSONL}\n"
        "mimicry_sample_ids = 887722\nmimicry_seed = 9\n"
    )
    result = suite.run("--seed=11")

    assert result.ret == ExitStatus.OK, result.stdout.str()
    assert fake_ollama.count(CHAT) == 1
    assert fake_ollama.chat_bodies[0]["options"]["seed"] == 11  # the command line beats the ini


def test_a_report_that_cannot_be_written_is_status_73_and_the_others_are_written(
    suite: Suite, fake_ollama: FakeOllama
) -> None:
    (suite.pytester.path / "blocker").write_text("a file, not a folder\n")
    result = suite.run(
        *dataset_args(fake_ollama, ids="887722"),
        "--report-json=r.json",
        "--report-md=blocker/summary.md",
    )

    assert result.ret == ExitStatus.REPORT_NOT_WRITTEN, result.stdout.str()
    out = result.stdout.str() + result.stderr.str()
    assert "blocker/summary.md" in out
    assert "Traceback" not in out
    # the JSON report was written, and says the status the run had until then
    assert suite.report()["run"]["exit_status"] == ExitStatus.OK
    assert fake_ollama.count(CHAT) == 1


@pytest.mark.embedded
def test_an_embedded_server_that_does_not_start_is_one_line_and_status_69(suite: Suite) -> None:
    from tests.embedded.fakes import tiny_gguf

    # a valid GGUF header without tensor data: readable facts, a model llama.cpp cannot load
    gguf = tiny_gguf(suite.pytester.path / "headers-only.gguf")
    result = suite.run(
        "--backend=embedded",
        f"--embedded-gguf={gguf}",
        f"--dataset={REAL_ROWS_JSONL}",
        "--samples=2",
        subprocess=True,
    )

    assert result.ret == ExitStatus.SERVER_UNUSABLE
    assert result.stdout.lines == []
    [line] = result.stderr.lines
    assert line.startswith(
        "mimicry: the embedded server exited with status 1 before it was ready: "
    )
    assert "llama.cpp could not load 'headers-only.gguf'" in line or "headers-only.gguf" in line
    log = re.search(r"its whole log: (\S+)$", line)
    assert log is not None, line
    assert "headers-only.gguf" in Path(log.group(1)).read_text()
    Path(log.group(1)).unlink()
