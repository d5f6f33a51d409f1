"""One eval run, without pytest: the plan, the rows, the replies, the results and the reports.

:class:`EvalRun` is the small public API the pytest plugin, the fixtures and the CLI share:

- on the controller, :meth:`EvalRun.plan` decides the run (:mod:`mimicry.run.plan`),
  :meth:`EvalRun.start_prefetch` keeps ``--concurrency`` requests in flight in plan order,
  :meth:`EvalRun.record` takes each behavior test's outcome, :meth:`EvalRun.finish` builds the
  report, gates it and writes the report files;
- in every process (the controller and each xdist worker, built from the plan with
  :meth:`EvalRun.for_worker`), :meth:`EvalRun.row` reads a row from the row store,
  :meth:`EvalRun.reply` gives the sample's one reply (asked once per run, cached), and
  :meth:`EvalRun.ask` asks the run's model or the judge model anything, through the same cache.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mimicry.core.prompt import render_messages
from mimicry.core.reply import Reply
from mimicry.core.report import Outcome, RunResults, build_report
from mimicry.core.samples import error_result, input_was_cut, record_problem, sample_result
from mimicry.exitcodes import ExitStatus
from mimicry.run.plan import PlanError, RunPlan, plan_run, start_embedded
from mimicry.run.replies import FailedEarlier, Messages, ReplayMiss, ReplyService
from mimicry.settings import CacheMode, Settings

#: A run whose last this-many samples all had no reply stops early: the server is broken.
CONSECUTIVE_ERRORS_TO_STOP = 10
#: Replies (and their sample results) a process keeps at hand: a sample's tests run together.
REPLIES_KEPT = 64


class SampleFailed(Exception):
    """A sample whose reply could not be had: one line, counted as an error of its tests."""


@dataclass
class Progress:
    """How far a run is (controller side), for the live progress line."""

    total: int
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    asked: int = 0
    cached: int = 0
    errors: int = 0
    tokens: int = 0

    def line(self) -> str:
        """``120/500 samples · 3.2 replies/s · 210 tok/s · 40 cached · 0 errors · 1m58s left``."""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.asked / elapsed
        parts = [f"{self.done}/{self.total} samples"]
        if self.asked:
            parts.append(f"{rate:.1f} replies/s" if rate >= 1 else f"{rate * 60:.1f} replies/min")
        if self.tokens:
            parts.append(f"{self.tokens / elapsed:.0f} tok/s")
        parts.append(f"{self.cached} cached")
        parts.append(f"{self.errors} error{'s' if self.errors != 1 else ''}")
        if 0 < self.done < self.total:
            left = (self.total - self.done) * elapsed / self.done
            parts.append(f"{_duration(left)} left")
        return " \u00b7 ".join(parts)


@dataclass
class Finished:
    """The end of a run: its report, the exit status it calls for, and lines to print."""

    report: dict[str, Any]
    status: ExitStatus | None  # None: keep the test runner's own status
    comparison: Any = None
    outcomes: tuple[Any, ...] = ()
    written: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class EvalRun:
    """One eval run (see the module docstring). Not thread-safe except where stated."""

    def __init__(
        self,
        settings: Settings,
        plan: RunPlan,
        rows: Any,
        *,
        controller: bool,
        dry_run: bool = False,
    ) -> None:
        self.settings = settings
        self.plan = plan
        self.rows = rows
        self.controller = controller
        self.dry_run = dry_run
        self.baseline: dict[str, Any] | None = None
        self.results = RunResults()
        self.progress = Progress(total=len(plan.indices) * settings.repeat)
        self.stopped: str | None = None
        self._server: Any = None
        self._server_lock = threading.Lock()
        self._services: dict[str, ReplyService] = {}
        self._services_lock = threading.Lock()
        self._replies: OrderedDict[tuple[int, int], Reply | SampleFailed] = OrderedDict()
        self._sent: set[tuple[int, int]] = set()
        self._positions: dict[int, int] | None = None
        self._prefetcher: threading.Thread | None = None
        self._stop_prefetch = threading.Event()
        self._prefetch_wake = threading.Event()  # set when a prefetched request ends, or on stop
        self._consecutive_errors = 0
        self._started = time.monotonic()
        self._client: Any = None
        self._run_cache: Path | None = None
        #: xdist workers run on other machines (an ssh or socket gateway)
        self.remote_workers = False
        self._cache_problems: list[str] = []
        self._cache_problems_lock = threading.Lock()

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def plan_new(
        cls,
        settings: Settings,
        *,
        cache_dir: Path | None,
        workers: int,
        dry_run: bool = False,
        environ: Mapping[str, str] | None = None,
    ) -> EvalRun:
        """Plan a run on the controller. Raises :class:`~mimicry.run.plan.PlanError`."""
        planned = plan_run(
            settings, cache_dir=cache_dir, workers=workers, environ=environ, dry_run=dry_run
        )
        run = cls(settings, planned.plan, planned.rows, controller=True, dry_run=dry_run)
        if cache_dir is None and not dry_run:
            # no reuse across runs (--response-cache-mode off, or no pytest cache to keep replies
            # in): the run's processes still share one cache, so each sample is asked once, and
            # it is deleted at the end
            run._run_cache = Path(tempfile.mkdtemp(prefix=f"mimicry-{run.plan.run_id}-"))
            run.plan = replace(run.plan, cache_dir=str(run._run_cache))
        if not dry_run and run.needs_server():
            # started before any test, so that every process finds its URL in the plan
            url = run.ensure_server()
            run.plan = replace(run.plan, host=url, hosts=[url])
        if settings.baseline is not None:
            from mimicry.core.compare import ReportError, load_report

            try:
                run.baseline = load_report(settings.baseline)
            except ReportError as exc:
                raise PlanError(f"--baseline: {exc}", exit_status=ExitStatus.USAGE_ERROR) from None
        return run

    @classmethod
    def for_worker(cls, settings: Settings, plan_data: Mapping[str, Any]) -> EvalRun:
        """The run as an xdist worker sees it: the controller's plan and its row store, or, on
        another machine (an ssh gateway) where that file is not, the same dataset's store
        there, checked against the plan."""
        from mimicry.dataset import RowStore, RowStoreError

        plan = RunPlan.from_dict(plan_data)
        try:
            rows = RowStore.open(plan.rows_path)
        except (RowStoreError, OSError):
            rows = _rows_on_this_machine(plan)
        return cls(settings, plan, rows, controller=False)

    def use_cache_dir(self, cache_dir: Path) -> None:
        """Keep replies in ``cache_dir`` (set before the first reply is asked)."""
        self.plan = replace(self.plan, cache_dir=str(cache_dir))

    # -- rows and replies (every process) ----------------------------------------------------

    def row(self, index: int) -> dict[str, Any]:
        """The dataset row at ``index``, exactly as ``datasets`` returns it."""
        row: dict[str, Any] = self.rows[index]
        return row

    def sample_id(self, index: int) -> str:
        return str(self.rows.ids[index])

    def messages(self, index: int) -> list[dict[str, str]]:
        return render_messages(self.row(index), self.plan.prompt_template)

    def reply(self, index: int, repeat: int = 0) -> Reply:
        """The sample's reply (asked once per run, then cached); raises :class:`SampleFailed`."""
        key = (index, repeat)
        known = self._replies.get(key)
        if known is None:
            known = self._fetch_reply(index, repeat)
            self._replies[key] = known
            if len(self._replies) > REPLIES_KEPT:
                self._replies.popitem(last=False)
        else:
            self._replies.move_to_end(key)
        if isinstance(known, SampleFailed):
            raise known
        return known

    def _fetch_reply(self, index: int, repeat: int) -> Reply | SampleFailed:
        record = self.row(index)
        problem = record_problem(record)
        sample_id = self.sample_id(index)
        if problem is not None:
            return SampleFailed(f"sample {sample_id}: dataset row: {problem}")
        messages = render_messages(record, self.plan.prompt_template)
        try:
            fetched = self.service().fetch(messages, repeat, route=index)
        except (ReplayMiss, FailedEarlier) as exc:
            return SampleFailed(f"sample {sample_id}: {exc}")
        except Exception as exc:  # noqa: BLE001 - the client's errors are its own one-liners
            from mimicry.client import OllamaError

            if not isinstance(exc, OllamaError | PlanError):
                raise
            return SampleFailed(f"sample {sample_id}: {exc}")
        fields = fetched.fields
        prompt_eval_count = fields.get("prompt_eval_count")
        truncated = input_was_cut(
            prompt_eval_count if isinstance(prompt_eval_count, int) else None,
            fetched.num_ctx or self.plan.num_ctx,
            sum(len(m["content"]) for m in messages),
        )
        return Reply.from_fields(
            fields,
            record=record,
            input_truncated=truncated,
            cached=fetched.cached,
            model=self.plan.model,
        )

    def sample_result(self, index: int, repeat: int = 0) -> dict[str, Any]:
        """The sample's result for the report (reply, flags, measures; no verdicts)."""
        record = self.row(index)
        sample_id = self.sample_id(index)
        prompt_chars = len(f"{record}")
        try:
            reply = self.reply(index, repeat)
        except SampleFailed as exc:
            reason = str(exc).removeprefix(f"sample {sample_id}: ")
            return error_result(
                sample_id=sample_id, index=index, repeat=repeat, reason=reason, prompt_chars=None
            )
        return sample_result(
            sample_id=sample_id,
            index=index,
            repeat=repeat,
            record=record,
            reply=reply,
            prompt_chars=prompt_chars,
        )

    def first_report_of(self, index: int, repeat: int) -> bool:
        """True the first time a process reports on a sample (it then sends the sample result)."""
        key = (index, repeat)
        if key in self._sent:
            return False
        self._sent.add(key)
        return True

    def ask(
        self,
        messages: Messages | str,
        *,
        model: str | None = None,
        options: Mapping[str, object] | None = None,
    ) -> Reply:
        """Ask the run's model, or the judge model (``--judge-model``), through the response
        cache keyed by that model's digest, the options and the messages. A plain string is one
        user message. Honors ``replay`` mode; raises :class:`SampleFailed` when no reply can
        be had (the calling test then counts as an error)."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        service = self.service(model, options)
        try:
            fetched = service.fetch(messages)
        except (ReplayMiss, FailedEarlier) as exc:
            raise SampleFailed(f"ask({service.model!r}): {exc}") from None
        except Exception as exc:  # noqa: BLE001
            from mimicry.client import OllamaError

            if not isinstance(exc, OllamaError | PlanError):
                raise
            raise SampleFailed(f"ask({service.model!r}): {exc}") from None
        return Reply.from_fields(fetched.fields, cached=fetched.cached, model=service.model)

    def service(
        self, model: str | None = None, options: Mapping[str, object] | None = None
    ) -> ReplyService:
        """The reply service of a model of the run (thread-safe)."""
        name = model or self.plan.model
        infos = {self.plan.model: self.plan.model_info}
        if self.plan.judge is not None:
            infos[self.plan.judge["model"]] = self.plan.judge["model_info"]
        if name not in infos:
            raise SampleFailed(
                f"ask(model={name!r}): not a model of this run; name it with --judge-model "
                f"(models here: {', '.join(infos)})"
            )
        base = dict(self.plan.options)
        if name != self.plan.model:
            length = infos[name].get("context_length")
            if isinstance(length, int) and length > 0:
                base["num_ctx"] = min(int(base["num_ctx"]), length)
        merged = {**base, **(options or {})}
        key = json.dumps([name, merged], sort_keys=True, default=str)
        with self._services_lock:
            service = self._services.get(key)
            if service is None:
                service = self._services[key] = self._new_service(name, infos[name], merged)
        return service

    def _new_service(
        self, model: str, info: Mapping[str, Any], options: Mapping[str, object]
    ) -> ReplyService:
        from mimicry.cache import ResponseCache

        plan = self.plan
        mode = CacheMode(plan.cache_mode)
        if mode is CacheMode.OFF:
            # no reuse across runs, but within the run each sample is still asked once: the
            # processes share a cache that lives only as long as the run
            mode = CacheMode.USE
        cache = (
            ResponseCache(Path(plan.cache_dir), on_problem=self.note_cache_problem)
            if plan.cache_dir
            else None
        )
        return ReplyService(
            clients=self.clients,
            model=model,
            model_digest=cache_digest(info),
            options=options,
            cache=cache,
            mode=mode,
            concurrency=plan.concurrency,
            run_id=plan.run_id,
        )

    def note_cache_problem(self, message: str) -> None:
        """Keep what the response cache set aside, to be said once at the end of the run
        (thread-safe: the cache is read by the prefetching threads too)."""
        with self._cache_problems_lock:
            if message not in self._cache_problems:
                self._cache_problems.append(message)

    @property
    def cache_problems(self) -> list[str]:
        """What the response cache set aside in this process (and, on the controller, what the
        xdist workers reported), in the order it was found."""
        with self._cache_problems_lock:
            return list(self._cache_problems)

    def clients(self) -> list[Any]:
        """The run's model clients, one per host (:class:`mimicry.client.ModelClient`), made
        when first needed: a run whose replies are all cached never imports the client."""
        with self._server_lock:
            if self._client is not None:
                return list(self._client)
        from mimicry.client import ModelClient, RetryPolicy, auth_headers

        hosts = self.plan.hosts or [self.ensure_server()]
        retry = RetryPolicy(
            attempts=self.settings.retries + 1, timeout_s=self.settings.request_timeout
        )
        headers = auth_headers(os.environ)
        made = [ModelClient(host, retry=retry, headers=headers) for host in hosts]
        with self._server_lock:
            if self._client is None:
                self._client = made
            return list(self._client)

    def ensure_server(self) -> str:
        """The embedded server's URL, starting it on first need (on the controller only)."""
        embedded = self.plan.embedded
        if embedded is None or self.plan.hosts:
            return self.plan.host
        with self._server_lock:
            if self._server is None:
                if not self.controller:
                    raise PlanError(
                        "every reply of this run was cached when it started, so no embedded "
                        "server runs; rerun with --response-cache-mode use",
                        exit_status=ExitStatus.SERVER_UNUSABLE,
                    )
                self._server = start_embedded(embedded)
            return str(self._server.url)

    def needs_server(self) -> bool:
        """Whether some selected sample has no reply this run may reuse (embedded backend)."""
        if self.plan.embedded is None or self.plan.cache_mode == CacheMode.REPLAY.value:
            return False
        if self.plan.cache_mode in (CacheMode.REFRESH.value, CacheMode.OFF.value):
            return True
        service = self.service()
        for repeat in range(self.settings.repeat):
            for index in self.plan.indices:
                record = self.row(index)
                if record_problem(record) is not None:
                    continue
                if (
                    service.stored(render_messages(record, self.plan.prompt_template), repeat)
                    is None
                ):
                    return True
        return False

    # -- prefetching (controller) -----------------------------------------------------------

    def start_prefetch(self) -> None:
        """Keep ``--concurrency`` requests in flight, in plan order, in the background.

        Not when workers run on other machines: they keep their own response caches, so what
        the controller asked here would be asked again there."""
        if (
            self.plan.cache_mode == CacheMode.REPLAY.value
            or self._prefetcher is not None
            or self.remote_workers
        ):
            return
        self._prefetcher = threading.Thread(
            target=self._prefetch, name="mimicry-prefetch", daemon=True
        )
        self._prefetcher.start()

    def _stop_prefetching(self) -> None:
        self._stop_prefetch.set()
        self._prefetch_wake.set()

    def _prefetch(self) -> None:
        service = self.service()
        limit = max(1, self.plan.concurrency)
        started: deque[Future[Any]] = deque()  # this thread's requests, in plan order
        failed = consecutive = 0
        for repeat in range(self.settings.repeat):
            for index in self.plan.indices:
                while True:
                    # Each failed request is a sample without a reply. Once they are more than
                    # the error budget allows, or the server looks broken, the run stops when
                    # their tests report: asking further ahead would only send requests the run
                    # never uses (many, when every request fails at once).
                    while started and started[0].done():
                        done = started.popleft()
                        if done.cancelled():
                            return
                        if done.exception() is None:
                            consecutive = 0
                        else:
                            failed += 1
                            consecutive += 1
                    if (
                        not self.settings.max_errors.allows(failed, self.progress.total)
                        or consecutive >= CONSECUTIVE_ERRORS_TO_STOP
                    ):
                        return
                    # in flight: counted here, not by the service, which no longer counts a
                    # request once a test waits for it. Cleared before counting, so a request
                    # that ends after the count still wakes the wait below.
                    self._prefetch_wake.clear()
                    if self._stop_prefetch.is_set():  # a stop just before the clear
                        return
                    if sum(1 for future in started if not future.done()) < limit:
                        break
                    self._prefetch_wake.wait()  # a request ended, or the run is stopping
                    if self._stop_prefetch.is_set():
                        return
                record = self.row(index)
                if record_problem(record) is not None:
                    continue
                messages = render_messages(record, self.plan.prompt_template)
                if service.stored(messages, repeat) is not None:
                    continue
                future = service.prefetch(messages, repeat, route=index)
                if future is not None:
                    future.add_done_callback(lambda _: self._prefetch_wake.set())
                    started.append(future)

    # -- results (controller) ---------------------------------------------------------------

    def record(
        self,
        *,
        index: int,
        repeat: int,
        behavior: str,
        outcome: Outcome,
        message: str,
        detector: str | None,
        sample: Mapping[str, Any] | None,
    ) -> str | None:
        """Take one behavior test's outcome; returns a reason when the run must stop now."""
        if sample is not None:
            self.results.add_sample(sample)
            self._count(sample)
            if sample.get("status") != "error":
                self._consecutive_errors = 0
        key = (self.sample_id(index), repeat)
        self.results.add_outcome(key, behavior, outcome, message, detector)
        if sample is None or sample.get("status") != "error":
            return None
        return self._error_stop(sample)

    def _count(self, sample: Mapping[str, Any]) -> None:
        progress = self.progress
        progress.done = len(self.results.samples)
        if sample.get("status") == "error":
            progress.errors += 1
            return
        if sample.get("cached"):
            progress.cached += 1
        else:
            progress.asked += 1
            tokens = sample.get("eval_count")
            if isinstance(tokens, int):
                progress.tokens += tokens

    def _error_stop(self, sample: Mapping[str, Any]) -> str | None:
        """End the run early once the error budget cannot be met or the server is broken."""
        self._consecutive_errors += 1
        errors = self.results.error_count
        budget = self.settings.max_errors
        reason = None
        if not budget.allows(errors, self.progress.total):
            reason = (
                f"{errors} sample(s) had no reply, over the error budget of {budget.describe()}"
            )
        elif self._consecutive_errors >= CONSECUTIVE_ERRORS_TO_STOP:
            reason = f"the last {self._consecutive_errors} samples all had no reply"
        if reason is None or self.stopped:
            return None
        self.stopped = f"stopping early: {reason} (last: {sample.get('error')})"
        self._stop_prefetching()
        return self.stopped

    def finish(self, *, interrupted: bool, other_failures: int) -> Finished:
        """Build the report, compare it with the baseline, gate it and write the files.

        ``other_failures``: failed tests outside the eval suite. They, a behavior test that
        raised (not a measurement), and a failed gate make the status 1.
        Returns the status the run calls for (None: the test runner's own stands).
        """
        self._stop_prefetching()
        settings = self.settings
        planned = self.progress.total
        seen = len(self.results.samples)
        errors = self.results.error_count
        over_budget = not settings.max_errors.allows(errors, max(seen, 1))
        run = self.plan.report_run()
        run.update(
            duration_s=round(time.monotonic() - self._started, 3),
            repeat=settings.repeat,
            # complete: every planned sample has a reply (errors within budget still exit 0)
            complete=not interrupted and seen >= planned and errors == 0,
            exit_status=None,
            errors=errors,
            error_budget=settings.max_errors.describe(),
            server_started=self._server is not None,
        )
        if self.stopped:
            run["incomplete_reason"] = self.stopped
        elif interrupted:
            run["incomplete_reason"] = "interrupted"
        elif seen < planned:
            run["incomplete_reason"] = f"{planned - seen} of {planned} samples were not evaluated"
        elif errors:
            run["incomplete_reason"] = f"{errors} of {planned} samples had no reply"
        records = {
            key[0]: self.row(sample["index"]) for key, sample in self.results.samples.items()
        }
        report = build_report(run, self.results, records, list(self.rows.column_names))
        finished = Finished(report=report, status=None)
        gates_failed = self._gate(finished)
        if self.stopped is not None:
            budget = "error budget" in self.stopped
            finished.status = (
                ExitStatus.ERROR_BUDGET_EXCEEDED if budget else ExitStatus.SERVER_UNUSABLE
            )
        elif interrupted:
            finished.status = None  # pytest's own 2
        elif over_budget:
            finished.status = ExitStatus.ERROR_BUDGET_EXCEEDED
        elif other_failures or gates_failed or self.results.test_error_count:
            finished.status = ExitStatus.GATE_FAILED
        else:
            finished.status = ExitStatus.OK
        final = ExitStatus.INTERRUPTED if finished.status is None else finished.status
        report["run"]["exit_status"] = int(final)
        self._write_reports(finished)
        if finished.problems:
            # the files that were written say the status the run had until then
            finished.status = ExitStatus.REPORT_NOT_WRITTEN
            report["run"]["exit_status"] = int(finished.status)
        self._forget_failures()
        return finished

    def _gate(self, finished: Finished) -> bool:
        from mimicry.core.compare import compare_reports
        from mimicry.core.gates import evaluate_gates

        settings = self.settings
        report = finished.report
        if self.baseline is not None:
            finished.comparison = compare_reports(
                self.baseline, report, min_share=settings.min_consistency
            )
            report["comparison"] = finished.comparison.to_dict()
        gates = (*settings.gates, *settings.regressions)
        if not gates:
            return False
        finished.outcomes = evaluate_gates(gates, report, finished.comparison)
        report["gates"] = [o.to_dict() for o in finished.outcomes]
        return any(not o.passed for o in finished.outcomes)

    def _write_reports(self, finished: Finished) -> None:
        settings = self.settings
        report = finished.report
        writers: list[tuple[str, Path | None, Any]] = [
            ("--report-json", settings.report_json, lambda p: write_json(p, report)),
            ("--save-baseline", settings.save_baseline, lambda p: write_json(p, report)),
            ("--report-md", settings.report_md, lambda p: self._write_markdown(p, finished)),
            ("--report-html", settings.report_html, lambda p: self._write_html(p, finished)),
        ]
        for flag, path, write in writers:
            if path is None:
                continue
            try:
                write(path)
            except OSError as exc:
                finished.problems.append(
                    f"could not write {flag} {str(path)!r}: {exc.strerror or exc}"
                    f"{f' ({exc.filename})' if exc.filename else ''}; give a path in a writable "
                    "folder"
                )
            else:
                finished.written.append(str(path))

    def _write_markdown(self, path: Path, finished: Finished) -> None:
        from mimicry.reports.markdown import append_step_summary, render_markdown, write_markdown

        md = render_markdown(
            finished.report,
            comparison=finished.comparison,
            baseline=self.baseline,
            outcomes=finished.outcomes,
        )
        write_markdown(path, md)
        append_step_summary(md)

    def _write_html(self, path: Path, finished: Finished) -> None:
        from mimicry.reports.html import render_html, write_html

        page = render_html(
            finished.report,
            comparison=finished.comparison,
            baseline=self.baseline,
            outcomes=finished.outcomes,
        )
        write_html(path, page)

    def _forget_failures(self) -> None:
        """The run's remembered failures served its tests; the next run asks again."""
        for service in list(self._services.values()):
            cache = getattr(service, "_cache", None)
            if cache is not None:
                with contextlib.suppress(Exception):
                    cache.drop_failures(self.plan.run_id)

    # -- the end ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop prefetching, close clients and caches, stop the embedded server."""
        self._stop_prefetching()
        with self._services_lock:
            services, self._services = list(self._services.values()), {}
        for service in services:
            service.close()
        for client in self._client or []:
            with contextlib.suppress(Exception):
                client.close()
        self._client = None
        if self._prefetcher is not None:
            self._prefetcher.join(timeout=5)
        with self._server_lock:
            if self._server is not None:
                self._server.stop()
                self._server = None
        if self._run_cache is not None:
            shutil.rmtree(self._run_cache, ignore_errors=True)
            self._run_cache = None
        close = getattr(self.rows, "close", None)
        if callable(close) and not self.controller:
            close()


