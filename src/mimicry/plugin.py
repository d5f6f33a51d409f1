"""The pytest plugin: options, the run plan, results across xdist, the report and the exit status.

Registered once, through the ``pytest11`` entry point. It is inert unless the run includes the
eval suite (the ``mimicry_evals_dir`` ini key, ``evals`` by default): ``pytest tests`` in the same
environment never preflights a server.

Results travel as the test reports: each eval test records one plain dict with
``record_property``-style ``user_properties``; the controller aggregates them in
``pytest_runtest_logreport`` (which xdist re-fires on the controller for every worker report),
writes the report in ``pytest_sessionfinish`` and prints it in ``pytest_terminal_summary``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mimicry.core.behaviors import BEHAVIORS
from mimicry.core.report import RunResults, build_report, render_table
from mimicry.core.samples import error_sample, judged_sample, record_problem
from mimicry.run import PlanError, PlannedRun, RunPlan, plan_run
from mimicry.settings import OPTIONS, CacheMode, Settings, SettingsError, resolve

PROPERTY_NAME = "mimicry"
WORKERINPUT_KEY = "mimicry_plan"
EVALS_DIR_INI = "mimicry_evals_dir"
SAMPLE_PARAM = "mimicry_sample_index"
REPEAT_PARAM = "mimicry_repeat"
TEST_PREFIX = "test_"
JUDGED_CACHE_SIZE = 256

#: Exit statuses beyond pytest's own (see README, "Exit status").
EXIT_SERVER_PROBLEM = 3
#: A run whose last this-many samples all had no reply stops early: the server is broken.
CONSECUTIVE_ERRORS_TO_STOP = 10
JUNIT_REPLY_EXCERPT = 200


class SampleError(Exception):
    """A sample whose reply could not be had; shown as one line, counted as an error."""


@dataclass
class RunState:
    """Per-process state of an active run (kept in ``config.stash``)."""

    settings: Settings
    is_controller: bool
    dry_run: bool = False
    plan: RunPlan | None = None
    dataset: Any = None
    server: Any = None
    reply_service: Any = None
    judged: OrderedDict[tuple[int, int], dict[str, Any]] = field(default_factory=OrderedDict)
    outcomes: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    baseline: dict[str, Any] | None = None
    positions: dict[int, int] | None = None  # sample index -> its place in the run order
    results: RunResults = field(default_factory=RunResults)
    other_failures: int = 0
    started: float = field(default_factory=time.monotonic)
    report: dict[str, Any] | None = None
    report_error: str | None = None

    def require_plan(self) -> RunPlan:
        if self.plan is None:
            raise RuntimeError(
                "mimicry: the run was not planned (is the eval suite part of this run?)"
            )
        return self.plan


STATE_KEY = pytest.StashKey[RunState]()
BEHAVIOR_KEY = pytest.StashKey[str]()
EXPLANATION_KEY = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(
        "mimicry", "mimicry evals (each option is also an ini key mimicry_<name>)"
    )
    for opt in OPTIONS:
        # default None means "not given": resolve() applies ini and built-in defaults
        group.addoption(
            opt.flag,
            dest=f"mimicry_{opt.name}",
            default=None,
            metavar=opt.metavar,
            help=opt.help,
            action="append" if opt.multiple else "store",
        )
        if opt.multiple:
            parser.addini(opt.ini, help=f"default for {opt.flag} (one per line)", type="linelist")
        else:
            parser.addini(opt.ini, help=f"default for {opt.flag}", default=None)
    parser.addini(
        EVALS_DIR_INI,
        help="the eval suite's directory; the plugin is active when a run includes it",
        default="evals",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """Plan the run before pytest starts a session (controller only).

    A run that cannot start (no server, no model, bad dataset) ends here with one line and an
    exit status, before any session output, collection or xdist worker.
    """
    if hasattr(config, "workerinput") or not _evals_requested(config):
        return None
    option = config.option
    if (
        getattr(option, "help", False)
        or getattr(option, "version", False)
        or getattr(option, "markers", False)
    ):
        return None
    settings = _settings(config)
    baseline = _load_baseline(settings)
    dry = bool(
        option.collectonly
        or getattr(option, "showfixtures", False)
        or getattr(option, "show_fixtures_per_test", False)
        or getattr(option, "setupplan", False)
    )
    try:
        planned: PlannedRun = plan_run(
            settings, cache_root=None, workers=_worker_count(config), collect_only=dry
        )
    except PlanError as exc:
        if exc.exit_code == int(pytest.ExitCode.USAGE_ERROR):
            raise pytest.UsageError(str(exc)) from None
        sys.stderr.write(f"mimicry: {exc}\n")
        return exc.exit_code
    state = RunState(settings=settings, is_controller=True, dry_run=dry, baseline=baseline)
    state.plan, state.dataset, state.server = planned.plan, planned.dataset, planned.server
    if planned.server is not None:
        config.add_cleanup(planned.server.stop)
    config.stash[STATE_KEY] = state
    return None


def pytest_unconfigure(config: pytest.Config) -> None:
    state = _state(config)
    if state is not None and state.reply_service is not None:
        state.reply_service.close()
        state.reply_service = None


def _load_baseline(settings: Settings) -> dict[str, Any] | None:
    """Read --baseline before anything runs: a bad file is a usage error, not a late surprise."""
    if settings.baseline is None:
        return None
    from mimicry.core.compare import ReportError, load_report

    try:
        return load_report(settings.baseline)
    except ReportError as exc:
        raise pytest.UsageError(f"--baseline: {exc}") from None


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        plan_data = workerinput.get(WORKERINPUT_KEY)
        if plan_data is None:
            return
        worker_state = RunState(settings=_settings(config), is_controller=False)
        worker_state.plan = RunPlan.from_dict(plan_data)
        config.stash[STATE_KEY] = worker_state
        return
    state = _state(config)
    if state is None or state.plan is None:
        return
    off = state.plan.cache_mode == CacheMode.OFF.value
    pytest_cache = getattr(config, "cache", None)  # absent with -p no:cacheprovider
    if not off and state.plan.cache_dir is None and pytest_cache is not None:
        # under pytest's cache dir, so -o cache_dir=... and --cache-clear apply to replies too
        cache_dir = pytest_cache.mkdir("mimicry") / "responses"
        state.plan = dataclasses.replace(state.plan, cache_dir=str(cache_dir))
    if off or state.plan.cache_dir is None:
        # no reuse across runs (or no pytest cache to keep replies in): the run's workers still
        # share one cache, so each sample is asked once, and it is deleted at the end
        run_dir = Path(tempfile.mkdtemp(prefix=f"mimicry-{state.plan.run_id}-"))
        config.add_cleanup(lambda: shutil.rmtree(run_dir, ignore_errors=True))
        state.plan = dataclasses.replace(state.plan, cache_dir=str(run_dir))
    if config.option.tbstyle == "auto":
        # failed eval tests are measurements: one line each in the short summary, no tracebacks
        # (pass --tb=short to see the FAILURES section)
        config.option.tbstyle = "no"
    config.pluginmanager.register(_Controller(config, state), "mimicry-controller")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(), "mimicry-xdist")


def _settings(config: pytest.Config) -> Settings:
    cli = {opt.name: config.getoption(f"mimicry_{opt.name}") for opt in OPTIONS}
    ini = {opt.name: _ini(config, opt.ini) for opt in OPTIONS}
    try:
        return resolve(cli, ini)
    except SettingsError as exc:
        raise pytest.UsageError(str(exc)) from None


def _ini(config: pytest.Config, name: str) -> str | None:
    value = config.getini(name)
    if isinstance(value, list):  # a linelist option: one value per line
        return "\n".join(str(v) for v in value) or None
    return value if isinstance(value, str) and value.strip() else None


def _evals_requested(config: pytest.Config) -> bool:
    """Whether the eval suite's directory is part of this run (an argument inside or above it)."""
    evals_dir = (config.rootpath / str(config.getini(EVALS_DIR_INI))).resolve()
    if not evals_dir.is_dir():
        return False
    args = config.args or [str(config.invocation_params.dir)]
    for arg in args:
        path = Path(arg.split("::", 1)[0])
        if not path.is_absolute():
            path = config.invocation_params.dir / path
        path = path.resolve()
        if path == evals_dir or evals_dir in path.parents or path in evals_dir.parents:
            return True
    return False


