"""The rewrites_prompt behavior: its definition is the detector's docstring (and the README)."""

from mimicry.behaviors import expect, rewrites_prompt


def test_rewrites_prompt(sample, reply):
    expect(rewrites_prompt(sample, reply))
