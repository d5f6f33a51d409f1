"""preserves_keys: every top-level key of the record appears as a key in the reply."""


def test_preserves_keys(behavior):
    assert behavior.shown
