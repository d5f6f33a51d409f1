"""The pytest plugin: hooks only. The run's logic is :class:`mimicry.run.EvalRun`.

Registered once, through the ``pytest11`` entry point. It is inert unless the run includes the
eval suite's directory (the ``mimicry_evals_dir`` ini key, ``evals`` by default): ``pytest tests``
in the same environment never plans a run.

A behavior is any test in that directory that takes the ``sample`` (or ``reply``) fixture: it is
parametrized over the run's samples, its name is the test's name without ``test_`` (or
``@pytest.mark.behavior("name")``), and its outcome is the verdict: passed is *shown*, an
assertion failure is *not shown* (a measurement, reported as such and not as a failure), a skip
is *not judged*, anything else is an *error*.

Results travel as the test reports: each eval test's report carries one plain dict in
``user_properties``; the controller takes it in ``pytest_runtest_logreport`` (which xdist re-fires
on the controller for every worker report), so the same code path sees every result with or
without xdist.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from mimicry.exitcodes import ExitStatus
from mimicry.run import EvalRun, PlanError
from mimicry.settings import OPTIONS, CacheMode, Settings, SettingsError, resolve

PROPERTY_NAME = "mimicry"
WORKERINPUT_KEY = "mimicry_plan"
#: workeroutput key: what a worker's response cache set aside, for the controller's summary.
WORKEROUTPUT_CACHE_PROBLEMS = "mimicry_cache_problems"
EVALS_DIR_INI = "mimicry_evals_dir"
SAMPLE_PARAM = "mimicry_sample_index"
REPEAT_PARAM = "mimicry_repeat"
JUDGE_FIXTURE = "judge"
TEST_PREFIX = "test_"
#: A terminal's progress line is redrawn at most this often; a log's every this many seconds.
PROGRESS_REDRAW_S = 0.2
PROGRESS_LOG_S = 15.0
#: -r character listing the samples that did not show a behavior (like pytest's -rf).
NOT_SHOWN_CHAR = "n"
JUNIT_REPLY_EXCERPT = 200

RUN_KEY = pytest.StashKey[EvalRun]()
BEHAVIOR_KEY = pytest.StashKey[str]()
NOTES_KEY = pytest.StashKey[dict[str, str]]()

CATEGORIES = {
    "shown": ("shown", "", ("SHOWN", {"green": True})),
    "not shown": ("not shown", "", ("NOT SHOWN", {"yellow": True})),
    "not judged": ("not judged", "", ("NOT JUDGED", {"yellow": True})),
}


# -- options ---------------------------------------------------------------------------------------


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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "behavior(name): the name of the behavior this eval test measures"
    )
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        plan_data = workerinput.get(WORKERINPUT_KEY)
        if plan_data is not None:
            config.stash[RUN_KEY] = EvalRun.for_worker(_settings(config), plan_data)
        return
    run = config.stash.get(RUN_KEY, None)
    if run is None:
        return
    config.pluginmanager.register(_Controller(config, run), "mimicry-controller")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(), "mimicry-xdist")
        if _remote_gateways(config):
            # workers on other machines keep their own response caches: a sample's tests go to
            # one worker (xdist's loadgroup), so each sample is asked once there too
            run.remote_workers = True
            if getattr(config.option, "dist", "no") == "load":
                config.option.dist = "loadgroup"


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """Plan the run before pytest starts a session (controller only).

    A run that cannot start (no server, no model, bad dataset) ends here with one line and an
    exit status, before any session output, collection or xdist worker.
    """
    if hasattr(config, "workerinput") or not _evals_requested(config):
        return None
    option = config.option
    if any(getattr(option, name, False) for name in ("help", "version", "markers")):
        return None
    dry_run = bool(
        option.collectonly
        or getattr(option, "showfixtures", False)
        or getattr(option, "show_fixtures_per_test", False)
        or getattr(option, "setupplan", False)
    )
    settings = _settings(config)
    try:
        run = EvalRun.plan_new(
            settings,
            cache_dir=_replies_dir(config, settings),
            workers=_worker_count(config),
            dry_run=dry_run,
        )
    except PlanError as exc:
        if exc.exit_status is ExitStatus.USAGE_ERROR:
            raise pytest.UsageError(str(exc)) from None
        sys.stderr.write(f"mimicry: {exc}\n")
        return int(exc.exit_status)
    config.stash[RUN_KEY] = run
    config.add_cleanup(run.close)
    return None


def pytest_unconfigure(config: pytest.Config) -> None:
    run = config.stash.get(RUN_KEY, None)
    if run is not None:
        run.close()


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


def _replies_dir(config: pytest.Config, settings: Settings) -> Path | None:
    """Where replies are kept: the option, else under pytest's cache dir (so ``-o cache_dir``
    and ``--cache-clear`` apply), or None for a per-run folder (``off``, or no cacheprovider)."""
    if settings.response_cache_dir is not None:
        return settings.response_cache_dir
    if settings.response_cache_mode is CacheMode.OFF or not config.pluginmanager.hasplugin(
        "cacheprovider"
    ):
        return None
    cache_dir = Path(str(config.getini("cache_dir")))
    root = cache_dir if cache_dir.is_absolute() else config.rootpath / cache_dir
    return root / "d" / "mimicry" / "responses"


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


def _remote_gateways(config: pytest.Config) -> bool:
    """Whether some xdist worker runs on another machine (an ``--tx`` other than popen)."""
    specs = getattr(config.option, "tx", None) or []
    return any(not str(spec).split("*", 1)[-1].startswith("popen") for spec in specs)


def _worker_count(config: pytest.Config) -> int:
    """How many processes will run tests: xdist's ``-n`` (before xdist resolves it), or 1."""
    n = getattr(config.option, "numprocesses", None)
    if n in ("auto", "logical"):
        return os.cpu_count() or 1
    return n if isinstance(n, int) and n > 0 else 1


