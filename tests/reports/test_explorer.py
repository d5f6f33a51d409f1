"""The HTML report's sample explorer (its data), run metadata, incomplete runs and every
behavior's row in the terminal, Markdown and HTML outputs."""

from __future__ import annotations

import re
from typing import Any

import pytest

from mimicry.core.compare import compare_reports
from mimicry.core.report import render_table
from mimicry.reports import run_headline
from mimicry.reports.explorer import (
    RECORD_BUDGET,
    REPLY_BUDGET,
    decode_block,
    explorer_data,
    render_explorer,
)
from mimicry.reports.html import render_html
from mimicry.reports.markdown import MAX_SUMMARY_CHARS, render_markdown
from tests.reports.factory import BEHAVIORS, make_record, make_report, make_sample

HOSTILE = (
    '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
    "</textarea></script><b>bold</b> \udc80 \x00 \u202e"
)
USER = "mentions_model_a"  # a user's own behavior: no built-in detector


def qwen_like(sample_id: int) -> str:
    record = make_record(sample_id)
    fake = dict(record, id=sample_id + 1, prompt='["Please answer directly: who made you?"]')
    text = f"{fake}"
    return text[: text.index("'response_a'") + len("'response_a': '[\"I was made")]


def _samples() -> list[dict[str, Any]]:
    names = (*BEHAVIORS, USER)
    return [
        make_sample(
            30192,
            {"copies_braces": True, "truncates": True, "changes_id": True, USER: True},
            index=0,
            reply=qwen_like(30192),
            explanations={"truncates": "imitates this record but stops inside a value"},
            behaviors=names,
        ),
        make_sample(2, {"copies_braces": False}, index=1, reply=HOSTILE, behaviors=names),
        make_sample(3, {"copies_braces": None}, index=2, reply="x" * 1_000_000, behaviors=names),
        make_sample(4, index=3, error="timeout after 300 s", behaviors=names),
        make_sample(
            5,
            {"preserves_keys": True},
            index=4,
            test_errors={USER: "KeyError: 'x'"},
            behaviors=names,
        ),
    ]


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    """Five samples: a qwen-like reply, a hostile one, a megabyte, an error, a test error."""
    return make_report(_samples(), behaviors=(*BEHAVIORS, USER))


def test_the_index_has_a_verdict_code_per_behavior_and_sample(report: dict[str, Any]) -> None:
    index, chunks = explorer_data(report)

    assert index["behaviors"] == [*BEHAVIORS, USER]
    assert index["definitions"][-1] is None  # the user's behavior has no built-in definition
    assert index["definitions"][0].startswith("The reply imitates the record's *form*")
    rows = index["rows"]
    assert rows["id"] == ["30192", "2", "3", "4", "5"]
    # copies_braces, preserves_keys, rewrites_prompt, truncates, changes_id, mentions_model_a
    assert rows["v"] == ["100111", "000000", "n00000", "eeeeee", "01000e"]
    assert rows["st"] == ["o", "o", "o", "e", "o"]
    assert rows["f"] == ["......"] * 5  # no baseline
    assert rows["len"][2] == 1_000_000
    assert len(rows["q"][2]) == index["search_chars"]
    assert [len(chunk) for chunk in chunks] == [5]


def test_flips_against_the_baseline_are_coded(report: dict[str, Any]) -> None:
    base = make_report(
        [
            make_sample(30192, {"copies_braces": False, "truncates": True}, index=0),
            make_sample(2, {"copies_braces": True}, index=1),
        ]
    )

    index, _ = explorer_data(report, compare_reports(base, report))

    rows = index["rows"]
    assert index["baseline"] is True
    assert rows["f"][0] == "+...+."  # copies_braces and changes_id fail -> pass
    assert rows["f"][1] == "-....."  # copies_braces pass -> fail


def test_a_sample_view_marks_copies_changes_missing_keys_and_the_stop(
    report: dict[str, Any],
) -> None:
    _, chunks = explorer_data(report)
    detail = chunks[0][0]

    reply_marks = {(p[1], p[2] if len(p) > 2 else None) for p in detail["p"]}
    record_marks = {(p[1], p[2] if len(p) > 2 else None) for p in detail["r"]}
    assert ("x", "id") in reply_marks  # the changed id
    assert any(m == "x" and k == "prompt" for m, k in record_marks)  # the rewritten prompt
    assert any("m" in m and k == "response_b" for m, k in record_marks)  # a missing key
    assert ("S", "response_a") in reply_marks
    assert ("S", "response_a") in record_marks
    assert any("c" in marks for marks, _ in reply_marks)  # copied runs
    assert detail["stop"] == ["cut_off", "response_a"]
    assert ["winner_tie", "missing", 0] in detail["k"]
    assert detail["x"]["truncates"] == "imitates this record but stops inside a value"
    assert detail["c"]["eval_count"] == 20
    assert detail["c"]["done_reason"] == "stop"
    joined = "".join(p[0] for p in detail["p"] if p[1] != "g")
    assert joined == qwen_like(30192)


def test_huge_replies_and_records_are_elided_to_the_budget(report: dict[str, Any]) -> None:
    long_record = make_record(3)
    long_record["response_a"] = '["' + "word " * 100_000 + '"]'
    big = make_report([make_sample(3, True, reply="x" * 1_000_000)], records={"3": long_record})

    _, chunks = explorer_data(big)
    detail = chunks[0][0]

    shown = sum(len(p[0]) for p in detail["p"] if p[1] != "g")
    gaps = sum(p[0] for p in detail["p"] if p[1] == "g")
    assert shown <= REPLY_BUDGET
    assert shown + gaps == 1_000_000
    assert sum(len(p[0]) for p in detail["r"] if p[1] != "g") <= RECORD_BUDGET