def _state(config: pytest.Config) -> RunState | None:
    return config.stash.get(STATE_KEY, None)


def run_state(config: pytest.Config) -> RunState:
    """The active run's state; a clear error when the eval suite is not part of this run."""
    state = _state(config)
    if state is None or state.plan is None:
        raise pytest.UsageError(
            "mimicry fixtures are used outside the eval suite: the plugin is active only when the "
            f"run includes the directory set by the ini key {EVALS_DIR_INI!r}"
        )
    return state


def _worker_count(config: pytest.Config) -> int:
    """How many processes will ask for replies: xdist's ``-n`` (before xdist resolves it), or 1."""
    n = getattr(config.option, "numprocesses", None)
    if n in ("auto", "logical"):
        return os.cpu_count() or 1
    return n if isinstance(n, int) and n > 0 else 1


def pytest_sessionstart(session: pytest.Session) -> None:
    state = _state(session.config)
    if state is None or not state.is_controller or state.plan is None or state.dry_run:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    plan = state.plan
    reporter.write_line(
        f"mimicry: {plan.model} via {plan.backend} at {plan.host}, {len(plan.indices)} samples, "
        f"num_ctx {plan.num_ctx}, num_predict {plan.options['num_predict']}, "
        f"response cache {plan.cache_mode}"
    )
    for note in plan.notes:
        reporter.write_line(f"mimicry: {note}")


