"""The four behaviors, the judgement of a reply, and its metrics and explanations."""

from __future__ import annotations

import difflib
import json
import time
from pathlib import Path
from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mimicry.core.behaviors import (
    BEHAVIORS,
    REWRITE_SIMILARITY_THRESHOLD,
    BehaviorName,
    Judgement,
    compare_prompt,
    copies_braces,
    imitates_record,
    judge,
    longest_common_substring,
    normalized_turns,
    preserves_keys,
    rewrites_prompt,
    truncates,
    verbatim_share,
)
from mimicry.core.parsing import parse_reply
from tests.core.strategies import COLUMNS, any_text, records

ROW_ID = 30192

#: What qwen2:0.5b did to row 30192 (hand-written in its manner): braces and keys copied, the
#: prompt rewritten into a more direct question, the id changed, and a stop part way through
#: response_a.
QWEN2_LIKE_REPLY = (
    "{'id': 30193, 'model_a': 'gpt-4-1106-preview', 'model_b': 'gpt-4-0613', "
    "'prompt': 'What percentage of managerial positions should be held by females?', "
    "'response_a': '[\"The question of whether it is morally right to aim for a certain "
    "percentage of females in managerial positions is a complex ethical issue that involves "
    "considerations of fairness, equality,"
)

ANSWER = (
    "The question of gender quotas in management is a complex ethical issue. Some argue that "
    "targets correct historical inequities, while others worry about tokenism. As for pineapple "
    "on pizza: absolutely, life is short!"
)


@pytest.fixture(scope="module")
def real_rows(real_rows_path: Path) -> dict[int, dict[str, object]]:
    """The 32 real rows by id, as ``datasets`` gives them (their repr is ``str(row)``)."""
    rows = [json.loads(line) for line in real_rows_path.read_text(encoding="utf-8").splitlines()]
    return {int(row["id"]): row for row in rows}


@pytest.fixture
def row(real_rows: dict[int, dict[str, object]]) -> dict[str, object]:
    """Row 30192, the row of the original qwen2:0.5b observation."""
    return real_rows[ROW_ID]


# -- the list of behaviors ------------------------------------------------------------------------


def test_behaviors_are_listed_once_in_report_order() -> None:
    assert BEHAVIORS == ("copies_braces", "preserves_keys", "rewrites_prompt", "truncates")
    assert BEHAVIORS == get_args(BehaviorName)


def test_the_judgement_has_one_verdict_per_behavior_in_order() -> None:
    assert tuple(judge({"id": 1, "prompt": '["x"]'}, "hi").verdicts) == BEHAVIORS


# -- the definitions, one by one -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("{'id': 1}", True),
        ("  {'id': 1}\n", True),
        ('```json\n{"id": 1}\n```', True),
        ("{}", True),
        ("{'id': 1", False),
        ("Sure: {'id': 1}", False),
        ("{'id': 1} Done.", False),
        ("[{'id': 1}]", False),
        ("", False),
        ("{", False),
    ],
)
def test_copies_braces(reply: str, expected: bool) -> None:
    assert copies_braces(parse_reply(reply)) is expected


def test_preserves_keys_needs_every_record_key() -> None:
    keys = ("id", "prompt")

    assert preserves_keys(parse_reply("{'prompt': 'x', 'id': 1, 'extra': 2}"), keys)
    assert preserves_keys(parse_reply("{'id': 1, 'prompt': 'cut off"), keys)
    assert not preserves_keys(parse_reply("{'id': 1}"), keys)
    assert not preserves_keys(parse_reply("The id is 1 and the prompt is x."), keys)
    assert preserves_keys(parse_reply("whatever"), ())


@pytest.mark.parametrize(
    ("reply", "imitates", "truncated"),
    [
        ("{'id': 1, 'prompt': 'x'}", True, False),
        ("Here: {'id': 1, 'prompt': 'x'} done", True, False),
        ("{'id': 1, 'prompt': 'x", True, True),
        ("{'id': 1}", True, True),
        ("{'other': 1}", True, True),
        ("{'id': 1, 'prompt': 'x', ", True, True),
        ("'id': 1, 'prompt': 'x'", True, False),
        ("'id': 1, 'prompt': 'x", True, True),
        ("The answer is 42.", False, False),
        ("{'a}", True, True),
    ],
)
def test_truncates_is_a_partial_copy(reply: str, imitates: bool, truncated: bool) -> None:
    parsed = parse_reply(reply)
    keys = ("id", "prompt")

    assert imitates_record(parsed, keys) is imitates
    assert truncates(parsed, keys) is truncated


