"""truncates: the reply is a partial copy of the record: it imitates the record (braces or at
least one key) but omits at least one of the record's keys or stops inside a value. A plain
answer is not a truncation; a reply cut by ``num_predict`` gets no verdict."""


def test_truncates(behavior):
    assert behavior.shown
