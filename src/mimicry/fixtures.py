"""The eval suite's fixtures: the sample under test, the model's reply to it, and the run's model
client, model facts and cached asks for behaviors of your own.

Registered by the ``mimicry-fixtures`` entry point, so any eval suite directory has them (see
``pytest --fixtures``). They work on the controller and on every xdist worker alike: each process
builds its view of the run from the plan the controller made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from mimicry.core.judge import JUDGE_OPTIONS
from mimicry.core.reply import Reply
from mimicry.run import EvalRun, SampleFailed
from mimicry.run.replies import Messages


@pytest.fixture(scope="session")
def mimicry_run(request: pytest.FixtureRequest) -> EvalRun:
    """The run this process takes part in (plan, rows, replies); for plugins and advanced use."""
    from mimicry.plugin import run_of

    return run_of(request.config)


@pytest.fixture
def mimicry_repeat() -> int:
    """Which repeat of the sample this is: 0, or 0 to K-1 with ``--repeat K`` (seed + repeat)."""
    return 0


@pytest.fixture
def sample(mimicry_sample_index: int, mimicry_run: EvalRun) -> dict[str, Any]:
    """The dataset row under test, exactly as ``datasets`` returns it (its repr is the prompt)."""
    return mimicry_run.row(mimicry_sample_index)


@pytest.fixture
def reply(
    sample: dict[str, Any], mimicry_sample_index: int, mimicry_repeat: int, mimicry_run: EvalRun
) -> Reply:
    """The model's reply to ``sample``: asked once per run whatever the number of behaviors
    (and cached across runs), read against the sample's keys.

    ``reply.text`` is the reply string; ``reply.imitation`` the part of it that imitates the
    record (keys, values, form, whether it stops part way); ``reply.done_reason``,
    ``reply.prompt_eval_count``, ``reply.eval_count``, ``reply.output_capped`` (it hit
    num_predict) and ``reply.cached``. A sample whose prompt the server cut (input over
    num_ctx) is not judged (the test is skipped); a sample without a reply is an error.
    """
    failure: str | None = None
    try:
        found = mimicry_run.reply(mimicry_sample_index, mimicry_repeat)
    except SampleFailed as exc:
        failure = str(exc)
    if failure is not None:
        # outside the except block: failing inside it would chain the two, and pytest would
        # print the reason twice with "During handling of the above exception..." between
        pytest.fail(failure, pytrace=False)
    if found.input_truncated:
        pytest.skip("not judged: the server cut the input to fit num_ctx (input_truncated)")
    return found


@dataclass(frozen=True)
class ModelInfo:
    """What the run knows about its model: name, digest, context length, backend and host."""

    name: str
    digest: str
    context_length: int | None
    backend: str
    host: str
    details: Mapping[str, Any]


@pytest.fixture(scope="session")
def model_info(mimicry_run: EvalRun) -> ModelInfo:
    """The run's model as the preflight found it (name, digest, context length, backend, host)."""
    plan = mimicry_run.plan
    info = plan.model_info
    length = info.get("context_length")
    return ModelInfo(
        name=plan.model,
        digest=plan.model_digest,
        context_length=length if isinstance(length, int) else None,
        backend=plan.backend,
        host=plan.host,
        details=dict(info),
    )


@pytest.fixture(scope="session")
def ollama_client(mimicry_run: EvalRun) -> Any:
    """The run's configured model client (host, ``OLLAMA_API_KEY``, timeouts, retries): a
    :class:`mimicry.client.ModelClient` whose ``chat(model, messages, options)`` retries and
    fails with one clear line. Uncached: use ``ask`` for requests that should be cached."""
    clients = mimicry_run.clients()
    return clients[0]


class Ask:
    """``ask(messages, *, model=None, options=None) -> Reply`` (see the ``ask`` fixture)."""

    def __init__(self, run: EvalRun) -> None:
        self._run = run

    def __call__(
        self,
        messages: Messages | str,
        *,
        model: str | None = None,
        options: Mapping[str, object] | None = None,
    ) -> Reply:
        return self._run.ask(messages, model=model, options=options)


@pytest.fixture(scope="session")
def ask(mimicry_run: EvalRun) -> Ask:
    """Ask the run's model, or the judge model (``model=`` its name), anything: cached by that
    model's digest, the options and the messages, so a rerun asks nothing; honors ``replay``;
    a request that fails for good makes the calling test an error (counted in the error
    budget). A string is one user message."""
    return Ask(mimicry_run)


@dataclass(frozen=True)
class Judge:
    """The judge model of the run: its name, and ``ask`` bound to it."""

    model: str
    digest: str
    ask: Any


@pytest.fixture(scope="session")
def judge(mimicry_run: EvalRun) -> Judge:
    """The judge model named by ``--judge-model`` (tests that take this fixture are judge-based
    behaviors: they do not run without a judge model)."""
    plan = mimicry_run.plan
    if plan.judge is None:
        pytest.skip("not judged: no judge model (--judge-model)")
    ask_judge = Ask(mimicry_run)
    model = str(plan.judge["model"])

    def ask_it(messages: Messages | str, *, options: Mapping[str, object] | None = None) -> Reply:
        return ask_judge(
            messages, model=model, options=JUDGE_OPTIONS if options is None else options
        )

    return Judge(model=model, digest=str(plan.judge["model_info"].get("digest", "")), ask=ask_it)