def run_of(config: pytest.Config) -> EvalRun:
    """The active run; a clear error when the eval suite is not part of this run."""
    run = config.stash.get(RUN_KEY, None)
    if run is None:
        raise pytest.UsageError(
            "mimicry fixtures are used outside the eval suite: the plugin is active only when the "
            f"run includes the directory set by the ini key {EVALS_DIR_INI!r}"
        )
    return run


class _XdistHooks:
    """Hooks that exist only when xdist is installed."""

    def pytest_configure_node(self, node: Any) -> None:
        run = node.config.stash.get(RUN_KEY, None)
        if run is not None:
            node.workerinput[WORKERINPUT_KEY] = run.plan.to_dict()

    def pytest_testnodedown(self, node: Any, error: object) -> None:
        run = node.config.stash.get(RUN_KEY, None)
        output = getattr(node, "workeroutput", None) or {}  # none from a worker that crashed
        if run is not None:
            for message in output.get(WORKEROUTPUT_CACHE_PROBLEMS, ()):
                run.note_cache_problem(str(message))


def pytest_sessionfinish(session: pytest.Session) -> None:
    # on an xdist worker: its cache problems go back with its other totals (workeroutput)
    workeroutput = getattr(session.config, "workeroutput", None)
    run = session.config.stash.get(RUN_KEY, None)
    if workeroutput is not None and run is not None:
        workeroutput[WORKEROUTPUT_CACHE_PROBLEMS] = run.cache_problems


# -- collection ------------------------------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if SAMPLE_PARAM not in metafunc.fixturenames:
        return
    run = metafunc.config.stash.get(RUN_KEY, None)
    if run is None:
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid}: a behavior test outside the eval suite's directory "
            f"(ini key {EVALS_DIR_INI!r}); run it through that directory"
        )
    plan = run.plan
    metafunc.parametrize(SAMPLE_PARAM, plan.indices, ids=plan.sample_ids)
    if run.settings.repeat > 1 and REPEAT_PARAM in metafunc.fixturenames:
        repeats = range(run.settings.repeat)
        metafunc.parametrize(REPEAT_PARAM, repeats, ids=[f"r{r}" for r in repeats])


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    # tryfirst: before xdist names the groups of --dist loadgroup after their markers
    run = config.stash.get(RUN_KEY, None)
    if run is None:
        return
    # a sample's tests go to one worker with loadgroup (chosen for workers on other machines)
    grouped = getattr(config.option, "dist", None) == "loadgroup"
    evals: list[pytest.Item] = []
    others: list[pytest.Item] = []
    judged_without_judge: list[pytest.Item] = []
    where: dict[str, str] = {}
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if SAMPLE_PARAM not in fixtures:
            others.append(item)
            continue
        if JUDGE_FIXTURE in fixtures and run.plan.judge is None:
            judged_without_judge.append(item)
            continue
        name = _behavior_name(item)
        location = item.nodeid.split("[", 1)[0]
        if where.setdefault(name, location) != location:
            raise pytest.UsageError(
                f"two tests measure the behavior {name!r}: {where[name]} and {location}; "
                "rename one, or name it with @pytest.mark.behavior('other_name')"
            )
        item.stash[BEHAVIOR_KEY] = name
        if grouped:
            item.add_marker(pytest.mark.xdist_group(name=_sample_group(item)))
        evals.append(item)
    if judged_without_judge:
        config.hook.pytest_deselected(items=judged_without_judge)
    # a sample's behaviors run one after another, in plan order, so each process reads each
    # reply once and the run's prefetching stays ahead of the tests
    positions = {index: pos for pos, index in enumerate(run.plan.indices)}
    evals.sort(key=lambda item: _sample_order(item, positions))
    items[:] = others + evals