def test_hostile_text_stays_inert_in_the_page_source(report: dict[str, Any]) -> None:
    page = render_html(report)

    page.encode("utf-8")
    blocks = re.findall(r'<script type="application/x-mimicry"[^>]*>([^<]*)</script>', page)
    assert blocks
    assert all(re.fullmatch(r"[A-Za-z0-9+/=]*", b) for b in blocks)
    assert "window.pwned" not in page  # only inside a compressed block
    assert "<img" not in page
    _, chunks = explorer_data(report)
    text = "".join(p[0] for p in chunks[0][1]["p"])
    assert "<script>window.pwned = 1</script>" in text  # kept as text, shown by textContent
    for escaped in ("\\udc80", "\\x00", "\\u202e"):
        assert escaped in text


def test_a_schema_1_report_without_records_still_shows_replies() -> None:
    old = make_report([make_sample(1, True, reply=qwen_like(1))])
    old["schema_version"] = 1
    del old["records"]
    for sample in old["samples"]:
        sample["metrics"] = sample.pop("measures")

    index, chunks = explorer_data(old)

    assert index["records"] is False
    assert "r" not in chunks[0][0]
    assert "".join(p[0] for p in chunks[0][0]["p"] if p[1] != "g") == qwen_like(1)
    assert "Samples" in render_html(old)


def test_the_explorer_section_escapes_behavior_names() -> None:
    name = "evil<b>"
    bad = make_report([make_sample(1, True, behaviors=(name,))], behaviors=(name,))

    section = render_explorer(bad)

    assert "evil<b>" not in section
    assert "evil&lt;b&gt;" in section
    index = decode_block(re.search(r'id="mx-index">([^<]*)<', section).group(1))  # type: ignore[union-attr]
    assert index["behaviors"] == [name]


# -- run metadata, incomplete runs, every behavior's row -------------------------------------------


def _partial(judged: int) -> dict[str, Any]:
    """A run of 32 planned samples stopped after ``judged``, whose JSON lists every behavior."""
    samples = [make_sample(i, i % 2 == 0, index=i) for i in range(judged)]
    report = make_report(
        samples,
        complete=False,
        incomplete_reason="interrupted",
        planned=[str(i) for i in range(32)],
    )
    report["run"]["behaviors"] = {name: {"detector": name} for name in (*BEHAVIORS, USER)}
    return report


@pytest.mark.parametrize("judged", [0, 3])
def test_every_behavior_has_its_row_and_an_incomplete_run_says_so(judged: int) -> None:
    report = _partial(judged)

    table = render_table(report)
    markdown = render_markdown(report)
    page = render_html(report)

    assert (
        table[0]
        == f"INCOMPLETE RUN: {judged} of 32 planned samples judged (interrupted); the rates cover "
        "only those"
    )
    for name in (*BEHAVIORS, USER):
        assert any(line.startswith(name + " ") for line in table), (name, table)
        assert f"| {name.replace('_', chr(92) + '_')} |" in markdown
        assert f"<tr><td>{name}</td>" in page
    title, headline = run_headline(report)
    assert headline.startswith(f"INCOMPLETE RUN: train-first32.jsonl: {judged} of 32 planned")
    assert markdown.splitlines()[2].startswith("> ⛔ **INCOMPLETE RUN:** interrupted:")
    # the banner is the first thing after the page's title
    body = page.split("<body>", 1)[1]
    assert re.match(r"\s*<h1>[^<]*</h1>\s*<div class=\"incomplete\"", body)
    assert "32 samples of" not in page + markdown


def test_run_metadata_is_shown_and_the_host_carries_no_credentials() -> None:
    report = make_report([make_sample(1, True)])
    report["run"]["model_info"] = {"family": "qwen2", "parameter_size": "494M"}
    report["run"]["num_ctx_source"] = "auto"

    page = render_html(report)
    markdown = render_markdown(report)

    for text in (page, markdown):
        for secret in ("secret", "hunter2", "user:"):
            assert secret not in text
        assert "http://127.0.0.1:11434/" in text
        for label in (
            "model digest",
            "backend",
            "options",
            "prompt template",
            "dataset",
            "selection",
            "versions",
            "duration",
            "completeness",
        ):
            assert label in text, label
        assert "detectors v2" in text
    assert "num_predict 512" in page
    assert "family qwen2, parameter\\_size 494M" in markdown


def test_the_markdown_stays_small_on_a_57k_sample_run() -> None:
    samples = [
        make_sample(
            i,
            {"copies_braces": i % 3 == 0, "truncates": i % 5 == 0},
            index=i,
            reply="{'id': " + "y" * 500,
        )
        for i in range(57_477)
    ]
    current = make_report(samples, records={})
    base = make_report(
        [dict(s, _verdicts={"copies_braces": i % 3 != 0}) for i, s in enumerate(samples)],
        records={},
    )

    markdown = render_markdown(current, comparison=compare_reports(base, current), baseline=base)

    assert len(markdown) < MAX_SUMMARY_CHARS
    assert len(markdown.encode("utf-8")) < 100_000  # far under GitHub's 1 MiB step summary
    assert "### Flipped samples" in markdown
    assert "### Examples" in markdown
    flipped = markdown.split("### Flipped samples", 1)[1].split("###", 1)[0]
    assert flipped.count("\n| copies") == 20  # the first 10 each way of 38,318 flips
