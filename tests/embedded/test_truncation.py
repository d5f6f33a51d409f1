"""Ollama's prompt cut (llm/llama_server.go, completionPromptForRequest)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mimicry.core.samples import context_shift_prompt_limit
from mimicry.embedded.engine import truncate_prompt


@pytest.mark.parametrize(
    ("num_ctx", "num_keep", "limit"),
    [
        # Counts reported by users of Ollama >= 0.33 for over-long prompts:
        (8192, 4, 4098),  # default num_keep 4, no BOS
        (4096, 4, 2050),  # qwen2, no BOS
        (512, 5, 259),  # num_keep 4 plus a BOS token
        (24576, 5, 12291),
        (2, 4, 1),
        (1, 4, 0),
    ],
)
def test_limit_keeps_about_half_the_window(num_ctx: int, num_keep: int, limit: int) -> None:
    assert context_shift_prompt_limit(num_ctx, num_keep) == limit


def test_a_long_prompt_keeps_its_start_and_its_end() -> None:
    tokens = list(range(1000))

    cut = truncate_prompt(tokens, num_ctx=256, num_keep=4, adds_bos=False)

    assert len(cut) == 256 - (256 - 4) // 2 == 130
    assert cut[:4] == [0, 1, 2, 3]
    assert cut[4:] == tokens[-126:]


def test_a_bos_token_is_kept_in_addition_to_num_keep() -> None:
    cut = truncate_prompt(list(range(1000)), num_ctx=512, num_keep=4, adds_bos=True)

    assert len(cut) == 259
    assert cut[:5] == [0, 1, 2, 3, 4]
    assert cut[5] == 1000 - 254


def test_negative_num_keep_keeps_the_start() -> None:
    cut = truncate_prompt(list(range(1000)), num_ctx=100, num_keep=-1, adds_bos=False)

    assert cut == list(range(99))


@pytest.mark.parametrize("length", [0, 1, 254, 255])
def test_a_prompt_shorter_than_the_window_is_untouched(length: int) -> None:
    tokens = list(range(length))

    assert truncate_prompt(tokens, num_ctx=256, num_keep=4, adds_bos=False) == tokens


def test_a_prompt_filling_the_window_is_cut() -> None:
    # Ollama leaves room for at least one generated token: num_ctx tokens are too many.
    assert len(truncate_prompt(list(range(256)), num_ctx=256, num_keep=4, adds_bos=False)) == 130


@given(
    length=st.integers(0, 3000),
    num_ctx=st.integers(2, 2048),
    num_keep=st.integers(-1, 300),
    adds_bos=st.booleans(),
)
def test_cut_prompts_fit_and_keep_both_ends(
    length: int, num_ctx: int, num_keep: int, adds_bos: bool
) -> None:
    tokens = list(range(length))

    cut = truncate_prompt(tokens, num_ctx=num_ctx, num_keep=num_keep, adds_bos=adds_bos)

    if length <= num_ctx - 1:
        assert cut == tokens
        return
    keep = min((length if num_keep < 0 else num_keep) + adds_bos, num_ctx - 1)
    assert len(cut) == context_shift_prompt_limit(num_ctx, keep) < num_ctx
    assert cut[:keep] == tokens[:keep]
    tail = len(cut) - keep
    assert cut[keep:] == (tokens[-tail:] if tail else [])