class _XdistHooks:
    """Hooks that exist only when xdist is installed."""

    def pytest_configure_node(self, node: Any) -> None:
        state = _state(node.config)
        if state is not None and state.plan is not None:
            node.workerinput[WORKERINPUT_KEY] = state.plan.to_dict()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if SAMPLE_PARAM not in metafunc.fixturenames:
        return
    state = _state(metafunc.config)
    if state is None or state.plan is None:
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid}: an eval test outside the eval suite's directory "
            f"(ini key {EVALS_DIR_INI!r}); run it through that directory"
        )
    plan = state.plan
    metafunc.parametrize(SAMPLE_PARAM, plan.indices, ids=[str(i) for i in plan.sample_ids])
    repeat = state.settings.repeat
    if repeat > 1 and REPEAT_PARAM in metafunc.fixturenames:
        metafunc.parametrize(REPEAT_PARAM, range(repeat), ids=[f"r{r}" for r in range(repeat)])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SAMPLE_PARAM not in getattr(item, "fixturenames", ()):
            continue
        name = getattr(item, "originalname", item.name)
        behavior = name[len(TEST_PREFIX) :] if name.startswith(TEST_PREFIX) else name
        if behavior not in BEHAVIORS:
            raise pytest.UsageError(
                f"{item.nodeid}: an eval test must be named test_<behavior> with a behavior from "
                f"{', '.join(BEHAVIORS)}; got {name!r}"
            )
        item.stash[BEHAVIOR_KEY] = behavior


# -- what the fixtures call ---------------------------------------------------------------


def dataset_rows(config: pytest.Config) -> Any:
    """The run's dataset (loaded once per process, memory-mapped)."""
    state = run_state(config)
    if state.dataset is None:
        from mimicry.dataset import DatasetSpec, load_rows

        plan = state.require_plan()
        state.dataset = load_rows(DatasetSpec(plan.dataset["id_or_path"], plan.dataset["split"]))
    return state.dataset


def reply_service(config: pytest.Config) -> Any:
    """The run's reply service (model client behind the response cache), one per process."""
    state = run_state(config)
    if state.reply_service is None:
        from mimicry.cache import ResponseCache
        from mimicry.client import ModelClient, RetryPolicy, auth_headers
        from mimicry.replies import ReplyService

        plan = state.require_plan()
        settings = state.settings
        mode = CacheMode(plan.cache_mode)
        if mode is CacheMode.OFF:
            # no reuse across runs, but within the run each sample is still asked once: the
            # workers share a cache that lives only as long as the run
            mode = CacheMode.USE
        retry = RetryPolicy(attempts=settings.retries + 1, timeout_s=settings.request_timeout)
        clients = []
        if mode is not CacheMode.REPLAY:
            headers = auth_headers(os.environ)
            clients = [ModelClient(host, retry=retry, headers=headers) for host in plan.hosts]
        cache = ResponseCache(Path(plan.cache_dir)) if plan.cache_dir else None
        state.reply_service = ReplyService(
            clients=clients,
            model=plan.model,
            model_digest=plan.model_digest,
            options=plan.options,
            cache=cache,
            mode=mode,
            concurrency=settings.concurrency,
            run_id=plan.run_id,
        )
    return state.reply_service


