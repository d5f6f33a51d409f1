"""The truncates behavior: its definition is the detector's docstring (and the README)."""

from mimicry.behaviors import expect, truncates


def test_truncates(sample, reply):
    expect(truncates(sample, reply))
