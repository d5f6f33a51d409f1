"""mimicry.core.annotate: copies, changed values, missing keys and the stop, on real-shaped
records and hostile replies (properties with hypothesis; bounds on megabyte replies)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from hypothesis import given
from hypothesis import strategies as st

from mimicry.core.annotate import (
    COPY_ANCHOR_CHARS,
    COPY_ANCHOR_STEP,
    COPY_WINDOW_CHARS,
    Mark,
    annotate,
    common_prefix,
    find_copies,
    pieces,
    record_layout,
    segments,
)
from tests.core.strategies import any_text, records
from tests.reports.factory import make_record

RECORD = make_record(30192, prompt='["Is it morally right to have quotas for women managers?"]')


def _qwen_like(record: dict[str, object]) -> str:
    """The reply qwen2 gives: new id, prompt rewritten, stops inside response_a."""
    fake = dict(record, id=30193, prompt='["Please answer directly: quotas for women?"]')
    text = f"{fake}"
    return text[: text.index("'response_a'") + len("'response_a': '[\"I was made")]


def test_a_qwen_like_reply_shows_copies_changes_missing_keys_and_the_stop() -> None:
    reply = _qwen_like(RECORD)

    found = annotate(RECORD, reply)

    assert found.record_text == f"{RECORD}"
    status = {k.key: k.status for k in found.keys}
    assert status["id"] == "changed"
    assert status["prompt"] == "changed"
    assert status["model_a"] == status["model_b"] == "same"
    assert status["response_a"] == "same"  # a faithful start of the value, then the stop
    cut = found.key("response_a")
    assert cut is not None
    assert cut.cut
    assert [k for k, s in status.items() if s == "missing"] == [
        "response_b",
        "winner_model_a",
        "winner_model_b",
        "winner_tie",
    ]
    assert found.stop is not None
    assert found.stop.reason == "cut_off"
    assert found.stop.key == "response_a"
    assert found.stop.reply_at == len(reply)
    # the record's matching point: just after the copied start of response_a
    assert found.record_text[: found.stop.record_at].endswith('"I was made')
    copied = [reply[c.reply_start : c.reply_end] for c in found.copies]
    assert any("'model_a': 'gpt-4-0613', 'model_b': 'claude-2.1'" in c for c in copied)
    for copy in found.copies:
        assert (
            reply[copy.reply_start : copy.reply_end]
            == found.record_text[copy.record_start : copy.record_end]
        )


def test_an_exact_copy_is_one_copy_and_every_key_the_same() -> None:
    text = f"{RECORD}"

    found = annotate(RECORD, text)

    assert [(c.reply_start, c.reply_end, c.record_start) for c in found.copies] == [
        (0, len(text), 0)
    ]
    assert {k.status for k in found.keys} == {"same"}
    assert found.stop is None
    assert found.extra_keys == ()


def test_a_closed_copy_without_keys_stops_closed_and_extra_keys_are_listed() -> None:
    reply = "{'id': 30192, 'model_a': 'gpt-4-0613', 'answer': 'forty-two'}"

    found = annotate(RECORD, reply)

    assert found.stop is not None
    assert found.stop.reason == "closed"
    assert [name for name, _ in found.extra_keys] == ["answer"]
    assert found.key("id").status == "same"  # type: ignore[union-attr]


def test_a_plain_answer_has_no_stop_and_every_key_missing() -> None:
    found = annotate(RECORD, "Quotas are a complex question.")

    assert found.stop is None
    assert {k.status for k in found.keys} == {"missing"}
    assert found.copies == ()


def test_a_reply_cut_at_num_predict_stops_capped() -> None:
    reply = f"{RECORD}"[:120]

    found = annotate(RECORD, reply, done_reason="length")

    assert found.stop is not None
    assert found.stop.reason == "capped"


def test_the_json_template_lays_the_record_out_as_json() -> None:
    text, layout = record_layout(RECORD, "json")

    assert text == json.dumps(RECORD, ensure_ascii=False)
    start, end = layout["prompt"][0]
    assert json.loads(text[start:end]) == RECORD["prompt"]


@given(records())
def test_the_layout_spans_are_exact_for_any_record(record: dict[str, object]) -> None:
    text, layout = record_layout(record)

    assert text == f"{record}"
    for key, value in record.items():
        (value_start, value_end), (item_start, item_end) = layout[key]
        assert text[value_start:value_end] == repr(value)
        assert text[item_start:item_end] == f"{key!r}: {value!r}"


@given(record=records(), reply=any_text(max_size=400))
def test_annotate_never_raises_and_its_spans_hold(record: dict[str, object], reply: str) -> None:
    found = annotate(record, reply)

    assert len(found.keys) == len(record)
    previous_end = 0
    for copy in found.copies:
        assert copy.reply_start >= previous_end  # in order, not overlapping
        assert copy.length >= COPY_ANCHOR_CHARS
        assert (
            reply[copy.reply_start : copy.reply_end]
            == found.record_text[copy.record_start : copy.record_end]
        )
        previous_end = copy.reply_end
    for marks, text in ((found.reply_marks(), reply), (found.record_marks(), found.record_text)):
        runs = segments(len(text), marks)
        covered = [r for r in runs if r.end > r.start]
        assert "".join(text[r.start : r.end] for r in covered) == text
        assert all(a.end == b.start for a, b in zip(covered, covered[1:], strict=False))


@given(record=records(), cut=st.integers(min_value=0, max_value=2_000))
def test_a_prefix_of_the_record_is_copied_whole(record: dict[str, object], cut: int) -> None:
    text = f"{record}"
    reply = text[: min(cut, len(text))]

    found = annotate(record, reply)

    if len(reply) >= COPY_ANCHOR_CHARS + COPY_ANCHOR_STEP - 1:
        assert found.copied_chars == len(reply)
        assert found.copies[0].record_start == 0
    for key in found.keys:
        # a prefix changes nothing it wrote whole (where it stops, the reader may take the cut
        # text after a closing quote as part of the value: that one value is left out)
        if key.reply_value is not None and key.reply_value[1] < len(reply.rstrip()) - 4:
            assert key.status == "same", key


@given(
    text=st.text(alphabet="ab c'{}", max_size=300),
    source=st.text(alphabet="ab c'{}", max_size=300),
)
def test_every_long_common_run_is_found(text: str, source: str) -> None:
    copies = find_copies(text, source)
    shortest = COPY_ANCHOR_CHARS + COPY_ANCHOR_STEP - 1

    covered = set()
    for copy in copies:
        covered.update(range(copy.reply_start, copy.reply_end))
    for start in range(len(text) - shortest + 1):
        run = text[start : start + shortest]
        if run in source:
            # some copy overlaps every long common run (copies do not overlap in the text, so a
            # run may be cut short by an earlier copy, never missed)
            assert covered & set(range(start, start + shortest)), (run, copies)


@given(st.text(max_size=200), st.text(max_size=200), st.integers(0, 50), st.integers(0, 50))
def test_common_prefix_matches_a_character_loop(a: str, b: str, i: int, j: int) -> None:
    expected = 0
    while i + expected < len(a) and j + expected < len(b) and a[i + expected] == b[j + expected]:
        expected += 1

    assert common_prefix(a, i, b, j) == expected


@given(length=st.integers(0, 300), data=st.data())
def test_pieces_keep_stops_and_stay_within_budget(length: int, data: st.DataObject) -> None:
    text = "x" * length
    marks = [
        Mark(a, a if kind == "stop" else max(a, b), kind)
        for a, b, kind in data.draw(
            st.lists(
                st.tuples(
                    st.integers(0, length),
                    st.integers(0, length),
                    st.sampled_from(["copied", "changed", "missing", "unreached", "stop"]),
                ),
                max_size=8,
            )
        )
    ]
    budget = data.draw(st.integers(2, 400))

    shown = pieces(text, segments(length, marks), budget=budget, plain_chars=20, marked_chars=40)

    assert sum(len(p.text) for p in shown) <= budget + 40
    assert sum(len(p.text) + p.elided for p in shown) == length
    stops = sum(1 for m in marks if m.kind == "stop")
    assert sum(1 for p in shown if p.kinds == ("stop",)) == stops


def test_hostile_megabyte_replies_cost_a_bounded_time() -> None:
    text = f"{RECORD}"
    hostile = [
        "{" * 1_000_000,
        "x" * 1_000_000,
        text * (1_000_000 // len(text)),  # a megabyte of copies of the record
        "".join(text[i : i + 16] for i in range(0, len(text) - 16, 3)) * 20,
        "{'id': '" + "\udc80\x00</textarea><script>" * 50_000,
    ]
    for reply in hostile:
        started = time.perf_counter()
        found = annotate(RECORD, reply)
        elapsed = time.perf_counter() - started

        assert elapsed < 2.0, (reply[:40], elapsed)  # typically 10-200 ms (the reader included)
        assert all(c.reply_end <= COPY_WINDOW_CHARS for c in found.copies)


def test_the_module_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "import mimicry.core.annotate\n"
        "heavy = ('pytest', 'ollama', 'matplotlib', 'numpy', 'scipy')\n"
        "bad = [m for m in heavy if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert out.stdout.strip() == ""
