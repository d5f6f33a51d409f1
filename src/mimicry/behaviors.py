"""Behaviors for eval tests: the built-in detectors and :func:`expect`.

A behavior is a test in the eval suite's directory that takes the ``sample`` and ``reply``
fixtures: it passes when the reply shows the behavior, fails (an assertion) when it does not,
and skips when it cannot be judged. The built-in ones call a detector and hand its verdict to
:func:`expect`::

    from mimicry.behaviors import expect, truncates

    def test_truncates(sample, reply):
        expect(truncates(sample, reply))

A user's own behavior is any such test, with plain ``assert`` statements::

    def test_mentions_model_a(sample, reply):
        assert sample["model_a"] in reply.text
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import NoReturn

import pytest

from mimicry.core.behaviors import (
    BUILTIN_BEHAVIORS,
    BUILTIN_DETECTORS,
    DETECTORS_VERSION,
    Verdict,
    changes_id,
    copies_braces,
    preserves_keys,
    rewrites_prompt,
    truncates,
)
from mimicry.core.judge import answers_prompt
from mimicry.core.reply import Reply

#: What the running test's built-in detector said (set by the plugin around each eval test).
NOTES: ContextVar[dict[str, str] | None] = ContextVar("mimicry_notes", default=None)


def expect(verdict: Verdict) -> None:
    """Make the test's outcome the verdict: pass when the behavior is shown, fail with the
    detector's explanation when it is not, skip (not judged) when the verdict is null."""
    __tracebackhide__ = True
    notes = NOTES.get()
    if notes is not None:
        notes["detector"] = verdict.behavior
        notes["explanation"] = verdict.explanation
    if verdict.shown is None:
        _not_judged(verdict.explanation)
    if not verdict.shown:
        raise AssertionError(verdict.explanation)


def _not_judged(explanation: str) -> NoReturn:
    __tracebackhide__ = True
    reason = explanation if explanation.startswith("not judged") else f"not judged: {explanation}"
    pytest.skip(reason)


__all__ = [
    "BUILTIN_BEHAVIORS",
    "BUILTIN_DETECTORS",
    "DETECTORS_VERSION",
    "NOTES",
    "Reply",
    "Verdict",
    "answers_prompt",
    "changes_id",
    "copies_braces",
    "expect",
    "preserves_keys",
    "rewrites_prompt",
    "truncates",
]