def _behavior_name(item: pytest.Item) -> str:
    marker = item.get_closest_marker("behavior")
    if marker is not None:
        if len(marker.args) != 1 or not isinstance(marker.args[0], str) or not marker.args[0]:
            raise pytest.UsageError(
                f"{item.nodeid}: @pytest.mark.behavior takes one name, e.g. "
                "@pytest.mark.behavior('mentions_model_a')"
            )
        return str(marker.args[0])
    name = getattr(item, "originalname", item.name)
    return name[len(TEST_PREFIX) :] if name.startswith(TEST_PREFIX) else name


def _sample_group(item: pytest.Item) -> str:
    params = getattr(item, "callspec", None)
    values = params.params if params is not None else {}
    return f"sample-{values.get(SAMPLE_PARAM)}-{values.get(REPEAT_PARAM, 0)}"


def _sample_order(item: pytest.Item, positions: dict[int, int]) -> tuple[int, int]:
    callspec = getattr(item, "callspec", None)
    params = callspec.params if callspec is not None else {}
    return (int(params.get(REPEAT_PARAM, 0)), positions.get(params.get(SAMPLE_PARAM, -1), -1))


# -- one test --------------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    if BEHAVIOR_KEY not in item.stash:
        return (yield)
    from mimicry.behaviors import NOTES

    notes: dict[str, str] = {}
    token = NOTES.set(notes)
    try:
        return (yield)
    except (AssertionError, pytest.fail.Exception) as exc:
        # Not shown: a measurement, taken here so that pytest never formats a traceback for it
        # (a long one per sample, most of a large run's time otherwise).
        notes.setdefault("not_shown", _one_line(str(exc)))
        return None
    finally:
        NOTES.reset(token)
        item.stash[NOTES_KEY] = notes


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if BEHAVIOR_KEY not in item.stash:
        return report
    if report.when == "teardown":
        # the teardown report took its copy (for --junitxml); the item keeps nothing
        item.user_properties[:] = [p for p in item.user_properties if p[0] != PROPERTY_NAME]
        return report
    if report.when == "setup" and report.passed:
        return report
    notes = item.stash.get(NOTES_KEY, {}) if report.when == "call" else {}
    if notes:
        del item.stash[NOTES_KEY]
    if "not_shown" in notes:
        outcome, message = "not shown", notes["not_shown"]
    else:
        outcome, message = _outcome(report, call)
    run = item.config.stash[RUN_KEY]
    params = item.callspec.params  # type: ignore[attr-defined]
    index = int(params[SAMPLE_PARAM])
    repeat = int(params.get(REPEAT_PARAM, 0))
    payload = {
        "behavior": item.stash[BEHAVIOR_KEY],
        "index": index,
        "repeat": repeat,
        "outcome": outcome,
        "message": notes.get("explanation") or message,
        "detector": notes.get("detector"),
        # the sample's reply, flags and measures travel once per process
        "sample": run.sample_result(index, repeat) if run.first_report_of(index, repeat) else None,
    }
    item.user_properties.append((PROPERTY_NAME, payload))
    report.user_properties.append((PROPERTY_NAME, payload))
    return report


def _outcome(report: pytest.TestReport, call: pytest.CallInfo[None]) -> tuple[str, str]:
    """The test's outcome as a verdict, and its one-line message."""
    if report.skipped:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        return "not judged", reason.removeprefix("Skipped: ")
    if report.passed:
        return "shown", ""
    # an assertion in the call is "not shown", taken in pytest_runtest_call; anything else that
    # fails (a fixture, a broken test) is an error
    excinfo = call.excinfo
    if excinfo is not None and excinfo.errisinstance(pytest.fail.Exception):
        return "error", _one_line(str(excinfo.value))
    return "error", _one_line(excinfo.exconly() if excinfo is not None else str(report.longrepr))


def _one_line(text: str, limit: int = 500) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"


