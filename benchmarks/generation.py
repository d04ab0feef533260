"""Batched vs one-at-a-time generation: eval's incremental loop, timed both ways on the same queries.

    python -m benchmarks.generation --examples 32 --runs 3
    python -m benchmarks.generation --model models/base --adapter models/adapter --raw data/raw

Without --model the default pipeline's inputs are rebuilt in a temporary folder: the synthetic
benchmark at `download.data` defaults and the scratch model at `download.model` defaults (the
"default model"), untrained unless an adapter is given. The workload is eval's: the first
--examples questions, schema text at `tokenize` defaults, the incremental loop at `eval`
defaults (greedy, max_steps, max_new_tokens_step, prefix cache on). "batched" is that;
"sequential" the same one question at a time; "sequential_naive" also without the prefix cache,
as a plain loop over examples would run. `batched_speedup` is sequential time over batched time
(target: 5x on the CPU); all three must reply alike. An untrained model seldom ends a reply, so
each query is one step of max_new_tokens_step tokens: decoding-heavy, which batching serves
best and the prefix cache least. Prints a JSON summary (and writes it with --json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from pipesql.evaluation.generate import Generation, HFGenerator, Task, generate_incremental
from pipesql.models import load_model
from pipesql.params.download import ModelParams, SyntheticDataParams
from pipesql.params.eval import EvalParams, GenerationParams
from pipesql.params.tokenize import TokenizeParams
from pipesql.prompts import schema_text
from pipesql.sources.raw import database_path, read_examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=32, help="questions generated for")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model", type=Path, help="a model directory (default: the scratch model, rebuilt)")
    parser.add_argument("--adapter", type=Path, help="a LoRA adapter for --model")
    parser.add_argument("--raw", type=Path, help="examples.jsonl and databases (default: synthetic, rebuilt)")
    parser.add_argument("--batch-size", type=int, help="default: eval.generation.batch_size's default")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args()
    if (args.model is None) != (args.raw is None):
        parser.error("give --model and --raw together, or neither (both are rebuilt)")
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        raw, model_dir = (args.raw, args.model) if args.model else _default_inputs(Path(tmp))
        label = str(args.model) if args.model else "default scratch model (untrained)"
        summary = bench(model_dir, args.adapter, raw, args.examples, args.runs, args.batch_size) | {"model": label}
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


def bench(
    model_dir: Path, adapter: Path | None, raw: Path, n_examples: int, runs: int, batch_size: int | None = None
) -> dict[str, Any]:
    model, tokenizer = load_model(model_dir, adapter, "fp32")
    tasks = _tasks(raw, n_examples, tokenizer)
    settings = EvalParams().generation
    if batch_size:
        settings = settings.model_copy(update={"batch_size": batch_size})
    modes = {
        "batched": settings,
        "sequential": settings.model_copy(update={"batch_size": 1}),
        "sequential_naive": settings.model_copy(update={"batch_size": 1, "prefix_cache": False}),
    }
    seconds: dict[str, list[float]] = {name: [] for name in modes}
    outputs: dict[str, list[Generation]] = {}
    for _ in range(runs):
        for name, params in modes.items():
            start = time.perf_counter()
            outputs[name] = _generate(model, tokenizer, tasks, params)
            seconds[name].append(time.perf_counter() - start)
    median = {name: statistics.median(s) for name, s in seconds.items()}
    schema_tokens = [len(tokenizer.encode(t.schema, add_special_tokens=False)) for t in tasks]
    return {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch_threads": torch.get_num_threads(),
        "adapter": str(adapter) if adapter else None,
        "examples": len(tasks),
        "databases": len({t.schema for t in tasks}),
        "schema_tokens_mean": round(statistics.mean(schema_tokens)),
        "batch_size": settings.batch_size,
        "steps_mean": round(statistics.mean(g.steps for g in outputs["batched"]), 2),
        "runs": runs,
        "seconds": {name: [round(s, 2) for s in values] for name, values in seconds.items()},
        "queries_per_s": {name: round(len(tasks) / m, 2) for name, m in median.items()},
        "batched_speedup": round(median["sequential"] / median["batched"], 2),
        "speedup_over_naive": round(median["sequential_naive"] / median["batched"], 2),
        "same_replies": outputs["batched"] == outputs["sequential"] == outputs["sequential_naive"],
    }


def _generate(model: Any, tokenizer: Any, tasks: list[Task], params: GenerationParams) -> list[Generation]:
    generator = HFGenerator(model, tokenizer, params, progress=False)  # a fresh prefix cache each run
    return generate_incremental(tasks, generator, params.max_steps, params.max_new_tokens_step, progress=False)


def _tasks(raw: Path, n: int, tokenizer: Any) -> list[Task]:
    params = TokenizeParams()
    schemas: dict[str, str] = {}
    tasks = []
    for _, example in read_examples(raw):
        if len(tasks) == n:
            break
        if example.db_id not in schemas:
            schemas[example.db_id] = schema_text(database_path(raw, example.db_id), params, tokenizer)
        tasks.append(Task(example.question, schemas[example.db_id], example.evidence))
    return tasks


def _default_inputs(tmp: Path) -> tuple[Path, Path]:
    """The synthetic data and scratch model `dvc repro download` builds at default params."""
    from pipesql.basemodel import prepare_base_model
    from pipesql.sources.raw import write_raw
    from pipesql.sources.synthetic import generate_synthetic

    examples, databases = generate_synthetic(SyntheticDataParams(), 0, tmp / "generated")
    write_raw(tmp / "raw", examples, databases)
    prepare_base_model(ModelParams(), tmp / "raw", tmp / "default" / "base")
    return tmp / "raw", tmp / "default" / "base"


if __name__ == "__main__":
    main()
