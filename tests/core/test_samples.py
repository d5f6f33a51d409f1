from __future__ import annotations

import pytest

from mimicry.core.samples import context_shift_prompt_limit, input_was_cut


@pytest.mark.parametrize(
    ("num_ctx", "num_keep", "limit"),
    # counts seen from real Ollama runs (prompt_eval_count after a cut)
    [(8192, 4, 4098), (4096, 4, 2050), (512, 5, 259), (24576, 4, 12290)],
)
def test_context_shift_limit_matches_ollama(num_ctx: int, num_keep: int, limit: int) -> None:
    assert context_shift_prompt_limit(num_ctx, num_keep) == limit


def test_a_prompt_that_filled_the_window_was_cut() -> None:
    assert input_was_cut(2048, 2048)
    assert input_was_cut(2041, 2048)
    assert not input_was_cut(2000, 2048)


def test_current_ollama_cut_is_recognised_by_its_length_and_density() -> None:
    # 20,000 characters cut to 2050 tokens: ~10 characters per token is no real tokenizer
    assert input_was_cut(2050, 4096, prompt_chars=20_000)
    # a prompt that happens to be that long but whose density is plausible was not cut
    assert not input_was_cut(2050, 4096, prompt_chars=7_000)
    assert not input_was_cut(2050, 4096)


def test_nothing_known_is_not_a_cut() -> None:
    assert not input_was_cut(None, 2048)
    assert not input_was_cut(0, 2048)
