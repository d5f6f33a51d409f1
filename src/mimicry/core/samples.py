"""One sample's result: the record, the model's reply and the judgement, as a plain dict.

The dict is what crosses from xdist workers to the controller (inside test reports) and what the
JSON report lists under ``samples``; it holds only JSON types.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from mimicry.core.behaviors import BEHAVIORS, judge

SampleStatus = Literal["ok", "error"]

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


#: Ollama's counters of a reply (durations in nanoseconds), all integers.
REPLY_COUNTERS = (
    "prompt_eval_count",
    "eval_count",
    "total_duration",
    "load_duration",
    "prompt_eval_duration",
    "eval_duration",
)
#: The reply fields a sample result keeps besides the text.
REPLY_FIELDS = ("done_reason", *REPLY_COUNTERS)


def record_problem(record: Mapping[str, object]) -> str | None:
    """Why a dataset row cannot be judged (None when it can)."""
    prompt = record.get("prompt")
    if not isinstance(prompt, str):
        return f"the row's prompt is {type(prompt).__name__} {_short(prompt)}, not text"
    if record.get("id") is None:
        return "the row has no id"
    return None


def judged_sample(
    *,
    sample_id: str,
    index: int,
    record: Mapping[str, object],
    reply: Mapping[str, object],
    num_ctx: int,
    cached: bool,
    prompt_chars: int,
) -> dict[str, object]:
    """Judge one reply; ``reply`` holds ``content`` and the Ollama reply fields.

    ``prompt_chars`` is the length of the prompt as sent (the rendered messages).
    """
    content = reply.get("content")
    text = content if isinstance(content, str) else ""
    prompt_eval_count = reply.get("prompt_eval_count")
    input_truncated = input_was_cut(
        prompt_eval_count if isinstance(prompt_eval_count, int) else None,
        num_ctx,
        prompt_chars,
    )
    output_capped = reply.get("done_reason") == "length"
    judgement = judge(record, text, output_capped=output_capped, input_truncated=input_truncated)
    result: dict[str, object] = {
        "id": sample_id,
        "index": index,
        "status": "ok",
        "error": None,
        "prompt_chars": prompt_chars,
        "cached": cached,
        **judgement.to_dict(),
        # why each behavior was not shown (a passing verdict needs no reason)
        "explanations": {
            name: judgement.explain(name)
            for name in BEHAVIORS
            if judgement.verdicts.get(name) is False
        },
        "reply": text,
    }
    for name in REPLY_FIELDS:
        result[name] = reply.get(name)
    return result


def error_sample(
    *, sample_id: str, index: int, reason: str, prompt_chars: int | None
) -> dict[str, object]:
    """A sample whose reply could not be had: no verdicts, the reason, excluded from rates."""
    result: dict[str, object] = {
        "id": sample_id,
        "index": index,
        "status": "error",
        "error": reason,
        "prompt_chars": prompt_chars,
        "cached": False,
        "behaviors": {name: None for name in BEHAVIORS},
        "metrics": {},
        "flags": [],
        "explanations": {},
        "reply": None,
    }
    for name in REPLY_FIELDS:
        result[name] = None
    return result


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
