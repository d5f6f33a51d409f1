"""The changes_id behavior: its definition is the detector's docstring (and the README)."""

from mimicry.behaviors import changes_id, expect


def test_changes_id(sample, reply):
    expect(changes_id(sample, reply))
