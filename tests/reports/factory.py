"""Schema-2 reports for the report tests, built by the real ``build_report`` from sample dicts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mimicry.core.behaviors import BUILTIN_BEHAVIORS
from mimicry.core.report import RunResults, build_report

BEHAVIORS: tuple[str, ...] = tuple(BUILTIN_BEHAVIORS)
DIGEST = "sha256:" + "1a" * 32


def make_record(sample_id: str | int, prompt: str = '["Who made you?"]') -> dict[str, Any]:
    """A record shaped like the dataset's rows."""
    return {
        "id": int(sample_id) if str(sample_id).isdigit() else sample_id,
        "model_a": "gpt-4-0613",
        "model_b": "claude-2.1",
        "prompt": prompt,
        "response_a": '["I was made by a team of engineers who trained me on a lot of text."]',
        "response_b": '["Anthropic made me."]',
        "winner_model_a": 1,
        "winner_model_b": 0,
        "winner_tie": 0,
    }


def make_sample(
    sample_id: str | int,
    verdicts: Mapping[str, bool | None] | bool = False,
    *,
    index: int = 0,
    reply: str | None = "{'id': 1}",
    prompt_chars: int | None = 1000,
    error: str | None = None,
    explanations: Mapping[str, str] | None = None,
    test_errors: Mapping[str, str] | None = None,
    behaviors: Sequence[str] = BEHAVIORS,
    done_reason: str = "stop",
) -> dict[str, Any]:
    """One sample result with its verdicts: a bool gives every behavior that verdict, a mapping
    the verdicts it names and False for the other behaviors."""
    if isinstance(verdicts, bool):
        verdicts = dict.fromkeys(behaviors, verdicts)
    else:
        verdicts = {name: verdicts.get(name, False) for name in behaviors}
    return {
        "id": str(sample_id),
        "index": index,
        "repeat": 0,
        "status": "error" if error is not None else "ok",
        "error": error,
        "prompt_chars": prompt_chars,
        "cached": False,
        "flags": [],
        "measures": {"kept_keys": ["id"], "shorter_than_input": True} if error is None else {},
        "behaviors": dict.fromkeys(behaviors) if error is not None else dict(verdicts),
        "reply": None if error is not None else reply,
        "done_reason": None if error is not None else done_reason,
        "prompt_eval_count": 100,
        "eval_count": 20,
        "_verdicts": dict(verdicts),
        "_explanations": dict(explanations or {}),
        "_test_errors": dict(test_errors or {}),
    }


def make_report(
    samples: Iterable[Mapping[str, Any]],
    *,
    model: str = "qwen2:0.5b",
    digest: str = DIGEST,
    complete: bool = True,
    incomplete_reason: str | None = None,
    planned: Sequence[str] | None = None,
    behaviors: Sequence[str] = BEHAVIORS,
    records: Mapping[str, Mapping[str, Any]] | None = None,
    started_at: str = "2026-01-01T00:00:00+00:00",
    detectors: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """A report built by ``build_report``; every sample gets a record unless ``records`` says."""
    results = RunResults()
    ids = []
    for sample in samples:
        sample = dict(sample)
        verdicts = sample.pop("_verdicts", {})
        explanations = sample.pop("_explanations", {})
        test_errors = sample.pop("_test_errors", {})
        results.add_sample(sample)
        ids.append(sample["id"])
        for name in behaviors:
            detector = (detectors or {}).get(name, name if name in BUILTIN_BEHAVIORS else None)
            if sample["status"] == "error":
                results.add_outcome((sample["id"], 0), name, "error", sample["error"], detector)
            elif name in test_errors:
                results.add_outcome((sample["id"], 0), name, "error", test_errors[name], detector)
            elif name in verdicts:
                value = verdicts[name]
                outcome = "not judged" if value is None else "shown" if value else "not shown"
                results.add_outcome(
                    (sample["id"], 0), name, outcome, explanations.get(name, ""), detector
                )
    if records is None:
        records = {sample_id: make_record(sample_id) for sample_id in ids}
    run = {
        "run_id": "test",
        "backend": "ollama",
        "model": model,
        "model_digest": digest,
        "host": "http://user:secret@127.0.0.1:11434/?key=hunter2",
        "options": {"temperature": 0, "seed": 42, "num_predict": 512, "num_ctx": 4096},
        "prompt_template": "repr",
        "dataset": {
            "id_or_path": "train-first32.jsonl",
            "split": "train",
            "n_rows": 32,
            "sample_ids": list(planned if planned is not None else ids),
        },
        "started_at": started_at,
        "package_version": "0.1.0",
        "duration_s": 1.5,
        "complete": complete,
        "exit_status": 0,
        "errors": sum(1 for s in results.samples.values() if s["status"] == "error"),
    }
    if incomplete_reason is not None:
        run["incomplete_reason"] = incomplete_reason
    return build_report(run, results, records, list(make_record(0)))
