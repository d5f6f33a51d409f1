"""The preserves_keys behavior: its definition is the detector's docstring (and the README)."""

from mimicry.behaviors import expect, preserves_keys


def test_preserves_keys(sample, reply):
    expect(preserves_keys(sample, reply))