def judge_sample(
    config: pytest.Config, index: int, record: dict[str, Any] | None = None, repeat: int = 0
) -> dict[str, Any]:
    """The sample's result dict (reply fetched once, judged once per process, then reused).

    ``record`` is the dataset row at ``index``; None reads it, only when it is needed.
    """
    from mimicry.client import OllamaError
    from mimicry.core.prompt import render_messages
    from mimicry.replies import FailedEarlier, ReplayMiss

    state = run_state(config)
    if (index, repeat) in state.judged:
        state.judged.move_to_end((index, repeat))
        return state.judged[(index, repeat)]
    plan = state.require_plan()
    if record is None:
        record = dataset_rows(config)[index]
    sample_id = str(record.get("id", index))
    problem = record_problem(record)
    if problem is not None:
        result = error_sample(
            sample_id=sample_id, index=index, reason=f"dataset row: {problem}", prompt_chars=None
        )
    else:
        messages = render_messages(record, plan.prompt_template)
        service = reply_service(config)
        service.prefetch(_upcoming_jobs(state, index, repeat))
        try:
            fetched = service.fetch(messages, repeat, route=index)
        except (OllamaError, ReplayMiss, FailedEarlier) as exc:
            result = error_sample(
                sample_id=sample_id, index=index, reason=str(exc), prompt_chars=len(f"{record}")
            )
        else:
            result = judged_sample(
                sample_id=sample_id,
                index=index,
                record=record,
                reply=fetched.reply.to_dict(),
                num_ctx=plan.num_ctx,
                cached=fetched.cached,
                prompt_chars=sum(len(m["content"]) for m in messages),
            )
    result["repeat"] = repeat
    state.judged[(index, repeat)] = result
    if len(state.judged) > JUDGED_CACHE_SIZE:
        state.judged.popitem(last=False)
    return result


def _upcoming_jobs(state: RunState, index: int, repeat: int) -> list[Any]:
    """The requests for the samples after ``index`` (in run order), to keep in flight."""
    from mimicry.core.prompt import render_messages
    from mimicry.replies import Job

    ahead = state.settings.concurrency - 1
    if ahead <= 0:
        return []
    plan = state.require_plan()
    if state.positions is None:
        state.positions = {i: pos for pos, i in enumerate(plan.indices)}
    start = state.positions.get(index, -1) + 1
    jobs = []
    for upcoming in plan.indices[start : start + ahead]:
        if (upcoming, repeat) in state.outcomes:
            continue
        row = state.dataset[upcoming] if state.dataset is not None else None
        if row is None or record_problem(row) is not None:
            continue
        messages = render_messages(row, plan.prompt_template)
        jobs.append(Job(messages, repeat, route=upcoming))
    return jobs


@dataclass(frozen=True)
class BehaviorCheck:
    """One behavior of one sample, as the eval test sees it."""

    behavior: str
    sample_id: str
    shown: bool
    explanation: str


def check_behavior(item: pytest.Item, index: int, repeat: int = 0) -> BehaviorCheck:
    """Judge the item's behavior on its sample; record the result on the item's reports.

    A sample without a verdict (null) skips the test; a sample without a reply raises
    :class:`SampleError` (an error, not a failure).
    """
    config = item.config
    state = run_state(config)
    behavior = item.stash[BEHAVIOR_KEY]
    outcome = state.outcomes.get((index, repeat))
    full = None
    if outcome is None:
        # first test of this sample in this process: judge it, and send the full result along
        full = judge_sample(config, index, None, repeat)
        outcome = state.outcomes[(index, repeat)] = _outcome(full)
    sample_id = outcome["id"]
    payload = {"behavior": behavior, "sample_id": sample_id, "repeat": repeat, "sample": full}
    item.user_properties.append((PROPERTY_NAME, payload))
    if outcome["status"] == "error":
        raise SampleError(f"sample {sample_id}: {outcome['error']}")
    verdict = outcome["behaviors"][behavior]
    if verdict is None:
        pytest.skip(f"not judged: {', '.join(outcome['flags']) or 'no verdict'}")
    explanation = str(outcome["explanations"].get(behavior, ""))
    item.stash[EXPLANATION_KEY] = explanation
    return BehaviorCheck(behavior, sample_id, bool(verdict), explanation)


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # Runs after xdist sent the report to the controller and after the controller took the
    # sample's full result: drop it from the payload, which the item (and pytest's list of
    # failed reports) would otherwise keep for the rest of the run.
    for name, value in report.user_properties:
        if name == PROPERTY_NAME and isinstance(value, dict) and value.get("sample") is not None:
            value["sample"] = None


