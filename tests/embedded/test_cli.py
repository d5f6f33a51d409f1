"""The `mimicry-serve` command line, without loading a model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mimicry.embedded.cli import _is_loopback, build_parser, main, write_ready_file
from tests.embedded.fakes import tiny_gguf

pytestmark = pytest.mark.usefixtures("restore_logging")


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "--ready-file" in capsys.readouterr().out


def test_defaults_bind_loopback_on_a_free_port() -> None:
    args = build_parser().parse_args([])

    assert (args.host, args.port, args.parallel, args.ctx_size) == ("127.0.0.1", 0, 1, 8192)
    assert args.max_body_bytes == 8 * 1024 * 1024
    assert args.log_level == "warning"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "70000"], "a port is 0 (any free port) to 65535"),
        (["--parallel", "0"], "'0': must be at least 1"),
        (["--ctx-size", "lots"], "'lots' is not an integer"),
        (["--log-level", "loud"], "invalid choice: 'loud'"),
    ],
)
def test_bad_arguments_exit_2_with_the_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_missing_gguf_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--gguf", str(tmp_path / "absent.gguf")]) == 2

    err = capsys.readouterr().err
    assert "absent.gguf" in err
    assert "no such file" in err


def test_a_bad_model_name_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gguf = tiny_gguf(tmp_path / "tiny.gguf")

    assert main(["--gguf", str(gguf), "--model-name", "no spaces please"]) == 2
    assert "model name 'no spaces please'" in capsys.readouterr().err


def test_the_ready_file_appears_whole(tmp_path: Path) -> None:
    target = tmp_path / "url"

    write_ready_file(target, "http://127.0.0.1:1234")
    write_ready_file(target, "http://127.0.0.1:5678")

    assert target.read_text() == "http://127.0.0.1:5678\n"
    assert [p.name for p in tmp_path.iterdir()] == ["url"]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False),
     ("192.168.1.2", False), ("example.org", False)],
)  # fmt: skip
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert _is_loopback(host) is loopback


def test_the_module_runs_as_a_program() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mimicry.serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0
    assert "usage: mimicry-serve" in done.stdout