def test_rewrites_prompt_needs_a_changed_but_similar_prompt() -> None:
    assert rewrites_prompt(compare_prompt("Does pineapple belong on pizza?", RECORD_PROMPT))
    assert not rewrites_prompt(compare_prompt(RECORD_PROMPT, RECORD_PROMPT))
    assert not rewrites_prompt(compare_prompt("What is the capital of France?", RECORD_PROMPT))
    assert not rewrites_prompt(compare_prompt("", RECORD_PROMPT))
    assert not rewrites_prompt(None)


# -- prompt comparison ----------------------------------------------------------------------------

RECORD_PROMPT = json.dumps(
    [
        "Is it morally right to try to have a certain percentage of females on managerial "
        "positions?",
        "OK, does pineapple belong on a pizza? Relax and give me fun answer.",
    ]
)
TURN_1, TURN_2 = json.loads(RECORD_PROMPT)


@pytest.mark.parametrize(
    "copy",
    [
        RECORD_PROMPT,
        json.dumps([TURN_1, TURN_2], indent=2),
        repr([TURN_1, TURN_2]),
        str([TURN_1, TURN_2]).replace("'", '"'),
        f"{TURN_1} {TURN_2}",
        f"  {TURN_1}\n\n{TURN_2}  ",
        f'"{TURN_1} {TURN_2}"',
        TURN_2,
        TURN_1.replace("?", "").replace("positions", "positions?"),
        RECORD_PROMPT[:40],
        f'["{TURN_1}", "OK, does pinea',
    ],
)
def test_copies_of_the_prompt_are_verbatim_and_not_rewrites(copy: str) -> None:
    comparison = compare_prompt(copy, RECORD_PROMPT)

    assert comparison.verbatim
    assert not rewrites_prompt(comparison)


@pytest.mark.parametrize(
    ("original", "rewrite"),
    [
        # more direct questions, as small models write them
        (TURN_1, "What percentage of managerial positions should be held by females?"),
        (TURN_1, "Is it morally right to have a certain percentage of women in managerial roles?"),
        (TURN_1, "Is it right to have a percentage of females in management?"),
        (TURN_2, "Does pineapple belong on pizza?"),
        (
            "What is the best way to travel from Tel-Aviv to Jerusalem? Car? Bus? Plane?",
            "What is the best way to get from Tel Aviv to Jerusalem?",
        ),
        (
            "How can I create a test set for a very rare category? I want to build a classifier.",
            "How do I build a test set for a rare category classifier?",
        ),
        ("explain function calling. how would you call a function?", "How do you call a function?"),
        (
            "Write me a poem in urdu in the style of Iqbal on selflessness",
            "Write a poem about selflessness in the style of Iqbal",
        ),
        (
            "Construct a rap battle, in the style of Epic Rap Battles of History, with rhyme and "
            "meter and personal attacks relevant to each character, between Pikachu and Zeus. "
            "Each participant gets 2 verses. There is no announcer and Zeus goes first.",
            "Write a rap battle between Pikachu and Zeus.",
        ),
    ],
)
def test_rewritten_questions_are_about_the_original(original: str, rewrite: str) -> None:
    comparison = compare_prompt(rewrite, json.dumps([original]))

    assert not comparison.verbatim
    assert comparison.similarity >= REWRITE_SIMILARITY_THRESHOLD
    assert rewrites_prompt(comparison)


@pytest.mark.parametrize(
    ("original", "other"),
    [
        (TURN_1, "What is the capital of France?"),
        (TURN_1, "What is the best way to learn Python programming?"),
        (TURN_2, "Can you recommend a good book about the Roman Empire?"),
        ("Who made you?", "What is this?"),
        ("Why water is not used in bath tub?", "Tell me a joke."),
    ],
)
def test_unrelated_questions_are_not_rewrites(original: str, other: str) -> None:
    comparison = compare_prompt(other, json.dumps([original]))

    assert comparison.similarity < REWRITE_SIMILARITY_THRESHOLD
    assert not rewrites_prompt(comparison)


