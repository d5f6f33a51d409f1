"""The built-in behaviors: each definition's examples, the headline case, nulls, explanations,
measures, and properties over synthetic records."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mimicry.core.behaviors import (
    BUILTIN_BEHAVIORS,
    BUILTIN_DETECTORS,
    RAW_MEASURES,
    changes_id,
    copies_braces,
    definition,
    imitation_evidence,
    judge,
    measure,
    preserves_keys,
    rewrites_prompt,
    truncates,
)
from mimicry.core.reply import Reply
from mimicry.core.rewrites import compare_prompt, prompt_turns
from mimicry.core.verbatim import longest_common_substring, verbatim_share
from tests.core.strategies import COLUMNS, any_text, records

ROW_ID = 30192

#: What qwen2:0.5b was seen doing to row 30192 (hand-written in its manner): braces and keys
#: copied, the prompt rewritten into a more direct question, the id changed, and a stop part
#: way through response_a.
QWEN2_LIKE_REPLY = (
    "{'id': 30193, 'model_a': 'gpt-4-1106-preview', 'model_b': 'gpt-4-0613', "
    "'prompt': '[\"Should a company aim for a percentage of women in management?\"]', "
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


def verdicts(row: dict[str, object], reply: Reply | str) -> dict[str, bool | None]:
    return {name: verdict.shown for name, verdict in judge(row, reply).items()}


# -- the list and the definitions -----------------------------------------------------------------


def test_the_built_in_behaviors_are_listed_once_in_report_order() -> None:
    assert BUILTIN_BEHAVIORS == (
        "copies_braces",
        "preserves_keys",
        "rewrites_prompt",
        "truncates",
        "changes_id",
    )
    assert tuple(BUILTIN_DETECTORS) == BUILTIN_BEHAVIORS


@pytest.mark.parametrize("name", BUILTIN_BEHAVIORS)
def test_each_definition_is_one_paragraph_with_examples_after_it(name: str) -> None:
    text = definition(name)
    doc = BUILTIN_DETECTORS[name].__doc__ or ""

    assert text
    assert "\n" not in text
    assert "Shows it:" in doc
    assert "Does not:" in doc
    assert "Shows it:" not in text


# -- the headline case ----------------------------------------------------------------------------


def test_the_qwen2_like_cut_copy_shows_the_headline_behaviors_together(
    row: dict[str, object],
) -> None:
    assert verdicts(row, QWEN2_LIKE_REPLY) == {
        "copies_braces": True,
        "preserves_keys": False,
        "rewrites_prompt": True,
        "truncates": True,
        "changes_id": True,
    }


def test_a_complete_copy_shows_form_and_keys_only(row: dict[str, object]) -> None:
    for reply in (repr(row), json.dumps(row), json.dumps(row, indent=2), f"```\n{row!r}\n```"):
        assert verdicts(row, reply) == {
            "copies_braces": True,
            "preserves_keys": True,
            "rewrites_prompt": False,
            "truncates": False,
            "changes_id": False,
        }


def test_a_plain_answer_shows_no_behavior(row: dict[str, object]) -> None:
    assert set(verdicts(row, ANSWER).values()) == {False}


# -- each definition's examples -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "shown"),
    [
        ("{'id': 30192, 'model_a': 'gpt-4-1106-pre", True),
        ('Here is the record:\n{"id": 30192}', True),
        ('{"answer": "The center square."}', True),
        ("[{'id': 30192}, {'id': 30193}]", True),
        ("Pineapple on pizza is a matter of taste!", False),
        ("id: 30192\nmodel_a: gpt-4-1106-preview", False),
        ("", False),
    ],
)
def test_copies_braces_is_about_form(row: dict[str, object], reply: str, shown: bool) -> None:
    assert copies_braces(row, reply).shown is shown


def test_preserves_keys_in_any_notation(row: dict[str, object]) -> None:
    notations = [
        json.dumps({"record": row}),
        "\n".join(f"{key}: {value}" for key, value in row.items()),
        "\n".join(f"- **{key}**: {value}" for key, value in row.items()),
        "| key | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in row.items()),
        ",".join(row) + "\n" + ",".join(json.dumps(str(v)) for v in row.values()),
        "dict(" + ", ".join(f"{k}={v!r}" for k, v in row.items()) + ")",
        "{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in row.items()) + "}",
    ]
    for reply in notations:
        assert preserves_keys(row, reply).shown is True, reply[:60]


def test_preserves_keys_misses_a_dropped_key_and_nulls_a_capped_reply(
    row: dict[str, object],
) -> None:
    dropped = repr({k: v for k, v in row.items() if k != "winner_tie"})
    cut = repr(row)[:200]

    assert preserves_keys(row, dropped).shown is False
    assert "winner_tie" in preserves_keys(row, dropped).explanation
    assert preserves_keys(row, cut).shown is False
    assert preserves_keys(row, Reply(cut, done_reason="length")).shown is None
    assert preserves_keys(row, Reply(repr(row) + " more", done_reason="length")).shown is True
    assert preserves_keys(row, "The record has an id, a prompt and two responses.").shown is False


def test_truncates_needs_this_record_and_a_missing_key_or_a_cut(row: dict[str, object]) -> None:
    assert truncates(row, repr(row)[:300]).shown is True
    assert truncates(row, "{'id': 30192, 'mo").shown is True
    assert truncates(row, repr({k: v for k, v in row.items() if k != "winner_tie"})).shown is True
    assert truncates(row, repr(row)).shown is False
    assert truncates(row, repr(row)[:-1]).shown is False  # every value whole, only "}" missing
    assert truncates(row, '{"answer": "4"}').shown is False
    assert truncates(row, "{'sum': 15}").shown is False
    assert (
        truncates(row, 'In Python:\n```python\nd = {"id": 1}\n```\nthen read d["id"].').shown
        is False
    )
    assert truncates(row, "").shown is False
    assert truncates(row, Reply(repr(row)[:300], done_reason="length")).shown is None


def test_a_reply_echoing_the_prompt_list_imitates_the_record(row: dict[str, object]) -> None:
    prompt = str(row["prompt"])
    assert imitation_evidence(row, prompt) is not None
    assert truncates(row, prompt).shown is True
    # an answer that shares the record's words is not a copy of it
    assert imitation_evidence(row, ANSWER) is None


def test_changes_id(row: dict[str, object]) -> None:
    assert changes_id(row, QWEN2_LIKE_REPLY).shown is True
    assert changes_id(row, repr(row)).shown is False
    assert changes_id(row, json.dumps({**row, "id": str(row["id"])})).shown is False
    assert changes_id(row, repr({k: v for k, v in row.items() if k != "id"})).shown is False
    assert changes_id(row, "{'id': 3019").shown is False  # cut inside the id: not another id
    assert changes_id(row, "The answer is id 12.").shown is False
    assert changes_id({"prompt": "x", "model_a": "y"}, "{'prompt': 'x'}").shown is None


@pytest.mark.parametrize(
    ("reply_prompt", "kind"),
    [
        ('["Does pineapple belong on pizza?"]', "rewrite"),
        ("Should firms set quotas for women in management?", "rewrite"),
        ("Wer hat dich gemacht?", "translation"),
        ("¿Está bien tener cuotas de mujeres en puestos directivos?", "translation"),
        ("Это нормально — квоты для женщин-руководителей?", "translation"),
        (
            "is it morally right to try to have a certain percentage of females on managerial "
            "positions",
            "copy",
        ),
        ('["Is it morally right to try to have a certain percentage of fem', "copy"),
        ("The best answer is that quotas are fair when they correct past bias.", "answer"),
        ("Yes, pineapple belongs on pizza.", "answer"),
        ("What is the capital of France?", "unrelated"),
        ("", "empty"),
    ],
)
def test_rewrites_prompt_tells_a_rewording_from_a_copy_an_answer_or_another_question(
    row: dict[str, object], reply_prompt: str, kind: str
) -> None:
    context = [str(row["response_a"]), str(row["response_b"])]
    comparison = compare_prompt(reply_prompt, str(row["prompt"]), context)

    assert comparison.kind == kind
    reply = repr({**row, "prompt": reply_prompt})
    assert rewrites_prompt(row, reply).shown is (kind in ("rewrite", "translation"))


def test_rewrites_prompt_case_punctuation_and_spelling_are_copies() -> None:
    assert compare_prompt("who made you", '["Who made you?"]').kind == "copy"
    assert compare_prompt("Tel Aviv to Jerusalem", '["Tel-Aviv to Jerusalem"]').kind == "copy"
    record = '["translate to russian the followig sentence"]'
    assert compare_prompt("translate to russian the following sentence", record).kind == "copy"


def test_rewrites_prompt_without_a_prompt(row: dict[str, object]) -> None:
    assert rewrites_prompt(row, "{'id': 30192, 'model_a': 'x'}").shown is False
    assert rewrites_prompt({"id": 1}, "{'id': 1}").shown is None


def test_prompt_turns() -> None:
    assert prompt_turns('["a", "b"]') == ["a", "b"]
    assert prompt_turns("['a', 'b']") == ["a", "b"]
    assert prompt_turns('["a", "b') == ["a", "b"]
    assert prompt_turns("'just one'") == ["just one"]
    assert prompt_turns("  ") == []


def test_translation_answers_are_answers_when_the_record_asks_for_a_translation() -> None:
    record = '["translate to russian the following sentence  Big landlords used software"]'

    answer = "Крупные арендодатели использовали программное обеспечение"
    request = "Переведите на русский: Big landlords used software"
    assert compare_prompt(answer, record).kind == "answer"
    assert compare_prompt(request, record).kind == "translation"


# -- nulls and the reply's flags ------------------------------------------------------------------


def test_a_capped_reply_is_not_judged_for_truncation(row: dict[str, object]) -> None:
    capped = Reply(QWEN2_LIKE_REPLY, done_reason="length")

    assert truncates(row, capped).shown is None
    assert copies_braces(row, capped).shown is True
    assert rewrites_prompt(row, capped).shown is True


# -- explanations and measures --------------------------------------------------------------------


@given(records(), any_text(max_size=400), st.sampled_from(["stop", "length", None]))
def test_detectors_never_raise_and_explain_in_one_short_line(
    record: dict[str, object], text: str, done_reason: str | None
) -> None:
    reply = Reply(text, done_reason=done_reason, record_keys=tuple(record))
    for name, verdict in judge(record, reply).items():
        assert verdict.behavior == name
        assert verdict.shown in (True, False, None)
        assert verdict.explanation
        assert "\n" not in verdict.explanation
        assert len(verdict.explanation) <= 200
        assert bool(verdict) is (verdict.shown is True)


@given(records(), any_text(max_size=300))
def test_measures_are_plain_json(record: dict[str, object], text: str) -> None:
    measures = measure(record, text)

    assert json.loads(json.dumps(measures, allow_nan=False)) == measures
    for name in RAW_MEASURES:
        assert isinstance(measures[name], bool)
    assert measures["shorter_than_input"] == (len(text) < len(str(record)))
    assert measures["braces_present"] == ("{" in text and "}" in text)


def test_the_qwen2_like_reply_measures(row: dict[str, object]) -> None:
    measures = measure(row, QWEN2_LIKE_REPLY)

    assert measures["form"] == "braced"
    assert measures["kept_keys"] == ["id", "model_a", "model_b", "prompt", "response_a"]
    assert measures["cut_off"] is True
    assert measures["id_changed"] is True
    assert measures["prompt_kind"] == "rewrite"
    assert measures["braces_present"] is False
    assert measures["shorter_than_input"] is True


# -- properties over synthetic records ------------------------------------------------------------


@given(records())
def test_a_records_repr_and_json_are_complete_copies(record: dict[str, object]) -> None:
    for reply in (repr(record), json.dumps(record)):
        assert verdicts(record, reply) == {
            "copies_braces": True,
            "preserves_keys": True,
            "rewrites_prompt": False,
            "truncates": False,
            "changes_id": False,
        }
    assert measure(record, repr(record))["kept_keys"] == list(COLUMNS)


@given(records(), st.data())
def test_a_prefix_of_a_records_repr_ending_inside_a_value_is_a_truncation(
    record: dict[str, object], data: st.DataObject
) -> None:
    text = repr(record)
    value = repr(record["prompt"])
    start = text.index(", 'prompt': ") + len(", 'prompt': ")
    cut = data.draw(st.integers(min_value=start + 1, max_value=start + len(value) - 1))

    found = verdicts(record, text[:cut])

    assert found["truncates"] is True
    assert found["copies_braces"] is True
    assert found["rewrites_prompt"] is False
    assert found["changes_id"] is False


# -- verbatim share -------------------------------------------------------------------------------


def test_verbatim_share() -> None:
    record = "{'id': 1, 'prompt': 'Is it morally right to try to have a certain percentage?'}"

    assert verbatim_share(record, record) == 1.0
    assert verbatim_share("", record) is None
    assert verbatim_share("Completely different words here!", record) == 0.0
    assert verbatim_share(record[:40] + "#" * 40, record) == 0.5


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
