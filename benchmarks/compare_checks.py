"""The four checks the other tools run on each reply in ``python benchmarks/run.py compare``.

They stand for the suite's four behaviors (``copies_braces``, ``preserves_keys``,
``rewrites_prompt``, ``truncates``) at the cost of simple assertions: a few string tests and
regular expressions per reply, no parsing. ``compare_checks.js`` is the same four for promptfoo,
line for line; ``inspect_eval.py`` wraps these as inspect_ai scorers. Standard library only (it
runs in inspect_ai's own virtualenv).

Each takes the reply text, the record's keys and the record's ``prompt`` value.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_FENCE_OPEN = re.compile(r"^```[^\n]*\n?")
_FENCE_CLOSE = re.compile(r"\n?```$")
_PROMPT_VALUE = re.compile(r"""['"]prompt['"]\s*:\s*(['"])((?:\\.|(?!\1)[\s\S])*)""")
_CONTENT_WORD = re.compile(r"[a-z]{4,}")
_WORD = re.compile(r"\w+")


def body(reply: str) -> str:
    """The reply without surrounding whitespace and one enclosing code fence."""
    text = reply.strip()
    if text.startswith("```"):
        text = _FENCE_CLOSE.sub("", _FENCE_OPEN.sub("", text, count=1), count=1)
    return text.strip()


def has_key(text: str, key: str) -> bool:
    """``'key':`` or ``"key":`` (spaces before the colon allowed)."""
    return re.search(r"""['"]""" + re.escape(key) + r"""['"]\s*:""", text) is not None


def copies_braces(reply: str, keys: Sequence[str], prompt: str) -> bool:
    return body(reply).startswith("{")


def preserves_keys(reply: str, keys: Sequence[str], prompt: str) -> bool:
    return all(has_key(reply, key) for key in keys)


def _normalized(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def rewrites_prompt(reply: str, keys: Sequence[str], prompt: str) -> bool:
    match = _PROMPT_VALUE.search(reply)
    if match is None:
        return False
    value = match.group(2)
    if not value.strip() or _normalized(value) == _normalized(prompt):
        return False
    words = set(_CONTENT_WORD.findall(value.lower()))
    return any(word in words for word in _CONTENT_WORD.findall(prompt.lower()))


def truncates(reply: str, keys: Sequence[str], prompt: str) -> bool:
    text = body(reply)
    present = [has_key(text, key) for key in keys]
    if not (text.startswith("{") or any(present)):
        return False
    return not all(present) or not text.endswith("}")


CHECKS = {
    "copies_braces": copies_braces,
    "preserves_keys": preserves_keys,
    "rewrites_prompt": rewrites_prompt,
    "truncates": truncates,
}
