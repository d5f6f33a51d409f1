"""Test doubles for the embedded server: a GGUF writer and an engine with scripted replies."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mimicry.embedded.engine import CompletionChunk, DoneReason, EngineError, SamplingOptions

GGUFValue = str | int | float | bool | list[str]


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _value(value: GGUFValue) -> bytes:
    # GGUF value types: 4 uint32, 6 float32, 7 bool, 8 string, 9 array.
    if isinstance(value, bool):
        return struct.pack("<I?", 7, value)
    if isinstance(value, int):
        return struct.pack("<II", 4, value)
    if isinstance(value, float):
        return struct.pack("<If", 6, value)
    if isinstance(value, str):
        return struct.pack("<I", 8) + _string(value)
    return struct.pack("<IIQ", 9, 8, len(value)) + b"".join(_string(s) for s in value)


def write_gguf(
    path: Path,
    kv: Mapping[str, GGUFValue],
    tensors: Sequence[tuple[str, Sequence[int]]] = (),
    *,
    version: int = 3,
) -> Path:
    """Write a GGUF header (no tensor data) with these key-values and tensor shapes."""
    out = bytearray(b"GGUF")
    out += struct.pack("<IQQ", version, len(tensors), len(kv))
    for key, value in kv.items():
        out += _string(key) + _value(value)
    for index, (name, shape) in enumerate(tensors):
        out += _string(name) + struct.pack("<I", len(shape))
        out += b"".join(struct.pack("<Q", d) for d in shape)
        out += struct.pack("<IQ", 0, index * 64)
    path.write_bytes(bytes(out))
    return path


def tiny_gguf(path: Path, *, context_length: int = 2048) -> Path:
    """A small llama-family GGUF header: 1.5M parameters, Q4_K_M, a chat template."""
    return write_gguf(
        path,
        {
            "general.architecture": "llama",
            "general.name": "tiny",
            "general.file_type": 15,
            "llama.context_length": context_length,
            "llama.rope.freq_base": 10000.0,
            "tokenizer.ggml.add_bos_token": False,
            "tokenizer.ggml.tokens": ["<s>", "</s>", "a"],
            "tokenizer.chat_template": "{{ messages }}",
        },
        [("token_embd.weight", [1000, 1000]), ("output.weight", [500, 1000])],
    )


@dataclass
class FakeEngine:
    """An engine where every character is a token and the model says `reply`.

    It records what it was asked to complete, so tests can check the prompt the front sent
    after truncation and the token budget it allowed.
    """

    reply: str = "Hello there!"
    slot_context: int = 512
    parallel: int = 1
    adds_bos: bool = False
    template_writes_bos: bool = False  # the chat template starts with the BOS text (token 0)
    fail_at: int | None = None  # raise EngineError before yielding this character
    fail_status: int = 500
    started: bool = False
    closed: bool = False
    completions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def settings(self) -> Mapping[str, int]:
        return {"threads": 1, "parallel": self.parallel, "ctx_size": self.slot_context}

    async def start(self) -> None:
        self.started = True

    async def aclose(self) -> None:
        self.closed = True

    async def render_chat(self, messages: Sequence[Mapping[str, str]]) -> str:
        bos = "\x00" if self.template_writes_bos else ""
        return bos + "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    async def tokenize(self, text: str) -> list[int]:
        return ([0] if self.adds_bos else []) + [ord(c) for c in text]

    async def complete(
        self,
        prompt: Sequence[int],
        *,
        sampling: SamplingOptions,
        max_tokens: int,
        json_schema: Mapping[str, Any] | None,
        stream: bool = True,
    ) -> AsyncIterator[CompletionChunk]:
        self.completions.append(
            {
                "prompt": list(prompt),
                "sampling": sampling,
                "max_tokens": max_tokens,
                "json_schema": json_schema,
                "stream": stream,
            }
        )
        said = self.reply[:max_tokens]
        done_reason: DoneReason = "length" if len(self.reply) > max_tokens else "stop"
        if not stream:  # like llama.cpp: the whole reply in one final chunk
            if self.fail_at is not None and self.fail_at < len(said):
                raise EngineError("the fake engine failed", status_code=self.fail_status)
            yield CompletionChunk(
                text=said,
                tokens=tuple(ord(c) for c in said),
                done=True,
                done_reason=done_reason,
                prompt_eval_count=len(prompt),
                prompt_eval_ms=1.5,
                eval_count=len(said),
                eval_ms=2.5,
            )
            return
        for index, char in enumerate(said):
            if index == self.fail_at:
                raise EngineError("the fake engine failed", status_code=self.fail_status)
            yield CompletionChunk(text=char, tokens=(ord(char),))
        yield CompletionChunk(
            text="",
            done=True,
            done_reason=done_reason,
            prompt_eval_count=len(prompt),
            prompt_eval_ms=1.5,
            eval_count=len(said),
            eval_ms=2.5,
        )

    def prompt_text(self, index: int = -1) -> str:
        """The prompt of a recorded completion, as text."""
        return "".join(chr(t) for t in self.completions[index]["prompt"])
