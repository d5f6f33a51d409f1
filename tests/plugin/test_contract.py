"""The behavior contract: any test that takes sample and reply is a behavior, its outcome is the
verdict, and a sample that does not show a behavior is a measurement, not a failure."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from mimicry.exitcodes import ExitStatus
from mimicry.testing import FakeOllama, plain_answer
from tests.plugin.conftest import N_SAMPLES, SHORT_SAMPLE_IDS, Suite, dataset_args

MENTIONS_MODEL_A = """\
def test_mentions_model_a(sample, reply):
    assert sample["model_a"] in reply.text
"""


@pytest.mark.parametrize("xdist", [False, True], ids=["no-xdist", "n2"])
def test_a_users_behavior_gets_its_row_its_rate_and_its_gate(
    suite: Suite, fake_ollama: FakeOllama, xdist: bool
) -> None:
    suite.add_behavior("mentions_model_a", MENTIONS_MODEL_A)

    result = suite.run(
        *dataset_args(fake_ollama, "--report-json=r.json", "--gate", "mentions_model_a>=0.9"),
        xdist=xdist,
    )

    assert result.ret == ExitStatus.OK, result.stdout.str()
    # the imitating fake copies model_a into every reply
    result.stdout.re_match_lines(
        [rf"mentions_model_a\s+{N_SAMPLES}\s+{N_SAMPLES}\s+100\.0%", r".*passed mentions_model_a"]
    )
    report = suite.report()
    assert report["behaviors"]["mentions_model_a"]["rate"] == 1.0
    assert report["run"]["behaviors"]["mentions_model_a"] == {"detector": None}
    assert report["run"]["behaviors"]["truncates"]["detector"] == "truncates"
    assert "changes_id" in report["behaviors"]
    # one request per sample, however many behaviors
    assert fake_ollama.count("/api/chat") == N_SAMPLES


@pytest.mark.parametrize("xdist", [False, True], ids=["no-xdist", "n2"])
def test_a_gate_on_a_users_behavior_fails_the_run(suite: Suite, xdist: bool) -> None:
    suite.add_behavior("mentions_model_a", MENTIONS_MODEL_A)
    with FakeOllama() as fake:
        fake.put_model(fake.model.__class__(fake.model.name, reply=plain_answer))
        result = suite.run(
            *dataset_args(fake, "--report-json=r.json", "--gate", "mentions_model_a>=0.9"),
            xdist=xdist,
        )

    assert result.ret == ExitStatus.GATE_FAILED
    result.stdout.re_match_lines([r".*FAILED mentions_model_a>=0.9: rate 0\.0% is below.*"])
    assert suite.report()["behaviors"]["mentions_model_a"]["rate"] == 0.0


def test_not_shown_is_its_own_category_and_no_red_wall(
    suite: Suite, fake_ollama: FakeOllama
) -> None:
    result = suite.run(*dataset_args(fake_ollama, "--report-json=r.json"))

    assert result.ret == ExitStatus.OK
    # the imitating fake: form, rewrite, cut and id shown; keys not (it stops part way); the
    # judge-based behavior does not run without a judge model
    result.stdout.re_match_lines(
        [rf".*= {N_SAMPLES} deselected, {4 * N_SAMPLES} shown, {N_SAMPLES} not shown in .*"]
    )
    result.stdout.no_fnmatch_line("*FAILED*")
    result.stdout.no_fnmatch_line("*= FAILURES =*")
    # the table comes after pytest's sections: only its closing line follows it
    lines = result.outlines
    table_end = max(i for i, line in enumerate(lines) if line.startswith("key preservation"))
    assert all(line.startswith(("reports:", "=")) for line in lines[table_end + 1 :])


def test_not_shown_samples_are_listed_on_request(suite: Suite, fake_ollama: FakeOllama) -> None:
    result = suite.run(*dataset_args(fake_ollama, "-rn"))

    result.stdout.re_match_lines(
        [r"NOT SHOWN evals/test_preserves_keys.py::test_preserves_keys\[887722\] - 4 of 9 .*"]
    )


def test_verbose_runs_show_each_verdict(suite: Suite, fake_ollama: FakeOllama) -> None:
    result = suite.run(*dataset_args(fake_ollama, "-v", ids="887722"))

    result.stdout.re_match_lines(
        [
            r"evals/test_copies_braces.py::test_copies_braces\[887722\] SHOWN.*",
            r"evals/test_preserves_keys.py::test_preserves_keys\[887722\] NOT SHOWN.*",
        ]
    )


def test_dash_x_stops_on_errors_not_on_measurements(suite: Suite, fake_ollama: FakeOllama) -> None:
    measured = suite.run(*dataset_args(fake_ollama, "-x"))
    assert measured.ret == ExitStatus.OK
    measured.stdout.re_match_lines([rf".*{4 * N_SAMPLES} shown, {N_SAMPLES} not shown in .*"])

    suite.add_behavior(
        "wrong_column",
        "def test_wrong_column(sample, reply):\n    raise KeyError('no such column')\n",
    )
    stopped = suite.run(*dataset_args(fake_ollama, "-x", "--report-json=r.json"))

    assert stopped.ret == ExitStatus.GATE_FAILED
    # the first sample's tests run together: its five built-in verdicts, then the error
    stopped.stdout.re_match_lines([r".*= 1 failed, \d+ deselected, 4 shown, 1 not shown in .*"])
    stopped.stdout.re_match_lines([r".*test_wrong_column\[587904\] - KeyError: 'no such column'"])


def test_a_behavior_test_that_raises_is_an_error_of_that_behavior_only(
    suite: Suite, fake_ollama: FakeOllama
) -> None:
    suite.add_behavior(
        "broken", "def test_broken(sample, reply):\n    raise KeyError('no such column')\n"
    )

    result = suite.run(*dataset_args(fake_ollama, "--report-json=r.json"))

    assert result.ret == ExitStatus.GATE_FAILED  # a broken test is not a measurement
    report = suite.report()
    assert report["behaviors"]["broken"]["errors"] == N_SAMPLES
    assert report["behaviors"]["broken"]["n"] == 0
    assert report["behaviors"]["truncates"]["n"] == N_SAMPLES
    assert "KeyError" in report["samples"][0]["test_errors"]["broken"]


def test_a_behavior_name_from_the_marker_and_two_tests_with_one_name(
    suite: Suite, fake_ollama: FakeOllama
) -> None:
    suite.add_behavior(
        "marked",
        "import pytest\n\n@pytest.mark.behavior('keeps_the_id')\n"
        "def test_whatever(sample, reply):\n    assert str(sample['id']) in reply.text\n",
    )
    named = suite.run(*dataset_args(fake_ollama, "--report-json=r.json"))
    assert named.ret == ExitStatus.OK
    assert suite.report()["behaviors"]["keeps_the_id"]["n"] == N_SAMPLES

    suite.add_behavior("again", "def test_keeps_the_id(sample, reply):\n    assert True\n")
    clash = suite.run(*dataset_args(fake_ollama))
    assert clash.ret == ExitStatus.USAGE_ERROR
    clash.stderr.re_match_lines([r".*two tests measure the behavior 'keeps_the_id'.*"])


def test_tests_outside_the_eval_suite_keep_pytests_own_outcomes(
    suite: Suite, fake_ollama: FakeOllama
) -> None:
    suite.pytester.makepyfile(test_other="def test_plain():\n    assert 1 == 2\n")

    result = suite.pytester.runpytest(
        "evals", "test_other.py", "-p", "no:xdist", *dataset_args(fake_ollama)
    )

    assert result.ret == ExitStatus.GATE_FAILED
    result.stdout.re_match_lines([r"FAILED test_other.py::test_plain - assert 1 == 2"])
    result.stdout.re_match_lines([r".*1 failed, .* shown, .* not shown in .*"])


def test_junit_xml_counts_not_shown_as_failures_for_ci_pass_rates(
    suite: Suite, fake_ollama: FakeOllama
) -> None:
    result = suite.run(*dataset_args(fake_ollama, "--junitxml=junit.xml"), xdist=True)

    assert result.ret == ExitStatus.OK
    root = ET.parse(suite.pytester.path / "junit.xml").getroot()
    cases = {
        str(case.get("name")): (
            case.find("failure") is not None,
            {p.get("name"): p.get("value") for p in case.iter("property")},
        )
        for case in root.iter("testcase")
    }
    failed, props = cases["test_preserves_keys[887722]"]
    assert failed
    assert props["mimicry.outcome"] == "not shown"
    assert props["mimicry.message"].startswith("4 of 9 record keys missing")
    assert props["mimicry.measure.id_changed"] == "true"
    assert props["mimicry.reply_excerpt"].startswith("{'id': 887723")
    assert cases["test_truncates[887722]"][0] is False
    assert sum(1 for failed, _ in cases.values() if failed) == N_SAMPLES
    suite_element = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite_element is not None
    assert suite_element.get("failures") == str(N_SAMPLES)
    assert len(cases) == 5 * N_SAMPLES


def test_a_server_that_is_down_is_one_line_and_a_status_pytest_never_uses(
    suite: Suite,
) -> None:
    with FakeOllama() as fake:
        url = fake.url
    result = suite.run(
        f"--ollama-host={url}",
        f"--sample-ids={SHORT_SAMPLE_IDS}",
        "--dataset=sample",
        subprocess=True,
    )

    assert result.ret == ExitStatus.SERVER_UNUSABLE == 69
    assert result.outlines == []
    assert len(result.errlines) == 1
    assert result.errlines[0].startswith(f"mimicry: no Ollama server answers at '{url}'")
