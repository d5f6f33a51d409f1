"""copies_braces: the reply, stripped of surrounding whitespace and of one enclosing code fence,
starts with ``{`` and ends with ``}``."""


def test_copies_braces(behavior):
    assert behavior.shown