def test_the_prompt_is_compared_to_its_best_turn() -> None:
    whole = compare_prompt("Does pineapple belong on pizza?", RECORD_PROMPT)
    single = compare_prompt("Does pineapple belong on pizza?", json.dumps([TURN_2]))

    assert whole.similarity == single.similarity


@pytest.mark.parametrize(
    ("prompt", "turns"),
    [
        ('["a  b", "c\\nd"]', ["a b", "c d"]),
        ("['a', 'b']", ["a", "b"]),
        ('["What\\u2019s \\"this\\"?"]', ["Whats this?"]),
        ("'quoted'", ["quoted"]),
        ('["", "x"]', ["x"]),
        ('["cut off', ["cut off"]),
        ("plain text", ["plain text"]),
        ("[1, 2]", ["1", "2"]),
        ("", []),
    ],
)
def test_normalized_turns(prompt: str, turns: list[str]) -> None:
    assert normalized_turns(prompt) == turns


# -- judge ----------------------------------------------------------------------------------------


def test_the_repr_of_the_real_row_is_a_complete_copy(row: dict[str, object]) -> None:
    judgement = judge(row, str(row))

    assert judgement.verdicts == {
        "copies_braces": True,
        "preserves_keys": True,
        "rewrites_prompt": False,
        "truncates": False,
    }
    assert judgement.metrics["kept_keys"] == list(COLUMNS)
    assert judgement.metrics["missing_keys"] == []
    assert judgement.metrics["id_changed"] is False
    assert judgement.metrics["prompt_similarity"] == 1.0
    assert judgement.metrics["prompt_verbatim"] is True
    assert judgement.metrics["verbatim_share"] == 1.0
    assert judgement.metrics["shorter_than_input"] is False
    assert judgement.metrics["parse_method"] == "literal"
    assert judgement.flags == ()


def test_the_json_of_the_real_row_is_a_complete_copy(row: dict[str, object]) -> None:
    judgement = judge(row, "```json\n" + json.dumps(row, indent=2) + "\n```")

    assert judgement.verdicts == {
        "copies_braces": True,
        "preserves_keys": True,
        "rewrites_prompt": False,
        "truncates": False,
    }
    assert judgement.metrics["parse_method"] == "json"
    share = judgement.metrics["verbatim_share"]
    assert isinstance(share, float)
    assert 0 < share < 1  # JSON quotes differ from the repr's


def test_the_qwen2_like_reply_to_the_real_row(row: dict[str, object]) -> None:
    judgement = judge(row, QWEN2_LIKE_REPLY)

    assert judgement.verdicts == {
        "copies_braces": False,
        "preserves_keys": False,
        "rewrites_prompt": True,
        "truncates": True,
    }
    metrics = judgement.metrics
    assert metrics["id_changed"] is True
    assert metrics["kept_keys"] == ["id", "model_a", "model_b", "prompt", "response_a"]
    assert metrics["missing_keys"] == [
        "response_b",
        "winner_model_a",
        "winner_model_b",
        "winner_tie",
    ]
    similarity = metrics["prompt_similarity"]
    assert isinstance(similarity, float)
    assert REWRITE_SIMILARITY_THRESHOLD <= similarity < 1
    assert metrics["prompt_verbatim"] is False
    assert metrics["cut_off"] is True
    assert metrics["shorter_than_input"] is True
    assert metrics["parse_method"] == "repaired"
    assert judgement.explain("copies_braces") == (
        "reply ends with '…s of fairness, equality,' (not '}')"
    )
    assert "similarity" in judgement.explain("rewrites_prompt")
    assert "stops inside a value" in judgement.explain("truncates")


def test_a_plain_answer_to_the_real_row_shows_no_behavior(row: dict[str, object]) -> None:
    judgement = judge(row, ANSWER)

    assert judgement.verdicts == dict.fromkeys(BEHAVIORS, False)
    assert judgement.metrics["prompt_similarity"] is None
    assert judgement.metrics["id_changed"] is None
    assert judgement.metrics["parse_method"] == "none"
    assert judgement.explain("copies_braces") == (
        "reply starts with 'The question of gender q…' (not '{')"
    )
    assert judgement.explain("truncates").startswith("plain answer")


