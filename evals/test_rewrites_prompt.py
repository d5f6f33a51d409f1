"""rewrites_prompt: the reply carries a ``prompt`` value that is not the record's prompt yet is
clearly about it (similar to the prompt or one of its turns at or above the threshold in
``mimicry.core.behaviors``). Verbatim copies and missing ``prompt`` fields are not rewrites."""


def test_rewrites_prompt(behavior):
    assert behavior.shown
