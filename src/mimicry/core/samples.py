"""One sample's result: the record, the model's reply and the judgement, as a plain dict.

The dict is what crosses from xdist workers to the controller (inside test reports) and what the
JSON report lists under ``samples``; it holds only JSON types.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from mimicry.core.behaviors import BEHAVIORS, judge

SampleStatus = Literal["ok", "error"]

#: Ollama cuts a prompt longer than num_ctx to exactly num_ctx tokens (keeping the first num_keep
#: tokens); batch alignment can leave it a few tokens short. A prompt that filled the window to
#: within this many tokens was, most probably, cut.
INPUT_CUT_MARGIN_TOKENS = 8

REPLY_FIELDS = (
    "done_reason",
    "prompt_eval_count",
    "eval_count",
    "total_duration",
    "load_duration",
    "prompt_eval_duration",
    "eval_duration",
)


def input_was_cut(prompt_eval_count: int | None, num_ctx: int) -> bool:
    """Whether the server most probably cut the prompt to fit ``num_ctx``."""
    return prompt_eval_count is not None and prompt_eval_count >= num_ctx - INPUT_CUT_MARGIN_TOKENS


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
) -> dict[str, object]:
    """Judge one reply; ``reply`` holds ``content`` and the Ollama reply fields."""
    content = reply.get("content")
    text = content if isinstance(content, str) else ""
    prompt_eval_count = reply.get("prompt_eval_count")
    input_truncated = input_was_cut(
        prompt_eval_count if isinstance(prompt_eval_count, int) else None, num_ctx
    )
    output_capped = reply.get("done_reason") == "length"
    judgement = judge(record, text, output_capped=output_capped, input_truncated=input_truncated)
    result: dict[str, object] = {
        "id": sample_id,
        "index": index,
        "status": "ok",
        "error": None,
        "prompt_chars": len(f"{record}"),
        "cached": cached,
        **judgement.to_dict(),
        "explanations": {name: judgement.explain(name) for name in BEHAVIORS},
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
