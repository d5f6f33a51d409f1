"""The fixtures for behaviors of one's own: ask (cached, once per sample across workers),
model_info and ollama_client; and judge-based behaviors with --judge-model."""

from __future__ import annotations

import pytest

from mimicry.exitcodes import ExitStatus
from mimicry.testing import FakeModel, FakeOllama, plain_answer
from tests.plugin.conftest import (
    N_SAMPLES,
    SHORT_SAMPLE_IDS,
    Suite,
    dataset_args,
    pinned_imitations,
)

# replies pinned by sample id: a fake in this process never parses a record with the AST while
# pytest does (see pinned_imitations)
IMITATING = pinned_imitations()

ASKS_A_FOLLOW_UP = """\
def test_explains_itself(sample, reply, ask):
    follow_up = ask("Why did you answer: " + reply.text[:40])
    assert "because" in follow_up.text
"""


def explaining(request: object) -> str:
    """The run's model: imitates records, and explains itself when asked why."""
    content = getattr(request, "content", "")
    if content.startswith("Why did you answer"):
        return "I answered that way because the record looked like data."
    return IMITATING(request)  # type: ignore[arg-type]


def judging(request: object) -> str:
    """A judge that says a reply starting with a brace imitates, anything else answers."""
    content = getattr(request, "content", "")
    reply = content.split("<reply>", 1)[-1].strip()
    return "IMITATE" if reply.startswith("{") else "ANSWER"


@pytest.mark.parametrize("xdist", [False, True], ids=["no-xdist", "n2"])
def test_ask_is_cached_once_per_sample_across_workers_and_reruns_ask_nothing(
    suite: Suite, xdist: bool
) -> None:
    suite.add_behavior("explains_itself", ASKS_A_FOLLOW_UP)
    with FakeOllama(FakeModel(reply=explaining)) as fake:
        first = suite.run(*dataset_args(fake, "--report-json=r.json"), xdist=xdist)
        asked = fake.count("/api/chat")
        second = suite.run(*dataset_args(fake, "--report-json=r2.json"), xdist=xdist)

    assert first.ret == ExitStatus.OK, first.stdout.str()
    assert asked == 2 * N_SAMPLES  # one reply and one follow-up per sample
    assert fake.count("/api/chat") == asked  # the rerun asks nothing
    assert second.ret == ExitStatus.OK
    assert suite.report("r2.json")["behaviors"]["explains_itself"]["rate"] == 1.0


def test_model_info_and_ollama_client_are_the_runs(suite: Suite) -> None:
    suite.add_behavior(
        "knows_its_model",
        "def test_knows_its_model(sample, reply, model_info, ollama_client):\n"
        "    assert model_info.name == 'fake-model:1b'\n"
        "    assert model_info.digest and model_info.backend == 'ollama'\n"
        "    assert model_info.context_length == 32768\n"
        "    assert ollama_client.host == model_info.host\n",
    )
    with FakeOllama(FakeModel(reply=IMITATING)) as fake:
        result = suite.run(*dataset_args(fake, "--report-json=r.json"))

    assert result.ret == ExitStatus.OK, result.stdout.str()
    assert suite.report()["behaviors"]["knows_its_model"]["rate"] == 1.0


def test_answers_prompt_runs_with_a_judge_model_and_is_cached_by_its_digest(
    suite: Suite,
) -> None:
    judge = FakeModel("judge:1b", reply=judging)
    with FakeOllama(FakeModel(reply=IMITATING), judge) as fake:
        first = suite.run(*dataset_args(fake, "--judge-model=judge:1b", "--report-json=r.json"))
        asked = fake.count("/api/chat")
        suite.run(*dataset_args(fake, "--judge-model=judge:1b", "--report-json=r2.json"))
        judge_bodies = [b for b in fake.chat_bodies if b["model"] == "judge:1b"]

    assert first.ret == ExitStatus.OK, first.stdout.str()
    report = suite.report()
    assert report["behaviors"]["answers_prompt"]["n"] == N_SAMPLES
    assert report["behaviors"]["answers_prompt"]["rate"] == 0.0  # every reply imitates
    assert report["run"]["judge_model"] == "judge:1b"
    assert report["run"]["judge_model_info"]["digest"] == judge.digest
    assert report["run"]["behaviors"]["answers_prompt"]["detector"] == "answers_prompt"
    explanation = report["samples"][0]["explanations"]["answers_prompt"]
    assert explanation == "the judge says the reply does not answer the request: 'IMITATE'"
    assert asked == 2 * N_SAMPLES  # the reply and the judge's verdict, per sample
    assert fake.count("/api/chat") == asked
    assert len(judge_bodies) == N_SAMPLES
    assert judge_bodies[0]["options"]["num_predict"] == 8


def test_a_plain_answer_is_judged_an_answer(suite: Suite) -> None:
    with FakeOllama(FakeModel(reply=plain_answer), FakeModel("judge:1b", reply=judging)) as fake:
        suite.run(*dataset_args(fake, "--judge-model=judge:1b", "--report-json=r.json"))

    assert suite.report()["behaviors"]["answers_prompt"]["rate"] == 1.0


def test_a_missing_judge_model_is_one_line_before_any_test(suite: Suite) -> None:
    with FakeOllama() as fake:
        result = suite.run(*dataset_args(fake, "--judge-model=judge:7b"), subprocess=True)

    assert result.ret == ExitStatus.SERVER_UNUSABLE
    assert result.outlines == []
    assert len(result.errlines) == 1
    assert "judge:7b" in result.errlines[0]
    assert "ollama pull judge:7b" in result.errlines[0]


def test_ask_for_a_model_the_run_does_not_know_is_an_error_of_that_test(suite: Suite) -> None:
    suite.add_behavior(
        "asks_elsewhere",
        "def test_asks_elsewhere(sample, reply, ask):\n    ask('hi', model='other:1b')\n",
    )
    with FakeOllama(FakeModel(reply=IMITATING)) as fake:
        result = suite.run(*dataset_args(fake, "--report-json=r.json", ids=SHORT_SAMPLE_IDS))

    assert result.ret == ExitStatus.GATE_FAILED
    report = suite.report()
    assert report["behaviors"]["asks_elsewhere"]["errors"] == N_SAMPLES
    error = report["samples"][0]["test_errors"]["asks_elsewhere"]
    assert "not a model of this run; name it with --judge-model" in error