def test_every_real_rows_repr_and_json_are_complete_copies(
    real_rows: dict[int, dict[str, object]],
) -> None:
    for record in real_rows.values():
        for reply in (str(record), json.dumps(record)):
            verdicts = judge(record, reply).verdicts

            assert verdicts == {
                "copies_braces": True,
                "preserves_keys": True,
                "rewrites_prompt": False,
                "truncates": False,
            }, (record["id"], reply[:40])


def test_an_input_cut_by_the_server_gets_no_verdicts(row: dict[str, object]) -> None:
    judgement = judge(row, QWEN2_LIKE_REPLY, input_truncated=True)

    assert judgement.verdicts == dict.fromkeys(BEHAVIORS)
    assert judgement.flags == ("input_truncated",)
    assert judgement.metrics["id_changed"] is True  # metrics are still recorded
    assert "input" in judgement.explain("truncates")


def test_a_capped_output_gets_no_truncation_verdict(row: dict[str, object]) -> None:
    judgement = judge(row, QWEN2_LIKE_REPLY, output_capped=True)

    assert judgement.verdicts == {
        "copies_braces": False,
        "preserves_keys": False,
        "rewrites_prompt": True,
        "truncates": None,
    }
    assert judgement.flags == ("output_capped",)
    assert "num_predict" in judgement.explain("truncates")


def test_a_record_without_a_prompt_gets_no_rewrite_verdict() -> None:
    judgement = judge({"id": 1, "other": "x"}, "{'id': 2, 'prompt': 'y'}")

    assert judgement.verdicts["rewrites_prompt"] is None
    assert judgement.verdicts["copies_braces"] is True
    assert judgement.flags == ("record_without_prompt",)


def test_id_changed_compares_the_id_as_text() -> None:
    record = {"id": 30192, "prompt": '["x"]'}

    assert judge(record, "{'id': 30192}").metrics["id_changed"] is False
    assert judge(record, '{"id": "30192"}').metrics["id_changed"] is False
    assert judge(record, "{'id': 30193}").metrics["id_changed"] is True
    assert judge(record, "{'prompt': 'x'}").metrics["id_changed"] is None


def test_to_dict_is_plain_json(row: dict[str, object]) -> None:
    judgement = judge(row, QWEN2_LIKE_REPLY, output_capped=True)
    as_dict = judgement.to_dict()

    assert set(as_dict) == {"behaviors", "metrics", "flags"}
    assert json.loads(json.dumps(as_dict, allow_nan=False)) == as_dict
    assert as_dict["flags"] == ["output_capped"]


def test_explain_rejects_an_unknown_behavior() -> None:
    judgement = judge({"id": 1, "prompt": '["x"]'}, "hi")

    with pytest.raises(ValueError, match=r"unknown behavior 'copies_brace': expected one of"):
        judgement.explain("copies_brace")


def test_explanations_are_one_short_line(row: dict[str, object]) -> None:
    replies = [str(row), QWEN2_LIKE_REPLY, ANSWER, "", "\n" * 50 + "x" * 10_000, "\x00\ud800" * 99]
    for reply in replies:
        judgement = judge(row, reply)
        for behavior in BEHAVIORS:
            line = judgement.explain(behavior)

            assert line
            assert "\n" not in line
            assert len(line) <= 200


# -- verbatim share -------------------------------------------------------------------------------


def test_verbatim_share() -> None:
    record = "{'id': 1, 'prompt': 'Is it morally right to try to have a certain percentage?'}"

    assert verbatim_share(record, record) == 1.0
    assert verbatim_share("", record) is None
    assert verbatim_share("Completely different words here!", record) == 0.0
    half = verbatim_share(record[:40] + "#" * 40, record)
    assert half == 0.5


@given(
    noise_a=st.text("ab", max_size=300),
    noise_b=st.text("xy", max_size=300),
    chunk=st.text("cd", min_size=23, max_size=400),
    split_a=st.integers(0, 300),
    split_b=st.integers(0, 300),
)
def test_longest_common_substring_finds_a_planted_copy(
    noise_a: str, noise_b: str, chunk: str, split_a: int, split_b: int
) -> None:
    # Only the chunk's letters are shared, so the chunk is the longest common substring.
    text = noise_a[:split_a] + chunk + noise_a[split_a:]
    source = noise_b[:split_b] + chunk + noise_b[split_b:]

    assert longest_common_substring(text, source) == len(chunk)


