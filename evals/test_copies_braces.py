"""The copies_braces behavior: its definition is the detector's docstring (and the README)."""

from mimicry.behaviors import copies_braces, expect


def test_copies_braces(sample, reply):
    expect(copies_braces(sample, reply))
