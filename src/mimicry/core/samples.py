"""One sample's result: the model's reply, the server's accounting, flags and measures, as a
plain dict; and the rules that tell the server's cut of a prompt from the model's.

The dict is what crosses from xdist workers to the controller (inside test reports) and what the
JSON report lists under ``samples`` (with the verdicts added); it holds only JSON types.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from mimicry.core.behaviors import measure
from mimicry.core.reply import REPLY_COUNTERS, REPLY_FIELDS, Reply

__all__ = [
    "DEFAULT_NUM_KEEP",
    "REPLY_COUNTERS",
    "REPLY_FIELDS",
    "context_shift_prompt_limit",
    "error_result",
    "input_was_cut",
    "record_problem",
    "sample_result",
]

SampleStatus = Literal["ok", "error"]
Flag = Literal["input_truncated", "output_capped", "record_without_prompt"]

#: Ollama keeps this many tokens at the start of a prompt it cuts (``num_keep``'s default).
DEFAULT_NUM_KEEP = 4
#: Ollama's older runners cut an over-long prompt to exactly ``num_ctx`` tokens (batch alignment
#: can leave it a few short): a prompt that filled the window to within this many tokens was,
#: most probably, cut.
INPUT_CUT_MARGIN_TOKENS = 8
#: Real prompts here take 2.5 to 4.5 characters per token. A prompt whose evaluated tokens are
#: far fewer than its characters suggest lost tokens: after Ollama's cut (to about half the
#: window) the ratio is at least twice a tokenizer's, so above this it was most probably cut.
MAX_PLAUSIBLE_CHARS_PER_TOKEN = 5.0


def context_shift_prompt_limit(num_ctx: int, num_keep: int = DEFAULT_NUM_KEEP) -> int:
    """How many tokens of an over-long prompt current Ollama keeps.

    Ollama (``llm/llama_server.go``, ``contextShiftPromptLimit``) keeps the first ``num_keep``
    tokens and frees half of what follows, so generation has room:
    ``num_ctx - max((num_ctx - num_keep) // 2, 1)``.
    """
    if num_ctx <= 1:
        return 0
    num_keep = max(0, min(num_keep, num_ctx - 1))
    return num_ctx - max((num_ctx - num_keep) // 2, 1)


def input_was_cut(
    prompt_eval_count: int | None, num_ctx: int, prompt_chars: int | None = None
) -> bool:
    """Whether the server most probably cut the prompt to fit ``num_ctx``.

    Two signatures, one per way Ollama has cut: the prompt filled the window (older runners), or
    it is exactly as long as current Ollama's cut (``num_keep`` 4, or 5 with a BOS token) while
    far fewer tokens than its characters imply.
    """
    if prompt_eval_count is None or prompt_eval_count <= 0:
        return False
    if prompt_eval_count >= num_ctx - INPUT_CUT_MARGIN_TOKENS:
        return True
    at_cut_length = any(
        abs(prompt_eval_count - context_shift_prompt_limit(num_ctx, keep)) <= 1
        for keep in (DEFAULT_NUM_KEEP, DEFAULT_NUM_KEEP + 1)
    )
    return (
        at_cut_length
        and prompt_chars is not None
        and prompt_chars / prompt_eval_count > MAX_PLAUSIBLE_CHARS_PER_TOKEN
    )


def record_problem(record: Mapping[str, object]) -> str | None:
    """Why a dataset row cannot be judged (None when it can)."""
    prompt = record.get("prompt")
    if not isinstance(prompt, str):
        return f"the row's prompt is {type(prompt).__name__} {_short(prompt)}, not text"
    if record.get("id") is None:
        return "the row has no id"
    return None


def sample_result(
    *,
    sample_id: str,
    index: int,
    repeat: int,
    record: Mapping[str, object],
    reply: Reply,
    prompt_chars: int,
) -> dict[str, object]:
    """One sample's result: the reply with the server's accounting, its flags and the measures
    kept beside the verdicts (the verdicts come from the behavior tests)."""
    flags: list[Flag] = []
    if reply.input_truncated:
        flags.append("input_truncated")
    if reply.output_capped:
        flags.append("output_capped")
    if record.get("prompt") is None:
        flags.append("record_without_prompt")
    result: dict[str, object] = {
        "id": sample_id,
        "index": index,
        "repeat": repeat,
        "status": "ok",
        "error": None,
        "prompt_chars": prompt_chars,
        "cached": reply.cached,
        "flags": flags,
        "measures": measure(record, reply),
        "reply": reply.text,
        "done_reason": reply.done_reason,
    }
    for name in REPLY_COUNTERS:
        result[name] = reply.counters.get(name)
    return result


def error_result(
    *, sample_id: str, index: int, repeat: int, reason: str, prompt_chars: int | None
) -> dict[str, object]:
    """A sample whose reply could not be had: no verdicts, the reason, excluded from rates."""
    result: dict[str, object] = {
        "id": sample_id,
        "index": index,
        "repeat": repeat,
        "status": "error",
        "error": reason,
        "prompt_chars": prompt_chars,
        "cached": False,
        "flags": [],
        "measures": {},
        "reply": None,
        "done_reason": None,
    }
    for name in REPLY_COUNTERS:
        result[name] = None
    return result


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
