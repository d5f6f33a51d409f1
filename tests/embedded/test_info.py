"""The model's facts without a server: `embedded_model_info` and its digest cache."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from mimicry.client import ModelClient
from mimicry.embedded import (
    EmbeddedServer,
    EmbeddedSpec,
    ModelFileError,
    default_cache_dir,
    embedded_available,
    embedded_model_info,
)
from mimicry.embedded import model as model_module
from mimicry.embedded.model import FACTS_CACHE_FILE
from tests.embedded.conftest import TEST_SPEC
from tests.embedded.fakes import tiny_gguf


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths whose sha256 is computed from here on (the real hash is still computed)."""
    seen: list[str] = []
    real = model_module._sha256_file

    def counting(path: str) -> str:
        seen.append(path)
        return real(path)

    monkeypatch.setattr(model_module, "_sha256_file", counting)
    return seen


def test_the_facts_are_read_from_the_file(tmp_path: Path) -> None:
    gguf = tiny_gguf(tmp_path / "tiny.gguf", context_length=4096)

    info = embedded_model_info(EmbeddedSpec(gguf=gguf), cache_dir=tmp_path / "cache")

    assert info["name"] == "tiny:latest"
    assert info["digest"] == hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert info["context_length"] == 4096
    assert (info["family"], info["parameter_size"], info["quantization"]) == (
        "llama",
        "1.50M",
        "Q4_K_M",
    )
    assert str(info["server_version"]).endswith("-mimicry-embedded")
    named = embedded_model_info(
        EmbeddedSpec(gguf=gguf, model_name="qwen2:0.5b"), cache_dir=tmp_path
    )
    assert named["name"] == "qwen2:0.5b"


def test_the_digest_is_hashed_once_per_file_version(tmp_path: Path, hashes: list[str]) -> None:
    gguf = tiny_gguf(tmp_path / "tiny.gguf")
    spec = EmbeddedSpec(gguf=gguf)
    cache = tmp_path / "cache"

    first = embedded_model_info(spec, cache_dir=cache)
    again = embedded_model_info(spec, cache_dir=cache)
    assert again == first
    assert hashes == [str(gguf.resolve())]
    assert (cache / FACTS_CACHE_FILE).is_file()

    with open(gguf, "ab") as fh:  # rewritten: another size
        fh.write(bytes(8))
    changed = embedded_model_info(spec, cache_dir=cache)
    assert changed["digest"] == hashlib.sha256(gguf.read_bytes()).hexdigest() != first["digest"]
    # Same size, another modification time: hashed again too.
    stat = gguf.stat()
    os.utime(gguf, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    embedded_model_info(spec, cache_dir=cache)
    assert len(hashes) == 3


def test_a_damaged_cache_costs_a_hash_not_the_answer(tmp_path: Path, hashes: list[str]) -> None:
    gguf = tiny_gguf(tmp_path / "tiny.gguf")
    cache = tmp_path / "cache"
    truth = embedded_model_info(EmbeddedSpec(gguf=gguf), cache_dir=cache)
    cache_file = cache / FACTS_CACHE_FILE
    stored = json.loads(cache_file.read_text())
    (entry,) = stored["files"].values()
    entry["facts"]["sha256"] = "not a digest"
    for damaged in (json.dumps(stored), "{not json", json.dumps([1, 2]), ""):
        cache_file.write_text(damaged)

        assert embedded_model_info(EmbeddedSpec(gguf=gguf), cache_dir=cache) == truth

    assert len(hashes) == 5
    assert json.loads(cache_file.read_text())["files"]  # repaired


def test_an_unwritable_cache_still_answers(tmp_path: Path) -> None:
    gguf = tiny_gguf(tmp_path / "tiny.gguf")
    blocker = tmp_path / "a-file"
    blocker.write_text("")

    info = embedded_model_info(EmbeddedSpec(gguf=gguf), cache_dir=blocker / "cache")

    assert info["digest"] == hashlib.sha256(gguf.read_bytes()).hexdigest()


def test_the_cache_lives_under_xdg_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    gguf = tiny_gguf(tmp_path / "tiny.gguf")

    embedded_model_info(EmbeddedSpec(gguf=gguf))

    assert default_cache_dir() == tmp_path / "xdg" / "mimicry-evals"
    assert (tmp_path / "xdg" / "mimicry-evals" / FACTS_CACHE_FILE).is_file()
    assert default_cache_dir({"XDG_CACHE_HOME": "relative"}) == (
        Path.home() / ".cache" / "mimicry-evals"
    )


def test_a_missing_or_foreign_file_is_a_model_file_error(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="missing.gguf"):
        embedded_model_info(EmbeddedSpec(gguf=tmp_path / "missing.gguf"), cache_dir=tmp_path)
    text = tmp_path / "notes.gguf"
    text.write_text("not a model")
    # An OSError, like any other unreadable file.
    with pytest.raises(OSError, match="not a GGUF file"):
        embedded_model_info(EmbeddedSpec(gguf=text), cache_dir=tmp_path)


@pytest.mark.embedded
def test_the_facts_are_what_the_started_server_reports(
    embedded_server: EmbeddedServer, tmp_path: Path
) -> None:
    if (reason := embedded_available()) is not None:
        pytest.skip(reason)
    with ModelClient(embedded_server.url) as client:
        served = client.preflight(embedded_server.model_name).to_dict()

    cold = embedded_model_info(TEST_SPEC, cache_dir=tmp_path)
    warm = embedded_model_info(TEST_SPEC, cache_dir=tmp_path)

    assert cold == warm == served