def _rows_on_this_machine(plan: RunPlan) -> Any:
    """The plan's dataset prepared on this machine; its selected rows must be the plan's."""
    from mimicry.dataset import DatasetError, choose_dataset, open_rows

    dataset = plan.dataset
    named = "sample" if dataset.get("bundled") else str(dataset["id_or_path"])
    try:
        rows = open_rows(choose_dataset(named, str(dataset.get("split", "train"))))
    except DatasetError as exc:
        raise PlanError(
            f"an xdist worker on another machine cannot read the run's dataset: {exc}; install "
            "the same dataset file at the same path there",
            exit_status=ExitStatus.USAGE_ERROR,
        ) from None
    ids = [str(value) for value in rows.ids]
    selected = [ids[i] if i < len(ids) else None for i in plan.indices]
    if len(rows) != dataset.get("n_rows") or selected != list(plan.sample_ids):
        raise PlanError(
            f"an xdist worker on another machine has a different {named!r} "
            f"({len(rows)} rows, not the controller's {dataset.get('n_rows')}, or other ids); "
            "install the same dataset file there",
            exit_status=ExitStatus.USAGE_ERROR,
        )
    return rows


def cache_digest(info: Mapping[str, Any]) -> str:
    """What identifies a model's replies in the cache: its digest, and for the embedded engine
    the thread count its arithmetic (and so a greedy reply) depends on."""
    digest = str(info.get("digest", ""))
    engine = info.get("engine")
    if isinstance(engine, Mapping) and engine.get("threads"):
        return f"{digest}+threads={engine['threads']}"
    return digest


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write atomically: a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8", errors="surrogatepass") as fh:
        json.dump(data, fh, ensure_ascii=True, indent=1)
        fh.write("\n")
    tmp.replace(path)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