@given(st.text("abc", max_size=120), st.text("abc", max_size=120))
def test_longest_common_substring_is_a_lower_bound(text: str, source: str) -> None:
    match = difflib.SequenceMatcher(None, text, source, autojunk=False).find_longest_match()
    found = longest_common_substring(text, source)

    assert found <= match.size
    if min(len(text), len(source)) < 16:
        assert found == match.size


# -- properties -----------------------------------------------------------------------------------

COMPLETE_COPY = {
    "copies_braces": True,
    "preserves_keys": True,
    "rewrites_prompt": False,
    "truncates": False,
}


@given(records())
def test_a_records_repr_and_json_are_judged_complete_copies(record: dict[str, object]) -> None:
    for reply in (repr(record), json.dumps(record)):
        judgement = judge(record, reply)

        assert judgement.verdicts == COMPLETE_COPY
        assert judgement.metrics["id_changed"] is False
        assert judgement.metrics["kept_keys"] == list(COLUMNS)
    assert judge(record, repr(record)).metrics["verbatim_share"] == 1.0


@given(records(), st.data())
def test_a_strict_prefix_of_a_records_repr_is_a_truncation(
    record: dict[str, object], data: st.DataObject
) -> None:
    text = repr(record)
    cut = data.draw(st.integers(min_value=11, max_value=len(text) - 1), label="cut")

    judgement = judge(record, text[:cut])

    assert judgement.verdicts["truncates"] is True
    assert judgement.verdicts["rewrites_prompt"] is False
    assert judgement.verdicts["copies_braces"] is not True or text[cut - 1] == "}"


@given(records(), st.data())
def test_a_cut_inside_the_prompt_value_is_a_truncation_not_a_rewrite(
    record: dict[str, object], data: st.DataObject
) -> None:
    text = repr(record)
    value = repr(record["prompt"])
    start = text.index(", 'prompt': ") + len(", 'prompt': ")
    assert text[start : start + len(value)] == value
    cut = data.draw(st.integers(min_value=start + 1, max_value=start + len(value) - 1))

    judgement = judge(record, text[:cut])

    assert judgement.verdicts["truncates"] is True
    assert judgement.verdicts["rewrites_prompt"] is False
    assert judgement.metrics["cut_off"] is True
    assert judgement.metrics["missing_keys"] == list(COLUMNS[4:])


@given(records(), any_text(), st.booleans(), st.booleans())
def test_judge_never_raises_and_stays_plain(
    record: dict[str, object], reply: str, capped: bool, cut: bool
) -> None:
    judgement = judge(record, reply, output_capped=capped, input_truncated=cut)

    assert isinstance(judgement, Judgement)
    assert tuple(judgement.verdicts) == BEHAVIORS
    assert json.loads(json.dumps(judgement.to_dict(), allow_nan=False)) == judgement.to_dict()
    if cut:
        assert set(judgement.verdicts.values()) == {None}
    if capped:
        assert judgement.verdicts["truncates"] is None
    for behavior in BEHAVIORS:
        line = judgement.explain(behavior)
        assert "\n" not in line
        assert len(line) <= 200


@settings(max_examples=20)
@given(records(), st.sampled_from(["{", "[", "{'a': ", "'", "\\", "\x00", "\ud800", "x"]))
def test_judge_copes_with_deep_and_repetitive_replies(record: dict[str, object], unit: str) -> None:
    judgement = judge(record, unit * 20_000)

    assert tuple(judgement.verdicts) == BEHAVIORS


def test_hostile_megabyte_replies_are_judged_within_a_generous_bound(
    row: dict[str, object],
) -> None:
    # The stated bound is 50 ms per 1 MB reply (module docstrings); 1 s keeps CI machines calm.
    megabyte = 1_000_000
    replies = [
        "{" * megabyte,
        "{'a': [" + "1," * (megabyte // 2),
        "{'prompt': '" + "\\" * megabyte,
        "'prompt': 'x" * (megabyte // 12),
        "ab c'd: {e" * (megabyte // 10),
        str(row) * (megabyte // len(str(row))),
        "\x00\ud800" * (megabyte // 2),
    ]
    for reply in replies:
        started = time.perf_counter()
        judge(row, reply)
        elapsed = time.perf_counter() - started

        assert elapsed < 1.0, (reply[:20], elapsed)
