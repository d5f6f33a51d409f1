"""The run's logic, without pytest: planning, replies, results and reports (see
:mod:`mimicry.run.session`). The pytest plugin, the fixtures and the CLI use it through
:class:`EvalRun`."""

from __future__ import annotations

from mimicry.run.plan import PlanError, RunPlan
from mimicry.run.session import EvalRun, Finished, Progress, SampleFailed, write_json

__all__ = ["EvalRun", "Finished", "PlanError", "Progress", "RunPlan", "SampleFailed", "write_json"]