def _outcome(sample: dict[str, Any]) -> dict[str, Any]:
    """What the other tests of a sample need: verdicts and reasons, without the reply.

    Kept for every sample a process judged (a few hundred bytes each), so each sample is
    fetched and judged once per process, whatever order its four tests come in.
    """
    verdicts = sample["behaviors"]
    return {
        "id": str(sample["id"]),
        "status": sample["status"],
        "error": sample["error"],
        "behaviors": verdicts,
        "flags": sample["flags"],
        "explanations": sample.get("explanations") or {},  # reasons of the failed verdicts
    }


# -- results and reports --------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if BEHAVIOR_KEY not in item.stash or not report.failed:
        return report
    # failures are measurements: one informative line each, not a traceback
    if call.excinfo is not None and call.excinfo.errisinstance(SampleError):
        report.longrepr = str(call.excinfo.value)
    elif (
        report.when == "call"
        and call.excinfo is not None
        and call.excinfo.errisinstance(AssertionError)
    ):
        report.longrepr = (
            f"{item.stash[BEHAVIOR_KEY]} not shown: {item.stash.get(EXPLANATION_KEY, '')}"
        )
    return report


class _Controller:
    """The controller's side of a run: aggregates results, gates the exit status, writes reports.

    Registered in ``pytest_configure`` on the controller only (never on an xdist worker), so
    every hook here sees every report exactly once.
    """

    def __init__(self, config: pytest.Config, state: RunState) -> None:
        self.config = config
        self.state = state
        self.session: pytest.Session | None = None
        self.stopped_for_errors: str | None = None
        self.consecutive_errors = 0
        self.comparison: Any = None
        self.outcomes: tuple[Any, ...] = ()
        self.junit = bool(getattr(config.option, "xmlpath", None))

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.session = session
        # the report's statistics need scipy.stats, a slow import: load it while the run
        # waits on the model rather than after the last reply
        threading.Thread(target=importlib.import_module, args=("scipy.stats",), daemon=True).start()

    @property
    def planned_samples(self) -> int:
        return len(self.state.require_plan().indices) * self.state.settings.repeat

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        payload = next((v for k, v in report.user_properties if k == PROPERTY_NAME), None)
        if isinstance(payload, dict):
            if report.when != "teardown":
                self.state.results.add(payload)
                sample = payload.get("sample")
                if isinstance(sample, dict):
                    self._watch_errors(sample)
            if report.when == "teardown" and self.junit:
                # junitxml reads the teardown report's properties (after this hook): the
                # transport dict becomes readable flat properties
                report.user_properties = [
                    *(p for p in report.user_properties if p[0] != PROPERTY_NAME),
                    *self._junit_properties(payload),
                ]
        if report.failed and payload is None:
            self.state.other_failures += 1  # not a measurement: keeps the exit status non-zero

    def _junit_properties(self, payload: dict[str, Any]) -> list[tuple[str, object]]:
        """One sample's verdict and metrics as JUnit properties (values are escaped by junitxml)."""
        from mimicry.core.report import sample_key

        key = (str(payload["sample_id"]), int(payload.get("repeat") or 0))
        sample = self.state.results.samples.get(key) or payload.get("sample") or {}
        assert sample_key(sample) == key or not sample
        behavior = payload.get("behavior")
        verdict = (sample.get("behaviors") or {}).get(behavior)
        props: list[tuple[str, object]] = [
            ("mimicry.sample_id", key[0]),
            ("mimicry.behavior", behavior),
            ("mimicry.status", sample.get("status")),
            ("mimicry.verdict", "null" if verdict is None else str(verdict).lower()),
            ("mimicry.flags", ",".join(sample.get("flags") or [])),
        ]
        if key[1]:
            props.append(("mimicry.repeat", key[1]))
        if sample.get("error"):
            props.append(("mimicry.error", sample["error"]))
        for name, value in (sample.get("metrics") or {}).items():
            props.append((f"mimicry.metric.{name}", json.dumps(value, ensure_ascii=True)))
        reply = sample.get("reply")
        if isinstance(reply, str):
            excerpt = reply[:JUNIT_REPLY_EXCERPT].encode("utf-8", "backslashreplace").decode()
            props.append(("mimicry.reply_excerpt", excerpt))
        return props

    def _watch_errors(self, sample: dict[str, Any]) -> None:
        """End the run early once the error budget cannot be met or the server is clearly broken."""
        if sample.get("status") != "error":
            self.consecutive_errors = 0
            return
        self.consecutive_errors += 1
        errors = self.state.results.error_count
        budget = self.state.settings.max_errors
        reason = None
        if not budget.allows(errors, self.planned_samples):
            reason = (
                f"{errors} sample(s) had no reply, over the error budget of {budget.describe()}"
            )
        elif self.consecutive_errors >= CONSECUTIVE_ERRORS_TO_STOP:
            reason = f"the last {self.consecutive_errors} samples all had no reply"
        if reason is None or self.stopped_for_errors:
            return
        self.stopped_for_errors = f"mimicry: stopping early: {reason} (last: {sample.get('error')})"
        if self.session is not None:
            self.session.shouldstop = self.stopped_for_errors
        dsession = self.config.pluginmanager.get_plugin("dsession")
        if dsession is not None:  # xdist's controller loop watches its own flag
            dsession.shouldstop = self.stopped_for_errors

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.state.other_failures += 1

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        state = self.state
        if state.plan is None or state.dry_run:
            return
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        planned = self.planned_samples
        seen = len(state.results.samples)
        errors = state.results.error_count
        over_budget = not state.settings.max_errors.allows(errors, max(seen, 1))
        run = state.plan.report_run()
        run.update(
            duration_s=round(time.monotonic() - state.started, 3),
            repeat=state.settings.repeat,
            # complete: every planned sample has a reply (errors within budget still exit 0)
            complete=not interrupted and seen >= planned and errors == 0,
            exit_status=None,
            errors=errors,
            error_budget=state.settings.max_errors.describe(),
        )
        if self.stopped_for_errors:
            run["incomplete_reason"] = self.stopped_for_errors.removeprefix("mimicry: ")
        elif interrupted:
            run["incomplete_reason"] = "interrupted"
        elif seen < planned:
            run["incomplete_reason"] = f"{planned - seen} of {planned} samples were not evaluated"
        elif errors:
            run["incomplete_reason"] = f"{errors} of {planned} samples had no reply"
        report = build_report(run, state.results, self._record_keys())
        gates_failed = self._gate(report)
        if self.stopped_for_errors:
            session.exitstatus = EXIT_SERVER_PROBLEM
        elif exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
            if state.other_failures or gates_failed:
                status = int(pytest.ExitCode.TESTS_FAILED)
            elif over_budget:
                status = EXIT_SERVER_PROBLEM
            else:
                status = int(pytest.ExitCode.OK)  # failed eval tests are measurements
            session.exitstatus = status
        run["exit_status"] = int(session.exitstatus)
        report["run"] = run
        state.report = report
        self._write_reports(session, report)
        self._forget_failures()

    def _forget_failures(self) -> None:
        """The run's remembered failures served its tests; the next run asks again."""
        from mimicry.cache import ResponseCache

        plan = self.state.require_plan()
        if plan.cache_dir and Path(plan.cache_dir, "replies.sqlite3").exists():
            cache = ResponseCache(Path(plan.cache_dir))
            try:
                cache.drop_failures(plan.run_id)
            finally:
                cache.close()

    def _gate(self, report: dict[str, Any]) -> bool:
        """Compare with the baseline and evaluate the gates; True when a gate failed."""
        from mimicry.core.compare import compare_reports
        from mimicry.core.gates import evaluate_gates

        settings = self.state.settings
        if self.state.baseline is not None:
            self.comparison = compare_reports(
                self.state.baseline, report, min_share=settings.min_consistency
            )
            report["comparison"] = self.comparison.to_dict()
        gates = (*settings.gates, *settings.regressions)
        if not gates:
            return False
        self.outcomes = evaluate_gates(gates, report, self.comparison)
        report["gates"] = [o.to_dict() for o in self.outcomes]
        return any(not o.passed for o in self.outcomes)

    def _write_reports(self, session: pytest.Session, report: dict[str, Any]) -> None:
        settings = self.state.settings
        writers: list[tuple[str, Path | None, Any]] = [
            ("--report-json", settings.report_json, lambda p: _write_json(p, report)),
            ("--save-baseline", settings.save_baseline, lambda p: _write_json(p, report)),
            ("--report-md", settings.report_md, self._write_markdown),
            ("--report-html", settings.report_html, self._write_html),
        ]
        for flag, path, write in writers:
            if path is None:
                continue
            try:
                write(path)
            except OSError as exc:
                self.state.report_error = f"could not write {flag} {str(path)!r}: {exc}"
                session.exitstatus = int(pytest.ExitCode.INTERNAL_ERROR)

    def _write_markdown(self, path: Path) -> None:
        from mimicry.reports.markdown import append_step_summary, render_markdown, write_markdown

        assert self.state.report is not None
        md = render_markdown(
            self.state.report,
            comparison=self.comparison,
            baseline=self.state.baseline,
            outcomes=self.outcomes,
        )
        write_markdown(path, md)
        append_step_summary(md)

    def _write_html(self, path: Path) -> None:
        from mimicry.reports.html import render_html, write_html

        assert self.state.report is not None
        page = render_html(
            self.state.report,
            comparison=self.comparison,
            baseline=self.state.baseline,
            outcomes=self.outcomes,
        )
        write_html(path, page)

    def _record_keys(self) -> list[str]:
        ds = self.state.dataset
        return list(ds.column_names) if ds is not None else []

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int) -> None:
        try:
            self._summary(terminalreporter)
        except Exception as exc:  # noqa: BLE001 - the summary must never crash the session
            terminalreporter.write_line(f"mimicry: could not print the summary: {exc!r}")

    def _summary(self, tr: Any) -> None:
        from mimicry.core.compare import render_comparison
        from mimicry.core.gates import render_gate_outcomes

        state = self.state
        report = state.report
        if report is None:
            return
        run = report["run"]
        tr.write_sep("=", f"mimicry: {run['model']} ({run['backend']})")
        repeats = f" x {run['repeat']} repeats" if run.get("repeat", 1) > 1 else ""
        tr.write_line(
            f"{len(run['dataset']['sample_ids'])} samples{repeats} of "
            f"{run['dataset']['id_or_path']}, "
            f"num_ctx {run['options']['num_ctx']}, {run['duration_s']:.1f}s"
        )
        for line in render_table(report):
            tr.write_line(line)
        if self.comparison is not None:
            tr.write_sep("-", "compared with the baseline")
            for line in render_comparison(self.comparison):
                tr.write_line(line)
        if self.outcomes:
            tr.write_sep("-", "gates")
            for line in render_gate_outcomes(self.outcomes):
                tr.write_line(line)
        written = [
            str(p)
            for p in (
                state.settings.report_json,
                state.settings.save_baseline,
                state.settings.report_md,
                state.settings.report_html,
            )
            if p is not None
        ]
        if written and state.report_error is None:
            tr.write_line(f"reports: {', '.join(written)}")
        if state.report_error:
            tr.write_line(f"mimicry: {state.report_error}", red=True)
        errors = run["errors"]
        if errors:
            verdict = "over" if run["exit_status"] == EXIT_SERVER_PROBLEM else "within"
            tr.write_line(
                f"mimicry: {errors} sample(s) had no reply ({verdict} the error budget of "
                f"{run['error_budget']}, --max-errors)",
                red=verdict == "over",
            )
        if not run["complete"]:
            tr.write_line(
                f"mimicry: the run is incomplete: {run.get('incomplete_reason')}", yellow=True
            )

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.state.server is not None:
            self.state.server.stop()
            self.state.server = None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically: a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8", errors="surrogatepass") as fh:
        json.dump(data, fh, ensure_ascii=True, indent=1)
        fh.write("\n")
    tmp.replace(path)
