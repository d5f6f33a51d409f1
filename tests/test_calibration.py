"""The detectors against the project's hand-labeled replies, and the calibrate command."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from mimicry.calibrate import calibrate, render_calibration
from mimicry.cli import main
from mimicry.core.behaviors import BUILTIN_BEHAVIORS
from mimicry.core.calibration import LabelError, cohens_kappa, read_labels
from mimicry.exitcodes import ExitStatus
from tests.conftest import REPO_ROOT

LABELS = REPO_ROOT / "tests" / "calibration" / "labeled-replies.jsonl"
#: The agreement the issue asks for, per behavior, on the project's own labels.
MIN_AGREEMENT = 0.98


@pytest.fixture(scope="module")
def rows(real_rows_path: Path) -> dict[str, dict[str, Any]]:
    lines = real_rows_path.read_text(encoding="utf-8").splitlines()
    return {str(row["id"]): row for row in map(json.loads, lines)}


def test_the_detectors_agree_with_the_hand_labels(rows: Mapping[str, Any]) -> None:
    items = read_labels(LABELS, rows.get)
    results = calibrate(items)

    assert len(items) >= 300
    assert list(results) == list(BUILTIN_BEHAVIORS)
    report = "\n".join(render_calibration(results))
    for name, result in results.items():
        assert result.n >= 300, name
        assert result.rate is not None
        assert result.rate >= MIN_AGREEMENT, report


def test_every_label_set_covers_true_false_and_the_nulls_it_allows(
    rows: Mapping[str, Any],
) -> None:
    items = read_labels(LABELS, rows.get)
    for name in BUILTIN_BEHAVIORS:
        values = {item.labels[name] for item in items}
        assert {True, False} <= values, name
    capped = [item for item in items if item.reply.output_capped]
    assert len(capped) >= 20
    assert all(item.labels["truncates"] is None for item in capped)


def test_calibrate_prints_agreement_kappa_confusion_and_each_disagreement(
    tmp_path: Path, rows: Mapping[str, Any]
) -> None:
    row = rows["1404102"]
    labels = tmp_path / "mine.jsonl"
    lines = [
        {"id": "ok", "record": row, "reply": repr(row), "labels": {"copies_braces": True}},
        {
            "id": "wrong",
            "sample_id": 1404102,
            "reply": "I was made by a team of engineers.",
            "labels": {"copies_braces": True, "truncates": False},
            "reason": "a deliberately wrong label",
        },
    ]
    labels.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    out, err = io.StringIO(), io.StringIO()

    status = main(
        ["calibrate", str(labels), "--min-agreement", "0.9", "--json", str(tmp_path / "c.json")],
        stdout=out,
        stderr=err,
    )

    text = out.getvalue()
    assert status == ExitStatus.GATE_FAILED
    assert "copies_braces          2      1   50.0%" in text
    assert "true->true: 1, true->false: 1" in text
    assert "- copies_braces wrong: label true, verdict false" in text
    assert "labeler:  a deliberately wrong label" in text
    assert "agreement below 90.0% for: copies_braces" in text
    figures = json.loads((tmp_path / "c.json").read_text())
    assert figures["truncates"]["rate"] == 1.0
    assert err.getvalue() == ""


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not a JSON object"),
        ('{"reply": "x", "labels": {"truncates": true}}', "give the record"),
        ('{"sample_id": 1, "reply": "x", "labels": {"truncates": true}}', "not in the dataset"),
        ('{"sample_id": 1404102, "reply": "x", "labels": {"truncates": "yes"}}', "use true, false"),
        ('{"sample_id": 1404102, "reply": 3, "labels": {"truncates": true}}', "'reply' must be"),
    ],
)
def test_a_bad_label_file_is_one_line_naming_the_line_and_the_fix(
    tmp_path: Path, line: str, message: str
) -> None:
    labels = tmp_path / "bad.jsonl"
    labels.write_text(line + "\n")
    out, err = io.StringIO(), io.StringIO()

    status = main(["calibrate", str(labels)], stdout=out, stderr=err)

    assert status == ExitStatus.USAGE_ERROR
    assert err.getvalue().count("\n") == 1
    assert f"{labels}:1" in err.getvalue()
    assert message in err.getvalue()


def test_read_labels_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LabelError, match="cannot read the label file"):
        read_labels(tmp_path / "missing.jsonl")


def test_cohens_kappa() -> None:
    assert cohens_kappa([]) is None
    assert cohens_kappa([(True, True)] * 3) is None  # one value only: chance explains it all
    assert cohens_kappa([(True, True), (False, False)]) == 1.0
    assert cohens_kappa([(True, False), (False, True)]) == -1.0
    kappa = cohens_kappa([(True, True), (True, False), (False, False), (None, None)])
    assert kappa is not None
    assert 0 < kappa < 1


def test_calibrate_measures_a_judge_model_and_caches_its_verdicts(
    tmp_path: Path, rows: Mapping[str, Any]
) -> None:
    from mimicry.testing import FakeModel, FakeOllama

    def judging(request: Any) -> str:
        reply = request.content.split("<reply>", 1)[-1].strip()
        return "IMITATE" if reply.startswith("{") else "ANSWER"

    row = rows["1404102"]
    labels = tmp_path / "judge.jsonl"
    lines = [
        {"id": "copy", "record": row, "reply": repr(row), "labels": {"answers_prompt": False}},
        {"id": "answer", "record": row, "reply": "I am an AI.", "labels": {"answers_prompt": True}},
        {"id": "wrong", "record": row, "reply": "{}", "labels": {"answers_prompt": True}},
    ]
    labels.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    with FakeOllama(FakeModel("judge:1b", reply=judging)) as fake:
        args = ["calibrate", str(labels), "--judge-model", "judge:1b", "--ollama-host", fake.url]
        out = io.StringIO()
        first = main(args, stdout=out, stderr=io.StringIO())
        asked = fake.count("/api/chat")
        again = main(args, stdout=io.StringIO(), stderr=io.StringIO())

    assert first == again == ExitStatus.OK
    assert asked == 3
    assert fake.count("/api/chat") == 3  # the rerun reads the judge's cached verdicts
    assert "answers_prompt         3      2   66.7%" in out.getvalue()
    assert "- answers_prompt wrong: label true, verdict false" in out.getvalue()


def test_calibrate_with_a_judge_the_server_does_not_have_is_one_line(tmp_path: Path) -> None:
    from mimicry.testing import FakeOllama

    labels = tmp_path / "l.jsonl"
    labels.write_text(
        json.dumps({"sample_id": 1404102, "reply": "x", "labels": {"truncates": False}})
    )
    with FakeOllama() as fake:
        err = io.StringIO()
        status = main(
            ["calibrate", str(labels), "--judge-model", "nope:1b", "--ollama-host", fake.url],
            stdout=io.StringIO(),
            stderr=err,
        )

    assert status == ExitStatus.USAGE_ERROR
    assert err.getvalue().count("\n") == 1
    assert "--judge-model 'nope:1b'" in err.getvalue()
