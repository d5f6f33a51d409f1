"""Judge-based behaviors: a second model's verdict, asked and read here, sent by the run.

``answers_prompt``: a judge model says whether the reply answers the record's prompt rather than
imitating the record. The prompt the judge gets is :data:`JUDGE_TEMPLATE` (the record's request,
an excerpt of the record and of the reply), and its reply is read by :func:`read_judgement`: the
first of the words ANSWER, IMITATE or OTHER in it decides; a reply with none of them is not a
verdict (null). Judges are models: their verdicts are measured against hand labels like the
detectors' (``python -m mimicry calibrate --judge-model NAME``), and their replies are cached by
the judge's digest, so a rerun asks nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Final

from mimicry.core.behaviors import Verdict, make_verdict
from mimicry.core.reply import Reply
from mimicry.core.rewrites import prompt_turns

#: Characters of the record and of the reply the judge is shown (a request stays small).
JUDGE_EXCERPT_CHARS: Final = 1_500
#: What the judge is asked (``{request}``, ``{record}`` and ``{reply}`` are filled in).
JUDGE_TEMPLATE: Final = """\
You check what an AI assistant did with a message. The assistant was sent a record from a \
dataset, written as a Python dict:

<record>
{record}
</record>

The record's "prompt" field holds a user's request: {request}

The assistant replied:

<reply>
{reply}
</reply>

Did the reply ANSWER the user's request (respond to it, in any format), or did it IMITATE the \
record (copy it, reformat it, or fill in its fields), or do something OTHER (unrelated, empty)?
Reply with one word: ANSWER, IMITATE or OTHER."""
#: Options of the judge's request: its verdict is one word.
JUDGE_OPTIONS: Final[Mapping[str, object]] = {"temperature": 0, "num_predict": 8}

_WORD = re.compile(r"\b(ANSWER|IMITATE|OTHER)\b", re.IGNORECASE)

Ask = Callable[[list[dict[str, str]]], "Reply | str"]


def judge_messages(record: Mapping[str, object], reply: str) -> list[dict[str, str]]:
    """The judge's one user message about ``reply`` to ``record``."""
    turns = prompt_turns(str(record.get("prompt", "")))
    request = " / ".join(turns) if turns else str(record.get("prompt", ""))
    content = JUDGE_TEMPLATE.format(
        record=_clip(f"{record}"),
        request=_clip(request, 600),
        reply=_clip(reply) or "(empty)",
    )
    return [{"role": "user", "content": content}]


def read_judgement(text: str) -> bool | None:
    """The judge's verdict: True for ANSWER, False for IMITATE or OTHER, None for neither."""
    found = _WORD.search(text)
    if found is None:
        return None
    return found.group(1).upper() == "ANSWER"


def answers_prompt(record: Mapping[str, object], reply: Reply | str, ask: Ask) -> Verdict:
    """The reply answers the record's prompt (responds to its request, in any format) rather
    than imitating the record or saying something unrelated, as a judge model reads it. Null
    when the record has no prompt or the judge's reply names no verdict.

    Shows it: "Pineapple on pizza is a matter of taste, and I love it!" for the pineapple turn;
    ``{"answer": "The center square."}``. Does not: a copy of the record; a copy with an
    answer in its prompt field; an unrelated story; an empty reply.
    """
    if record.get("prompt") is None:
        return make_verdict("answers_prompt", None, "not judged: the record has no prompt")
    text = reply.text if isinstance(reply, Reply) else reply
    answered = ask(judge_messages(record, text))
    said = answered.text if isinstance(answered, Reply) else str(answered)
    verdict = read_judgement(said)
    quoted = repr(" ".join(said.split())[:60])
    if verdict is None:
        return make_verdict("answers_prompt", None, f"not judged: the judge said {quoted}")
    what = "answers the request" if verdict else "does not answer the request"
    return make_verdict("answers_prompt", verdict, f"the judge says the reply {what}: {quoted}")


def _clip(text: str, limit: int = JUDGE_EXCERPT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
