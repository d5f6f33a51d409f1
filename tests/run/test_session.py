"""EvalRun without pytest: a worker's view of the plan, on this machine and on another."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mimicry.exitcodes import ExitStatus
from mimicry.run import EvalRun, PlanError
from mimicry.settings import resolve
from tests.conftest import REAL_ROWS_JSONL


def _planned(tmp_path: Path) -> EvalRun:
    settings = resolve(
        {"dataset": str(REAL_ROWS_JSONL), "sample_ids": "887722,933555", "backend": "ollama"}, {}
    )
    return EvalRun.plan_new(settings, cache_dir=tmp_path / "cache", workers=2, dry_run=True)


def test_a_worker_reads_the_controllers_row_store(tmp_path: Path) -> None:
    controller = _planned(tmp_path)
    worker = EvalRun.for_worker(controller.settings, controller.plan.to_dict())

    assert worker.rows.path == controller.rows.path
    assert worker.row(controller.plan.indices[0]) == controller.row(controller.plan.indices[0])


def test_a_worker_on_another_machine_prepares_the_same_dataset_there(tmp_path: Path) -> None:
    controller = _planned(tmp_path)
    elsewhere = dataclasses.replace(controller.plan, rows_path=str(tmp_path / "not-here.rows"))

    worker = EvalRun.for_worker(controller.settings, elsewhere.to_dict())

    index = controller.plan.indices[1]
    assert worker.row(index) == controller.row(index)
    assert worker.sample_id(index) == "933555"


def test_a_worker_with_another_dataset_is_a_clear_error(tmp_path: Path) -> None:
    controller = _planned(tmp_path)
    elsewhere = dataclasses.replace(
        controller.plan, rows_path=str(tmp_path / "not-here.rows"), sample_ids=["1", "2"]
    )

    with pytest.raises(PlanError, match="has a different") as info:
        EvalRun.for_worker(controller.settings, elsewhere.to_dict())
    assert info.value.exit_status is ExitStatus.USAGE_ERROR
