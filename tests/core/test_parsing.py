"""The reply reader: where the imitation is, its keys and values, whether it stops part way,
the slips it recovers from, and hostile input."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mimicry.core import parsing
from mimicry.core.parsing import (
    SCAN_MAX_TOKENS,
    Imitation,
    lenient_string_list,
    read_imitation,
    safe_literal_eval,
    strip_code_fence,
    trim_partial_escape,
    unescape_lenient,
)
from tests.core.strategies import COLUMNS, any_text, records

RECORD = {
    "id": 30192,
    "model_a": "gpt-4-1106-preview",
    "prompt": '["What\'s the best first move in tic-tac-toe?"]',
    "winner_tie": 0,
}
KEYS = tuple(RECORD)


def read(reply: str) -> Imitation:
    return read_imitation(reply, KEYS)


# -- code fences ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("```json\n{'a': 1}\n```", "{'a': 1}"),
        ("  ```python\n{'a': 1}\n```\n ", "{'a': 1}"),
        ("```\n{'a': 1}\n```", "{'a': 1}"),
        ("~~~\n{'a': 1}\n~~~", "{'a': 1}"),
        ("```json\r\n{'a': 1}\r\n```\r\n", "{'a': 1}"),
        ("````\n{'a': '```'}\n````", "{'a': '```'}"),
        ("```json\n{'a': 1}```", "{'a': 1}"),
        ("```{'a': 1}```", "{'a': 1}"),
        # cut off inside its fence: the opening fence goes, the content stays
        ("```json\n{'a': 'ab", "{'a': 'ab"),
        # a fence that closes before the end does not enclose the reply
        ("```json\n{'a': 1}\n```\nHope this helps!", "```json\n{'a': 1}\n```\nHope this helps!"),
        # the first line of a record is not an info string
        ("```{'a': 1,\n'b': 2}\n```", "```{'a': 1,\n'b': 2}\n```"),
        ("  {'a': 1}\n", "{'a': 1}"),
        ("no fence at all", "no fence at all"),
        ("```", "```"),
        ("", ""),
    ],
)
def test_strip_code_fence(reply: str, expected: str) -> None:
    assert strip_code_fence(reply) == expected


# -- where the imitation is -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        repr(RECORD),
        json.dumps(RECORD),
        json.dumps(RECORD, indent=2),
        f"```json\n{json.dumps(RECORD)}\n```",
        f"```python\n{RECORD!r}\n```\nI kept every field.",
        f"Here is the record:\n{RECORD!r}",
        f"Sure! Here is the data:\n```json\n{json.dumps(RECORD)}\n```\nAnything else?",
        f"{RECORD!r}\n\n" + "A long comment about the record. " * 40,
    ],
    ids=[
        "repr",
        "json",
        "pretty",
        "fenced",
        "fence-trailer",
        "lead-in",
        "lead-in-fence",
        "long-trailer",
    ],
)
def test_a_complete_copy_is_read_whole_wherever_it_sits(reply: str) -> None:
    imitation = read(reply)

    assert imitation.form == "braced"
    assert imitation.keys == KEYS
    assert imitation.closed
    assert not imitation.cut_off
    assert imitation.values["prompt"] == RECORD["prompt"]


def test_lead_in_and_trailer_are_kept_as_prose() -> None:
    imitation = read(f"Here is the record:\n```json\n{json.dumps(RECORD)}\n```\nDone.")

    assert imitation.lead_in == "Here is the record:"
    assert imitation.trailer == "Done."


@pytest.mark.parametrize(
    "reply",
    [
        "Pineapple on pizza is a matter of taste!",
        "",
        "   \n\t ",
        # a JSON example inside an explanation: the trailer is longer than the snippet
        'To call a function, send:\n{"name": "f"}\nThe model then reads the name and the '
        "arguments, calls your function and hands the result back into the conversation.",
        # a long lead-in: an answer first, the record after it
        "The best first move is the center square, because it takes part in four lines. " * 4
        + f"\n{RECORD!r}",
        "In Python, a dict like {'a': 1} maps keys to values, and you read it with d['a'].",
    ],
    ids=["prose", "empty", "blank", "json-example", "long-lead-in", "inline-dict"],
)
def test_a_plain_answer_has_no_imitation(reply: str) -> None:
    imitation = read(reply)

    assert not imitation.found
    assert imitation.keys == ()


def test_a_braced_answer_is_an_imitation_of_the_format() -> None:
    imitation = read('{"answer": "The center square."}')

    assert imitation.opens_with_brace
    assert imitation.keys == ("answer",)


def test_a_list_of_records_stands_for_its_record_with_most_keys() -> None:
    other = {"id": 1, "note": "made up"}
    imitation = read(f"[{other!r}, {RECORD!r}]")

    assert imitation.form == "list"
    assert imitation.opens_with_brace
    assert imitation.wrapper == "[]"
    assert imitation.keys == KEYS
    assert imitation.values["id"] == "30192"


@pytest.mark.parametrize(
    ("reply", "wrapper"),
    [
        (json.dumps({"record": RECORD}), "record"),
        (repr({"input": RECORD, "output": "The center."}), "input"),
        (json.dumps({"data": [RECORD]}), "data"),
    ],
)
def test_a_wrapped_record_gives_its_keys(reply: str, wrapper: str) -> None:
    imitation = read(reply)

    assert imitation.wrapper == wrapper
    assert set(KEYS) <= set(imitation.keys)
    assert imitation.values["prompt"] == RECORD["prompt"]
    assert imitation.closed
    assert not imitation.cut_off


@pytest.mark.parametrize(
    "reply",
    [
        "\n".join(f"{key}: {value}" for key, value in RECORD.items()),
        "\n".join(f"- '{key}': {value!r}" for key, value in RECORD.items()),
        "\n".join(f'"{key}": {json.dumps(value)},' for key, value in RECORD.items()),
        "Here it is:\n" + "\n".join(f"* {key}: {value}" for key, value in RECORD.items()),
    ],
    ids=["yaml", "bullets", "json-lines", "lead-in-stars"],
)
def test_key_value_lines_are_an_imitation_without_braces(reply: str) -> None:
    imitation = read(reply)

    assert imitation.form == "lines"
    assert not imitation.opens_with_brace
    assert imitation.keys == KEYS
    assert imitation.values["id"] == "30192"
    assert not imitation.cut_off


def test_key_value_lines_ending_inside_a_quoted_value_are_cut_off() -> None:
    imitation = read("id: 30192\nmodel_a: gpt-4\nprompt: '[\"What is the best")

    assert imitation.form == "lines"
    assert imitation.cut_off


# -- the slips a careful reader reads through -----------------------------------------------------


def test_a_bare_apostrophe_in_a_single_quoted_value_is_text() -> None:
    reply = (
        "{'id': 30192, 'model_a': 'gpt-4-1106-preview', "
        "'prompt': 'What's the best first move in tic-tac-toe?', 'winner_tie': 0}"
    )
    imitation = read(reply)

    assert imitation.closed
    assert not imitation.cut_off
    assert imitation.keys == ("id", "model_a", "prompt", "winner_tie")
    assert imitation.values["prompt"] == "What's the best first move in tic-tac-toe?"


def test_a_bare_apostrophe_in_a_value_that_is_cut_off_is_still_cut_off() -> None:
    imitation = read("{'id': 30192, 'prompt': 'What's the best fir")

    assert imitation.cut_off
    assert imitation.values["prompt"] == "What's the best fir"


def test_unescaped_inner_double_quotes_stay_inside_the_value() -> None:
    reply = '{"id": 1, "prompt": "["Is it right?","OK, does pineapple belong?"]", "winner_tie": 0}'
    imitation = read(reply)

    assert imitation.closed
    assert not imitation.cut_off
    assert imitation.values["prompt"] == '["Is it right?","OK, does pineapple belong?"]'
    assert imitation.keys == ("id", "prompt", "winner_tie")


def test_unquoted_keys_and_a_missing_comma_are_read() -> None:
    imitation = read("{id: 30192, model_a: 'gpt-4'\n 'prompt': 'Hi', winner_tie: 0}")

    assert imitation.keys == ("id", "model_a", "prompt", "winner_tie")
    assert imitation.values["model_a"] == "gpt-4"


def test_an_ellipsis_after_a_value_ends_the_value() -> None:
    imitation = read("{'id': 30192, 'model_a': 'gpt-4', ...}")

    assert imitation.keys == ("id", "model_a")
    assert imitation.closed


def test_a_copy_stopping_before_its_last_brace_is_not_cut_off_but_unclosed() -> None:
    # every value is whole: the reply did not stop inside one (the record's brace is no value)
    imitation = read(repr(RECORD)[:-1])

    assert imitation.keys == KEYS
    assert not imitation.closed
    assert not imitation.cut_off
    assert read(repr(RECORD)[: repr(RECORD).rindex(":") + 1]).cut_off


def test_a_key_whose_value_never_came_still_counts_and_a_half_written_one_does_not() -> None:
    assert read("{'id': 30192, 'model_a'").keys == ("id", "model_a")
    assert read("{'id': 30192, 'model_").keys == ("id",)


def test_nested_keys_are_not_top_level_keys() -> None:
    imitation = read("{'id': 1, 'meta': {'prompt': 'x', 'winner_tie': 0, 'other': 2}}")

    # one level down, the inner mapping holds more of the record's keys: it is the record
    assert imitation.wrapper == "meta"
    imitation = read("{'id': 1, 'model_a': 'x', 'meta': {'prompt': 'x'}}")
    assert imitation.wrapper is None
    assert "prompt" not in imitation.keys


def test_value_spans_point_into_the_reply() -> None:
    reply = f"Here:\n{RECORD!r}"
    imitation = read(reply)

    start, end = imitation.spans["model_a"]
    assert reply[start:end] == "'gpt-4-1106-preview'"


def test_a_reply_is_never_evaluated_as_code() -> None:
    reply = "{'a': __import__('os').system('echo pwned')}"
    imitation = read(reply)

    assert imitation.method == "scan"
    assert imitation.keys == ("a",)


def test_an_invalid_escape_in_a_reply_raises_no_warning() -> None:
    # warnings are errors in this suite: a DeprecationWarning from literal_eval fails here
    assert read("{'a': '\\d', 'b': 1}").keys == ("a", "b")


# -- hostile input --------------------------------------------------------------------------------

HOSTILE = [
    "{" * 100_000,
    "[" * 100_000,
    "{" * 50_000 + "}" * 50_000,
    "{'a': " * 50_000,
    "}" * 100_000,
    "'" * 100_001,
    "\\" * 100_001,
    "{'a': '" + "\\" * 100_001,
    "{'a': " + "9" * 100_000 + "}",
    "{'a': 1e99999}",
    "{'a': [" + "1," * 200_000 + "]}",
    "{'a': '" + "x" * 1_000_000 + "'}",
    "\x00" * 1000,
    "{'\x00': '\ud800\udfff\x00'}",
    "```" * 10_000,
    "'k': x\n" * 100_000,
    "{'a': 'x', " * 100_000,
    "{'a': 'it's', " * 100_000,
]


@pytest.mark.parametrize("reply", HOSTILE, ids=lambda reply: repr(reply[:12]) + f"x{len(reply)}")
def test_hostile_replies_are_read_without_error(reply: str) -> None:
    imitation = read(reply)

    assert isinstance(imitation, Imitation)
    assert not (imitation.closed and imitation.cut_off)


def _calls(function: Callable[[], object]) -> int:
    """Python function calls made by ``function()``: a measure of work that no load changes."""
    count = 0

    def profile(frame: object, event: str, arg: object) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        function()
    finally:
        sys.setprofile(None)
    return count


@pytest.mark.parametrize(
    "unit",
    ["{'a': 'it's', ", "'k': x\n", "{'a': [1, {'b': \"c\"}], ", 'x" , "k": "v', "{", "a' , 'b"],
)
def test_reading_is_linear_in_the_reply_length(unit: str) -> None:
    # The work (function calls, C regex searches included) for twice the text is about twice
    # the work, and it stops growing once the scanner's token budget is spent: the wall-clock
    # bound itself is measured in benchmarks/, not here.
    small = _calls(lambda: read(unit * 2_000))
    large = _calls(lambda: read(unit * 4_000))
    huge = _calls(lambda: read(unit * 400_000))

    assert large <= 2.2 * small + 100
    assert huge <= 20 * SCAN_MAX_TOKENS


# -- properties -----------------------------------------------------------------------------------

_STRUCTURAL = st.text(st.sampled_from("{}[]()'\",:\\ abkx\n`-*"), max_size=200)


@given(st.one_of(any_text(), _STRUCTURAL))
def test_reading_never_raises_and_is_consistent(reply: str) -> None:
    imitation = read_imitation(reply, COLUMNS)

    assert len(set(imitation.keys)) == len(imitation.keys)
    assert set(imitation.values) <= set(imitation.keys)
    assert not (imitation.closed and imitation.cut_off)
    assert imitation.found == (imitation.form != "none")
    assert 0 <= imitation.start <= imitation.end <= len(reply)


@given(st.one_of(any_text(), _STRUCTURAL))
def test_helpers_never_raise(text: str) -> None:
    safe_literal_eval(text)
    trim_partial_escape(text)
    unescape_lenient(text)
    lenient_string_list("[" + text)
    strip_code_fence(text)


@given(records())
def test_a_records_repr_and_json_read_completely(record: dict[str, object]) -> None:
    for reply, method in ((repr(record), "literal"), (json.dumps(record), "json")):
        imitation = read_imitation(reply, COLUMNS)

        assert imitation.method == method
        assert imitation.closed
        assert not imitation.cut_off
        assert imitation.keys == COLUMNS
        assert imitation.values["prompt"] == record["prompt"]
        assert imitation.values["id"] == str(record["id"])


@given(records())
def test_a_fenced_or_framed_copy_is_complete(record: dict[str, object]) -> None:
    fenced = read_imitation(f"```python\n{record!r}\n```", COLUMNS)
    framed = read_imitation(f"Here you are:\n{record!r}\nAnything else?", COLUMNS)

    for imitation in (fenced, framed):
        assert imitation.keys == COLUMNS
        assert imitation.closed
        assert not imitation.cut_off


@given(records(), st.data())
def test_a_strict_prefix_of_a_records_repr_or_json_stops_part_way(
    record: dict[str, object], data: st.DataObject
) -> None:
    for text in (repr(record), json.dumps(record)):
        cut = data.draw(st.integers(min_value=len("{'id': "), max_value=len(text) - 1))
        imitation = read_imitation(text[:cut], COLUMNS)

        assert not imitation.closed
        assert "id" in imitation.keys
        if imitation.keys == COLUMNS and not imitation.cut_off:
            # only a whole last value (and the closing brace) can be missing without a cut
            assert cut > text.rindex(":") + 1


# -- helpers --------------------------------------------------------------------------------------


def test_safe_literal_eval_only_reads_bracketed_literals() -> None:
    assert safe_literal_eval(" [1, 'a', (2,)] ") == [1, "a", (2,)]
    assert safe_literal_eval("{'a': 1}") == {"a": 1}
    assert safe_literal_eval("{'a': 1} trailing") is None
    assert safe_literal_eval("1 + 1") is None
    assert safe_literal_eval("[" * 200 + "]" * 200) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("abc", "abc"),
        ("abc\\", "abc"),
        ("abc\\\\", "abc\\\\"),
        ("abc\\u20", "abc"),
        ("abc\\u2014", "abc\\u2014"),
        ("abc\\x4", "abc"),
        ("abc\\N{EM", "abc"),
        ("abc\\N{EM DASH}", "abc\\N{EM DASH}"),
        ("\\ud83d\\ude0", "\\ud83d"),
    ],
)
def test_trim_partial_escape(text: str, expected: str) -> None:
    assert trim_partial_escape(text) == expected


def test_unescape_lenient_undoes_python_and_json_escapes() -> None:
    assert unescape_lenient("a\\nb\\t\\u00e9\\x41\\\\") == "a\nb\téA\\"
    assert unescape_lenient("\\ud83d\\ude00") == "\U0001f600"
    assert unescape_lenient("keep \\q as is") == "keep q as is"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('["a", "b"]', ["a", "b"]),
        ("['a', 'b']", ["a", "b"]),
        ('["a", "b', ["a", "b"]),
        ('["a\\', ["a"]),
        ('["a", "it"s"]', ["a", 'it"s']),
        ("[]", []),
        ("[1, 2]", ["1", "2"]),
    ],
)
def test_lenient_string_list(text: str, expected: list[str]) -> None:
    assert lenient_string_list(text) == expected


def test_the_module_states_the_linear_bound() -> None:
    assert "50 ms per 1 MB" in (parsing.__doc__ or "")
