"""The answers_prompt behavior, decided by the judge model (--judge-model; off without one)."""

from mimicry.behaviors import answers_prompt, expect


def test_answers_prompt(sample, reply, judge):
    expect(answers_prompt(sample, reply, judge.ask))