def pytest_report_teststatus(
    report: pytest.TestReport, config: pytest.Config
) -> tuple[str, str, Any] | None:
    if report.when == "teardown":
        return None
    payload = _payload(report)
    if payload is None or payload["outcome"] == "error":
        return None
    return CATEGORIES[payload["outcome"]]


def _payload(report: pytest.TestReport | pytest.CollectReport) -> dict[str, Any] | None:
    for name, value in getattr(report, "user_properties", ()):
        if name == PROPERTY_NAME and isinstance(value, dict):
            return value
    return None


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # Runs after xdist sent the report to the controller and after the controller took the
    # sample's result: drop it from the payload, which the item (and pytest's lists of
    # reports) would otherwise keep for the rest of the run.
    payload = _payload(report)
    if payload is not None and payload.get("sample") is not None and report.when != "teardown":
        payload["sample"] = None


# -- the controller --------------------------------------------------------------------------------


class _Controller:
    """The controller's side of a run: takes results, shows progress, finishes the run.

    Registered in ``pytest_configure`` on the controller only (never on an xdist worker), so
    every hook here sees every report exactly once.
    """

    def __init__(self, config: pytest.Config, run: EvalRun) -> None:
        self.config = config
        self.run = run
        self.session: pytest.Session | None = None
        self.finished: Any = None
        self.other_failures = 0
        self.junit = getattr(config.option, "xmlpath", None)
        # kept only when asked for (-rn): a line per sample that did not show a behavior
        self.list_not_shown = NOT_SHOWN_CHAR in (config.option.reportchars or "")
        self.not_shown: list[str] = []
        self._drawn = time.monotonic()  # a log's first progress line comes after a while

    @property
    def reporter(self) -> Any:
        return self.config.pluginmanager.get_plugin("terminalreporter")

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        run = self.run
        plan = run.plan
        if run.dry_run:
            return [
                f"mimicry: {len(plan.indices)} samples of {plan.dataset.get('label')} (no server "
                "contacted: nothing is asked with --collect-only)"
            ] + [f"mimicry: {note}" for note in plan.notes]
        where = f" at {plan.host}" if plan.host else ""
        lines = [
            f"mimicry: {plan.model} via {plan.backend}{where}, {len(plan.indices)} samples of "
            f"{plan.dataset.get('label')}, num_ctx {plan.num_ctx}, num_predict "
            f"{plan.options['num_predict']}, {plan.concurrency} in flight, response cache "
            f"{plan.cache_mode}"
        ]
        return lines + [f"mimicry: {note}" for note in plan.notes]

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.session = session
        run = self.run
        if run.dry_run:
            return
        reporter = self.reporter
        if reporter is not None and reporter.verbosity <= 0:
            # eval tests show as one live progress line, not a letter each and a percentage
            reporter.showfspath = False
            if hasattr(reporter, "_show_progress_info"):
                reporter._show_progress_info = False
        run.start_prefetch()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        payload = _payload(report)
        if payload is None:
            if report.failed:
                self.other_failures += 1  # not a measurement: keeps the exit status non-zero
            return
        if report.when == "teardown":
            if self.junit:
                report.user_properties = [
                    *(p for p in report.user_properties if p[0] != PROPERTY_NAME),
                    *self._junit_properties(payload),
                ]
            return
        stop = self.run.record(
            index=int(payload["index"]),
            repeat=int(payload["repeat"]),
            behavior=str(payload["behavior"]),
            outcome=payload["outcome"],
            message=str(payload.get("message") or ""),
            detector=payload.get("detector"),
            sample=payload.get("sample"),
        )
        if payload["outcome"] == "not shown" and self.list_not_shown:
            self.not_shown.append(f"{report.nodeid} - {payload.get('message') or ''}")
        if stop is not None:
            self._stop(stop)
        self._draw_progress()

    def _stop(self, reason: str) -> None:
        message = f"mimicry: {reason}"
        if self.session is not None:
            self.session.shouldstop = message
        dsession = self.config.pluginmanager.get_plugin("dsession")
        if dsession is not None:  # xdist's controller loop watches its own flag
            dsession.shouldstop = message

    def _draw_progress(self, final: bool = False) -> None:
        reporter = self.reporter
        if reporter is None or reporter.verbosity < 0 or self.run.dry_run:
            return
        if reporter.verbosity > 0:
            return  # one line per test already
        now = time.monotonic()
        tty = reporter.isatty
        every = PROGRESS_REDRAW_S if tty else PROGRESS_LOG_S
        if not final and now - self._drawn < every:
            return
        self._drawn = now
        line = f"mimicry: {self.run.progress.line()}"
        if tty:
            reporter.rewrite(line, erase=True)
            if final:
                reporter.write_line("")
        elif not final:  # in a log, the table that follows says where the run ended
            reporter.write_line(line)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.other_failures += 1

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        run = self.run
        if run.dry_run:
            return
        self._draw_progress(final=True)
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        finished = run.finish(interrupted=interrupted, other_failures=self.other_failures)
        self.finished = finished
        if finished.status is not None and exitstatus in (
            pytest.ExitCode.OK,
            pytest.ExitCode.TESTS_FAILED,
            pytest.ExitCode.INTERRUPTED,
        ):
            session.exitstatus = int(finished.status)
        finished.report["run"]["exit_status"] = int(session.exitstatus)
        if self.junit:
            from mimicry.reports.junit import mark_not_shown_as_failures

            mark_not_shown_as_failures(Path(self.junit))

    def _junit_properties(self, payload: dict[str, Any]) -> list[tuple[str, object]]:
        """One test's verdict and its sample's measures as flat JUnit properties."""
        import json

        key = (self.run.sample_id(int(payload["index"])), int(payload["repeat"]))
        sample = self.run.results.samples.get(key) or {}
        props: list[tuple[str, object]] = [
            ("mimicry.sample_id", key[0]),
            ("mimicry.behavior", payload["behavior"]),
            ("mimicry.outcome", payload["outcome"]),
            ("mimicry.message", payload.get("message") or ""),
            ("mimicry.flags", ",".join(sample.get("flags") or [])),
        ]
        if key[1]:
            props.append(("mimicry.repeat", key[1]))
        if sample.get("error"):
            props.append(("mimicry.error", sample["error"]))
        for name, value in (sample.get("measures") or {}).items():
            props.append((f"mimicry.measure.{name}", json.dumps(value, ensure_ascii=True)))
        reply = sample.get("reply")
        if isinstance(reply, str):
            excerpt = reply[:JUNIT_REPLY_EXCERPT].encode("utf-8", "backslashreplace").decode()
            props.append(("mimicry.reply_excerpt", excerpt))
        return props

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> Generator[None, None, None]:
        # outermost: after pytest's own sections and short summary, so the table ends the run
        result = yield
        try:
            self._summary(terminalreporter)
        except Exception as exc:  # noqa: BLE001 - the summary must never crash the session
            terminalreporter.write_line(f"mimicry: could not print the summary: {exc!r}")
        return result

    def _summary(self, tr: Any) -> None:
        from mimicry.core.compare import render_comparison
        from mimicry.core.gates import render_gate_outcomes
        from mimicry.core.report import render_table

        finished = self.finished
        if finished is None:
            return
        if self.list_not_shown and self.not_shown:
            tr.write_sep("=", "not shown")
            for line in self.not_shown:
                tr.write_line(f"NOT SHOWN {line}")
        report = finished.report
        run = report["run"]
        tr.write_sep("=", f"mimicry: {run['model']} ({run['backend']})")
        repeats = f" x {run['repeat']} repeats" if run.get("repeat", 1) > 1 else ""
        tr.write_line(
            f"{len(run['dataset']['sample_ids'])} samples{repeats} of "
            f"{run['dataset'].get('label') or run['dataset']['id_or_path']}, "
            f"num_ctx {run['options']['num_ctx']}, {run['duration_s']:.1f}s"
        )
        for line in render_table(report):
            tr.write_line(line)
        if finished.comparison is not None:
            tr.write_sep("-", "compared with the baseline")
            for line in render_comparison(finished.comparison):
                tr.write_line(line)
        if finished.outcomes:
            tr.write_sep("-", "gates")
            for line in render_gate_outcomes(finished.outcomes):
                tr.write_line(line)
        if finished.written:
            tr.write_line(f"reports: {', '.join(finished.written)}")
        # said here, not warned where found: that is often the prefetching thread, outside
        # pytest's warnings capture (where -W error would end the thread, not warn)
        for problem in self.run.cache_problems:
            tr.write_line(f"mimicry: {problem}", yellow=True)
        for problem in finished.problems:
            tr.write_line(f"mimicry: {problem}", red=True)
        errors = run["errors"]
        if errors:
            over = run["exit_status"] == ExitStatus.ERROR_BUDGET_EXCEEDED
            tr.write_line(
                f"mimicry: {errors} sample(s) had no reply ({'over' if over else 'within'} the "
                f"error budget of {run['error_budget']}, --max-errors)",
                red=over,
            )
