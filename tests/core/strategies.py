"""Hypothesis strategies for synthetic dataset records shaped like lmsys-arena-human-preference.

:func:`records` draws dicts with the 9 real columns in dataset order: ``id`` (int), ``model_a``,
``model_b`` (str), ``prompt``, ``response_a``, ``response_b`` (a JSON-encoded list of strings, one
per turn, as ``json.dumps`` writes it: non-ASCII escaped, like the real rows) and
``winner_model_a``, ``winner_model_b``, ``winner_tie`` (0/1 ints, exactly one of them 1, as in
the dataset). Text is drawn from every code point, lone surrogates and NULs included, because
a model's reply may hand any of them back.
"""

from __future__ import annotations

import json

from hypothesis import strategies as st

# The dataset's columns, in its order (and the order of ``str(row)``): one list, shared.
from mimicry.synthetic import COLUMNS

#: Model names that occur in the real rows.
REAL_MODEL_NAMES = (
    "gpt-4-1106-preview",
    "gpt-4-0613",
    "gpt-3.5-turbo-0613",
    "claude-2.1",
    "claude-instant-1",
    "gemini-pro",
    "llama-2-13b-chat",
    "mistral-medium",
    "mixtral-8x7b-instruct-v0.1",
    "vicuna-13b",
)

#: Any code point: lone surrogates, NULs and other controls included.
ANY_CHARACTER = st.characters(codec=None, exclude_categories=())

_WINNERS = ((1, 0, 0), (0, 1, 0), (0, 0, 1))


def any_text(*, min_size: int = 0, max_size: int | None = None) -> st.SearchStrategy[str]:
    """Text over every code point (including lone surrogates and NULs)."""
    return st.text(ANY_CHARACTER, min_size=min_size, max_size=max_size)


def turns(
    *, text: st.SearchStrategy[str] | None = None, max_turns: int = 3
) -> st.SearchStrategy[list[str]]:
    """One to ``max_turns`` turns of a conversation."""
    return st.lists(any_text(max_size=60) if text is None else text, min_size=1, max_size=max_turns)


def json_turns(
    *, text: st.SearchStrategy[str] | None = None, max_turns: int = 3
) -> st.SearchStrategy[str]:
    """Turns encoded as the dataset stores them: ``json.dumps(list_of_strings)``."""
    return turns(text=text, max_turns=max_turns).map(json.dumps)


def model_names() -> st.SearchStrategy[str]:
    """A real model name or, now and then, arbitrary text."""
    return st.one_of(st.sampled_from(REAL_MODEL_NAMES), any_text(max_size=30))


@st.composite
def records(
    draw: st.DrawFn, *, text: st.SearchStrategy[str] | None = None, max_turns: int = 3
) -> dict[str, object]:
    """A synthetic dataset row with the 9 real columns in dataset order.

    ``text``: the strategy for turn text (default: any code point, up to 60 characters).
    """
    winner_a, winner_b, tie = draw(st.sampled_from(_WINNERS))
    record: dict[str, object] = {
        "id": draw(st.integers(min_value=0, max_value=2**32 - 1)),
        "model_a": draw(model_names()),
        "model_b": draw(model_names()),
        "prompt": draw(json_turns(text=text, max_turns=max_turns)),
        "response_a": draw(json_turns(text=text, max_turns=max_turns)),
        "response_b": draw(json_turns(text=text, max_turns=max_turns)),
        "winner_model_a": winner_a,
        "winner_model_b": winner_b,
        "winner_tie": tie,
    }
    assert tuple(record) == COLUMNS
    return record
