"""Reply parsing: the stages, cut-off and fenced replies, and hostile input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mimicry.core.parsing import (
    ParsedReply,
    lenient_string_list,
    parse_reply,
    safe_literal_eval,
    strip_code_fence,
    trim_partial_escape,
    unescape_lenient,
)
from tests.core.strategies import COLUMNS, any_text, records

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


# -- the stages -----------------------------------------------------------------------------------


def test_a_json_object_parses_completely() -> None:
    parsed = parse_reply('{"id": 7, "prompt": "[\\"hi\\"]", "ok": true}')

    assert parsed.method == "json"
    assert parsed.complete
    assert not parsed.cut_off
    assert parsed.keys == ("id", "prompt", "ok")
    assert parsed.fields == {"id": "7", "prompt": '["hi"]', "ok": "True"}
    assert parsed.mapping == {"id": 7, "prompt": '["hi"]', "ok": True}


def test_a_python_dict_parses_as_a_literal() -> None:
    parsed = parse_reply("{'id': 7, 'prompt': 'it\\'s', 'ok': True, 'x': None}")

    assert parsed.method == "literal"
    assert parsed.complete
    assert parsed.fields["prompt"] == "it's"
    assert parsed.keys == ("id", "prompt", "ok", "x")


def test_a_fenced_reply_parses_like_the_bare_one() -> None:
    parsed = parse_reply("```python\n{'id': 7}\n```")

    assert (parsed.method, parsed.complete, parsed.text) == ("literal", True, "{'id': 7}")


def test_a_mapping_inside_prose_is_repaired_and_not_cut_off() -> None:
    parsed = parse_reply("Here is the row: {'id': 7, 'prompt': 'x'} as you asked.")

    assert parsed.method == "repaired"
    assert not parsed.complete
    assert not parsed.cut_off
    assert parsed.keys == ("id", "prompt")


def test_a_cut_off_literal_keeps_its_partial_last_value() -> None:
    parsed = parse_reply("{'id': 7, 'prompt': 'Is it morally")

    assert parsed.method == "repaired"
    assert not parsed.complete
    assert parsed.cut_off
    assert parsed.fields == {"id": "7", "prompt": "Is it morally"}


def test_a_cut_off_nested_value_is_closed() -> None:
    parsed = parse_reply("{'id': 7, 'turns': ['a', {'b': [1, 2")

    assert parsed.method == "repaired"
    assert parsed.mapping == {"id": 7, "turns": ["a", {"b": [1, 2]}]}


@pytest.mark.parametrize(
    "reply",
    [
        "{'id': 7, 'model_a': 'x', 'mod",
        "{'id': 7, 'model_a': 'x', 'flag': Tr",
        "{'id': 7, 'model_a': 'x', ",
    ],
)
def test_a_dangling_partial_entry_is_dropped(reply: str) -> None:
    parsed = parse_reply(reply)

    assert parsed.method == "repaired"
    assert parsed.mapping is not None
    assert list(parsed.mapping) == ["id", "model_a"]
    assert parsed.cut_off


def test_a_key_whose_value_never_came_still_counts_as_a_key() -> None:
    parsed = parse_reply("{'id': 7, 'model_a':")

    assert parsed.mapping == {"id": 7}
    assert parsed.keys == ("id", "model_a")
    assert "model_a" not in parsed.fields


def test_nested_keys_do_not_become_top_level_keys() -> None:
    cut = parse_reply("{'id': 1, 'x': {'prompt': 2}, 'flag': Tr")
    closed = parse_reply("{'id': 1, 'x': {'prompt': 2}, 'y': 'cut")

    assert cut.keys == ("id", "x", "flag")
    assert closed.keys == ("id", "x", "y")
    assert closed.fields["x"] == "{'prompt': 2}"


def test_a_huge_value_is_printed_within_bounds() -> None:
    parsed = parse_reply(
        json.dumps({"a": list(range(5_000)), "b": {str(i): i for i in range(5_000)}})
    )

    assert parsed.fields["a"].startswith("[0, 1, 2, ")
    assert parsed.fields["a"].endswith(", 999, ...]")
    assert parsed.fields["b"].startswith("{'0': 0, '1': 1, ")


def test_a_half_written_escape_is_trimmed_before_closing() -> None:
    assert parse_reply("{'a': 'caf\\u00").fields["a"] == "caf"
    assert parse_reply("{'a': 'end\\").fields["a"] == "end"
    assert parse_reply("{'a': 'two\\\\").fields["a"] == "two\\"


def test_a_stray_apostrophe_does_not_hide_later_keys() -> None:
    parsed = parse_reply("{'id': 1, 'prompt': 'it's fine', 'model_a': 'x'}")

    assert parsed.method == "repaired"
    assert parsed.keys == ("id", "prompt", "model_a")
    assert parsed.fields["model_a"] == "x"


def test_keys_without_braces_are_scanned() -> None:
    closed = parse_reply("'id': 5, \"prompt\": 'What is X?'")
    cut = parse_reply("'id': 5, 'prompt': 'What is")

    assert (closed.method, closed.keys, closed.cut_off) == ("scan", ("id", "prompt"), False)
    assert closed.fields == {"id": "5", "prompt": "What is X?"}
    assert (cut.method, cut.cut_off, cut.fields["prompt"]) == ("scan", True, "What is")


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "   ",
        "Don't worry, it's fine: the answer is 42.",
        "Pineapple on pizza? It's a matter of taste!",
        "[1, 2, 3]",
        "42",
        '"just a string"',
    ],
)
def test_a_plain_answer_has_no_structure(reply: str) -> None:
    parsed = parse_reply(reply)

    assert parsed.method == "none"
    assert parsed.mapping is None
    assert parsed.keys == ()
    assert not parsed.complete
    assert not parsed.cut_off


def test_json_literals_are_read_as_json_and_python_ones_as_python() -> None:
    assert parse_reply('{"a": true, "b": null}').mapping == {"a": True, "b": None}
    assert parse_reply("{'a': True, 'b': None}").mapping == {"a": True, "b": None}


def test_an_invalid_escape_in_a_reply_raises_no_warning() -> None:
    # filterwarnings=error turns a leaked DeprecationWarning/SyntaxWarning into a failure
    assert parse_reply("{'a': 'C:\\dir\\d'}").fields["a"] == "C:\\dir\\d"


def test_a_reply_is_never_evaluated_as_code() -> None:
    parsed = parse_reply("{'a': __import__('os').getcwd(), 'b': 1}")

    assert parsed.mapping is None
    assert parsed.method == "scan"
    assert parsed.fields == {"a": "__import__('os').getcwd()", "b": "1"}


def test_a_long_valid_json_object_is_complete_even_past_the_scan_budget() -> None:
    parsed = parse_reply(json.dumps({"id": 1, "turns": list(range(30_000))}))

    assert (parsed.method, parsed.complete, parsed.cut_off) == ("json", True, False)


def test_nuls_and_lone_surrogates_inside_strings_survive() -> None:
    parsed = parse_reply("{'a': 'x\x00y', 'b': 'lone \ud800 here'}")

    assert parsed.method == "literal"
    assert parsed.fields == {"a": "x\x00y", "b": "lone \ud800 here"}


@pytest.mark.parametrize(
    "reply",
    [
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
        "'k': x" * 100_000,
    ],
    ids=lambda reply: repr(reply[:12]) + f"x{len(reply)}",
)
def test_hostile_replies_are_parsed_without_error(reply: str) -> None:
    parsed = parse_reply(reply)

    assert isinstance(parsed, ParsedReply)
    assert parsed.complete == (parsed.method in ("json", "literal"))


# -- helpers --------------------------------------------------------------------------------------


def test_safe_literal_eval_only_reads_bracketed_literals() -> None:
    assert safe_literal_eval(" [1, 'a', (2,)] ") == [1, "a", (2,)]
    assert safe_literal_eval("{'a': 1}") == {"a": 1}
    assert safe_literal_eval("[1, 2] + [3]") is None
    assert safe_literal_eval("__import__('os')") is None
    assert safe_literal_eval("[__import__('os')]") is None
    assert safe_literal_eval("[" * 1000 + "]" * 1000) is None
    assert safe_literal_eval("'just a string'") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("abc", "abc"),
        ("abc\\", "abc"),
        ("abc\\\\", "abc\\\\"),
        ("abc\\\\\\", "abc\\\\"),
        ("abc\\x4", "abc"),
        ("abc\\x41", "abc\\x41"),
        ("abc\\u20", "abc"),
        ("abc\\u2019", "abc\\u2019"),
        ("abc\\U0001f60", "abc"),
        ("abc\\N{BULL", "abc"),
        ("abc\\N{BULLET}", "abc\\N{BULLET}"),
        ("abc\\n", "abc\\n"),
        ("abc\\u12\\", "abc"),
    ],
)
def test_trim_partial_escape(text: str, expected: str) -> None:
    assert trim_partial_escape(text) == expected


def test_unescape_lenient_undoes_python_and_json_escapes() -> None:
    assert unescape_lenient("a\\nb\\t\\\"c\\'\\\\\\/") == "a\nb\t\"c'\\/"
    assert unescape_lenient("\\u2019\\x41\\ud83d\\ude00") == "\u2019A\U0001f600"
    assert unescape_lenient("\\q stays q") == "q stays q"
    assert unescape_lenient("no escapes") == "no escapes"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('["one", "two"]', ["one", "two"]),
        ("['one', \"two\", 3]", ["one", "two", "3"]),
        ('["a \\"quoted\\", b", "c"]', ['a "quoted", b', "c"]),
        ('["ends in a backslash\\\\", "next"]', ["ends in a backslash\\", "next"]),
        ('["one", "tw', ["one", "tw"]),
        ('["caf\\u00', ["caf"]),
        ('["smile \\ud83d', ["smile "]),
        ("[", []),
        ("[]", []),
    ],
)
def test_lenient_string_list(text: str, expected: list[str]) -> None:
    assert lenient_string_list(text) == expected


# -- properties -----------------------------------------------------------------------------------

_STRUCTURAL = st.text(st.sampled_from("{}[]()'\",:\\ \n`abcid_0"), max_size=200)


@given(st.one_of(any_text(), _STRUCTURAL))
def test_parse_reply_never_raises_and_is_consistent(reply: str) -> None:
    parsed = parse_reply(reply)

    assert parsed.complete == (parsed.method in ("json", "literal"))
    assert (parsed.mapping is not None) == (parsed.method in ("json", "literal", "repaired"))
    assert not (parsed.complete and parsed.cut_off)
    assert len(set(parsed.keys)) == len(parsed.keys)
    assert set(parsed.fields) <= set(parsed.keys)
    assert parsed.text == strip_code_fence(reply)


@given(st.one_of(any_text(), _STRUCTURAL))
def test_helpers_never_raise(text: str) -> None:
    safe_literal_eval(text)
    trim_partial_escape(text)
    unescape_lenient(text)
    lenient_string_list("[" + text)
    strip_code_fence(text)


@given(records())
def test_a_records_repr_and_json_parse_completely(record: dict[str, object]) -> None:
    for reply, method in ((repr(record), "literal"), (json.dumps(record), "json")):
        parsed = parse_reply(reply)

        assert parsed.method == method
        assert parsed.complete
        assert not parsed.cut_off
        assert parsed.keys == COLUMNS
        assert parsed.fields["prompt"] == record["prompt"]
        assert parsed.fields["id"] == str(record["id"])


@given(records())
def test_a_fenced_or_prose_wrapped_copy_is_not_cut_off(record: dict[str, object]) -> None:
    fenced = parse_reply(f"```python\n{record!r}\n```")
    wrapped = parse_reply(f"Here you are: {record!r} Anything else?")

    assert fenced.complete
    assert fenced.keys == COLUMNS
    assert wrapped.method == "repaired"
    assert wrapped.keys == COLUMNS
    assert not wrapped.cut_off


@given(records(), st.data())
def test_a_strict_prefix_of_a_records_repr_is_cut_off(
    record: dict[str, object], data: st.DataObject
) -> None:
    text = repr(record)
    cut = data.draw(st.integers(min_value=len("{'id': "), max_value=len(text) - 1), label="cut")

    parsed = parse_reply(text[:cut])

    assert parsed.cut_off
    assert not parsed.complete
    assert "id" in parsed.keys


@given(records(), st.data())
def test_a_strict_prefix_of_a_records_json_is_cut_off(
    record: dict[str, object], data: st.DataObject
) -> None:
    text = json.dumps(record)
    cut = data.draw(st.integers(min_value=len('{"id": '), max_value=len(text) - 1), label="cut")

    parsed = parse_reply(text[:cut])

    assert parsed.cut_off
    assert "id" in parsed.keys
