"""inspect_ai's side of ``python benchmarks/run.py compare``: the suite's work, done by inspect_ai.

Run with the Python of a virtualenv that has ``inspect-ai`` (never the project's; see
``benchmarks/install_tools.sh``)::

    python benchmarks/inspect_eval.py ROWS.jsonl URL MODEL --num-ctx N [--max-connections 8]
        [--cache] [--log-dir DIR]

One sample per row: its input is ``str(row)`` of the row read with :mod:`json` (byte for byte the
prompt the suite sends), one user message; ``generate()`` asks the model once (``--cache``:
through inspect_ai's own response cache, ``INSPECT_CACHE_DIR``); four scorers
(:mod:`compare_checks`) judge the reply. inspect_ai's built-in ``ollama`` provider speaks the
OpenAI-compatible ``/v1`` API, which the fake server does not serve, so the model is a small
:class:`ModelAPI` registered here that sends what the suite sends: ``POST /api/chat`` with
``"stream": false``, ``"tools": []`` and the options ``temperature``, ``seed``,
``num_predict``, ``num_ctx`` (from the GenerateConfig and ``--num-ctx``), over one pooled
``httpx.AsyncClient``. inspect_ai keeps at most ``--max-connections`` requests in flight.
Prints one JSON line: the scorers' accuracies and the sample count.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import httpx
from inspect_ai import Task, eval
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import (
    ChatMessage,
    GenerateConfig,
    ModelAPI,
    ModelOutput,
    ModelUsage,
    get_model,
    modelapi,
)
from inspect_ai.scorer import CORRECT, INCORRECT, Score, Target, accuracy, scorer
from inspect_ai.solver import TaskState, generate
from inspect_ai.tool import ToolChoice, ToolInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_checks import CHECKS  # noqa: E402 - next to this file

PROVIDER = "mimicryfake"
DEFAULT_CONFIG = GenerateConfig()


@modelapi(name=PROVIDER)
class OllamaChatAPI(ModelAPI):
    """Ollama's native ``/api/chat``, non-streaming, as the suite and promptfoo send it."""

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig = DEFAULT_CONFIG,
        **model_args: Any,
    ) -> None:
        super().__init__(model_name, base_url, api_key, [], config)
        self.num_ctx = int(model_args.get("num_ctx", 0)) or None
        self.connections = int(model_args.get("connections", 8))
        self._client: httpx.AsyncClient | None = None

    def max_connections(self) -> int:
        return self.connections

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=str(self.base_url),
                timeout=300,
                limits=httpx.Limits(max_connections=self.connections),
            )
        options: dict[str, Any] = {
            "temperature": config.temperature,
            "seed": config.seed,
            "num_predict": config.max_tokens,
        }
        if self.num_ctx:
            options["num_ctx"] = self.num_ctx
        body = {
            "model": self.model_name,
            "messages": [{"role": m.role, "content": m.text} for m in input],
            "stream": False,
            "options": options,
            "tools": [],  # as the suite's ollama client sends it
        }
        response = await self._client.post("/api/chat", json=body)
        response.raise_for_status()
        data = response.json()
        prompt_tokens = int(data.get("prompt_eval_count") or 0)
        output_tokens = int(data.get("eval_count") or 0)
        output = ModelOutput.from_content(
            model=self.model_name,
            content=str(data["message"]["content"]),
            stop_reason="max_tokens" if data.get("done_reason") == "length" else "stop",
        )
        output.usage = ModelUsage(
            input_tokens=prompt_tokens,
            output_tokens=output_tokens,
            total_tokens=prompt_tokens + output_tokens,
        )
        return output


def _scorer(name: str) -> Any:
    check = CHECKS[name]

    @scorer(metrics=[accuracy()], name=name)
    def make() -> Any:
        async def score(state: TaskState, target: Target) -> Score:
            meta = state.metadata
            shown = check(state.output.completion, meta["keys"], meta["prompt"])
            return Score(value=CORRECT if shown else INCORRECT)

        return score

    return make()


def build_task(rows_path: Path, cache: bool) -> Task:
    samples = []
    with rows_path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh):
            if not line.strip():
                continue
            row = json.loads(line)
            samples.append(
                Sample(
                    id=number,
                    input=str(row),
                    metadata={"keys": [str(k) for k in row], "prompt": str(row.get("prompt"))},
                )
            )
    return Task(
        dataset=MemoryDataset(samples),
        solver=generate(cache=cache),
        scorer=[_scorer(name) for name in CHECKS],
        config=GenerateConfig(temperature=0.0, seed=42, max_tokens=1024),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", type=Path)
    parser.add_argument("url")
    parser.add_argument("model")
    parser.add_argument("--num-ctx", type=int, required=True)
    parser.add_argument("--max-connections", type=int, default=8)
    parser.add_argument("--cache", action="store_true")
    parser.add_argument("--log-dir", default="inspect-logs")
    args = parser.parse_args(argv)
    model = get_model(
        f"{PROVIDER}/{args.model}",
        base_url=args.url,
        num_ctx=args.num_ctx,
        connections=args.max_connections,
    )
    logs = eval(
        build_task(args.rows, args.cache),
        model=model,
        max_connections=args.max_connections,
        display="none",
        log_dir=args.log_dir,
        log_samples=False,
        score_display=False,
    )
    log = logs[0]
    scores = {}
    if log.results is not None:
        for score in log.results.scores:
            scores[score.name] = score.metrics["accuracy"].value
    samples = log.results.total_samples if log.results is not None else 0
    sys.stdout.write(json.dumps({"status": log.status, "samples": samples, "accuracy": scores}))
    sys.stdout.write("\n")
    return 0 if log.status == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
