"""The eval stage end to end: test pairs, gold results, model, generation, scores, figures.

    evaluate(params, tokenize_params, base_dir, adapter_dir, samples_dir, raw_dir) -> EvalResult

Gold queries run before the model is even loaded, so a missing or broken database fails the stage
in seconds rather than after an hour of generation. Schema text comes from `prompts.schema_text`
with the tokenize stage's params, so each prompt is the text the model was trained on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from datasets import load_from_disk
from tqdm import tqdm

from pipesql.evaluation.generate import (
    Generate,
    Generation,
    HFGenerator,
    Task,
    generate_full,
    generate_incremental,
)
from pipesql.evaluation.engines import Prediction, engine_accuracy
from pipesql.evaluation.metrics import errors, plot_rows, rates, rates_by
from pipesql.evaluation.model import load_model, resolve_dtype
from pipesql.evaluation.score import Gold, Score, gold_for, score_prediction
from pipesql.evaluation.teacher_forced import LabelledSample, teacher_forced
from pipesql.io import DataError, atomic_path, read_jsonl, write_jsonl
from pipesql.params.eval import EvalParams, GenerationParams
from pipesql.params.tokenize import TokenizeParams
from pipesql.prompts import schema_text
from pipesql.samples import TEST_PAIRS_FILE
from pipesql.sources.raw import database_path
from pipesql.sql.execute import ExecutionError
from pipesql.sql.lower import LoweringError
from pipesql.sql.pipe import split_operators

Protocol = Literal["incremental", "full"]
PLOTS = {"execution_accuracy_by_difficulty": "difficulty", "execution_accuracy_by_num_ops": "num_ops"}


@dataclass(frozen=True)
class TestExample:
    """One test pair, with its gold result computed."""

    lineno: int                # in test_pairs.jsonl, for error messages
    row: dict[str, Any]        # the pair as tokenize wrote it
    db_path: Path
    num_ops: int               # of the gold pipe query
    gold: Gold

    @property
    def difficulty(self) -> str:
        return str(self.row.get("difficulty") or "unknown")


@dataclass
class EvalResult:
    predictions: list[dict[str, Any]]     # one row per example, for predictions.jsonl
    metrics: dict[str, Any]               # metrics/eval.json
    plots: dict[str, list[dict[str, Any]]]  # plot file stem -> its rows

    def write(self, predictions_path: Path, plots_dir: Path) -> None:
        """predictions.jsonl and the plot files, each replaced only once complete."""
        write_jsonl(predictions_path, self.predictions)
        with atomic_path(Path(plots_dir)) as tmp:
            tmp.mkdir(parents=True)
            for name, rows in self.plots.items():
                (tmp / f"{name}.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")

    def show(self, n: int) -> str:
        """The first n predictions beside their gold, for the log."""
        blocks = []
        for p in self.predictions[:n]:
            blocks.append(
                f"[{p['id']}] {p['difficulty']}, {p['num_ops']} operators: {p['status']}"
                + (f" ({p['error']})" if p["error"] else "")
                + f"\n  question:   {p['question']}\n  gold:       {_one_line(p['gold'])}"
                + f"\n  prediction: {_one_line(p['prediction'])}"
            )
        return "\n".join(blocks)


def evaluate(
    params: EvalParams,
    tokenize_params: TokenizeParams,
    base_dir: Path,
    adapter_dir: Path | None,
    samples_dir: Path,
    raw_dir: Path,
    progress: bool = True,
) -> EvalResult:
    """Teacher-forced figures, then generation and scoring, on the first eval.max_examples pairs."""
    examples = read_test_examples(Path(samples_dir), Path(raw_dir), params, progress)
    protocol = resolve_protocol(params.protocol, tokenize_params.mode)
    dtype = resolve_dtype(params.dtype)
    model, tokenizer = load_model(Path(base_dir), adapter_dir, dtype)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    samples = read_test_samples(Path(samples_dir), {str(ex.row["id"]) for ex in examples})
    figures = teacher_forced(model, samples, params.teacher_forced_batch_size, pad_id, progress)
    db_paths = {ex.row["db_id"]: ex.db_path for ex in examples}
    schemas = {db_id: schema_text(path, tokenize_params, tokenizer) for db_id, path in db_paths.items()}
    generator = HFGenerator(model, tokenizer, params.generation, progress)
    start = time.perf_counter()
    generations = generate_queries(examples, schemas, generator, protocol, params.generation, progress)
    seconds = time.perf_counter() - start
    scores = score_examples(examples, generations, params, progress)
    result = report(examples, generations, scores, protocol)
    if len(params.engines) > 1:  # eval.engines (issue 13): execution accuracy on real pipe engines
        on_engines = [Prediction(ex.db_path, g.query, ex.gold.result, ex.gold.ordered)
                      for ex, g in zip(examples, generations, strict=True)]
        sqlite = {"sqlite": {"execution_accuracy": result.metrics["execution_accuracy"]}}
        result.metrics["engines"] = sqlite | engine_accuracy(
            on_engines, params.engines, timeout_s=params.timeout_s, max_rows=params.max_rows,
            float_tol=params.float_tol, progress=progress)
    result.metrics |= {
        "loss": figures["loss"],
        "perplexity": figures["perplexity"],
        "token_accuracy": figures["token_accuracy"],
        "teacher_forced": {k: figures[k] for k in ("samples", "tokens", "by_kind")},
        "generation": {
            "seconds": round(seconds, 1),
            "queries_per_s": round(len(examples) / seconds, 3) if seconds else None,
            "dtype": dtype,
            "batch_size": params.generation.batch_size,
            "prefix_cache": generator.prefix_cache,
            "cached_prefixes": generator.cached_prefixes,
        },
    }
    return result


def read_test_examples(
    samples_dir: Path, raw_dir: Path, params: EvalParams, progress: bool = True
) -> list[TestExample]:
    """The first eval.max_examples test pairs, each with its gold query's result."""
    path = samples_dir / TEST_PAIRS_FILE
    if not path.is_file():
        raise DataError(f"{path}: not found; run 'dvc repro tokenize' first")
    rows = [(lineno, row) for lineno, row in read_jsonl(path)][: params.max_examples]
    if not rows:
        raise DataError(f"{path}: no test pairs; give tokenize.split.ratios.test a share above 0")
    examples = []
    for lineno, row in tqdm(rows, desc="gold queries", unit="query", disable=not progress):
        where = f"{path}:{lineno}"
        missing = [key for key in ("id", "db_id", "question", "gold_sql", "pipe_sql") if not row.get(key)]
        if missing:
            raise DataError(f"{where}: missing {', '.join(missing)}; run 'dvc repro tokenize' again")
        db_path = database_path(raw_dir, row["db_id"])
        try:
            gold = gold_for(row["pipe_sql"], row["gold_sql"], db_path, params.timeout_s, params.max_rows)
        except ExecutionError as e:
            hint = "raise eval.timeout_s" if e.category == "timeout" else "check the database and golden pairs"
            raise DataError(f"{where}: gold SQL fails on {db_path}: {e}; {hint}") from None
        except LoweringError as e:
            raise DataError(f"{where}: gold pipe SQL does not lower: {e}; run 'dvc repro golden_pairs'") from None
        examples.append(TestExample(lineno, row, db_path, len(split_operators(row["pipe_sql"])), gold))
    return examples


def read_test_samples(samples_dir: Path, example_ids: set[str]) -> list[LabelledSample]:
    """The test split's samples of these examples, for the teacher-forced figures.

    Rows are read one by one rather than through filter() or select(), which would write cache
    files into data/samples/, another stage's output.
    """
    try:
        test = load_from_disk(str(samples_dir))["test"]
    except (FileNotFoundError, KeyError) as e:
        raise DataError(f"{samples_dir}: no test split ({e}); run 'dvc repro tokenize' first") from None
    missing = {"input_ids", "labels", "kind", "example_id"} - set(test.column_names)
    if missing:
        raise DataError(f"{samples_dir}: the test split lacks columns {sorted(missing)}; run 'dvc repro tokenize'")
    wanted = [i for i, example_id in enumerate(test["example_id"]) if example_id in example_ids]
    rows = test.select_columns(["input_ids", "labels", "kind"])
    return [LabelledSample(r["input_ids"], r["labels"], r["kind"]) for r in (rows[i] for i in wanted)]


def resolve_protocol(protocol: str, tokenize_mode: str) -> Protocol:
    """`auto` follows what tokenize trained: full for `full`, incremental for `incremental` and `both`."""
    if protocol != "auto":
        return protocol  # type: ignore[return-value]
    return "full" if tokenize_mode == "full" else "incremental"


def generate_queries(
    examples: Sequence[TestExample],
    schemas: dict[str, str],
    generate: Generate,
    protocol: Protocol,
    params: GenerationParams,
    progress: bool = True,
) -> list[Generation]:
    tasks = [Task(ex.row["question"], schemas[ex.row["db_id"]], ex.row.get("evidence")) for ex in examples]
    if protocol == "full":
        return generate_full(tasks, generate, params.max_new_tokens_full)
    return generate_incremental(tasks, generate, params.max_steps, params.max_new_tokens_step, progress)


def score_examples(
    examples: Sequence[TestExample], generations: Sequence[Generation], params: EvalParams, progress: bool = True
) -> list[Score]:
    pairs = zip(examples, generations, strict=True)
    return [
        score_prediction(
            g.query, ex.gold, ex.db_path, timeout_s=params.timeout_s, max_rows=params.max_rows,
            float_tol=params.float_tol,
        )
        for ex, g in tqdm(pairs, total=len(examples), desc="score", unit="query", disable=not progress)
    ]


def report(
    examples: Sequence[TestExample], generations: Sequence[Generation], scores: Sequence[Score], protocol: Protocol
) -> EvalResult:
    """predictions.jsonl rows, the generation figures of metrics/eval.json, and the plot rows."""
    predictions = [_prediction(ex, g, s) for ex, g, s in zip(examples, generations, scores, strict=True)]
    by_difficulty = rates_by(scores, [ex.difficulty for ex in examples])
    by_num_ops = rates_by(scores, [str(ex.num_ops) for ex in examples])
    overall = rates(scores)
    metrics = {
        "protocol": protocol,
        **overall,
        "errors": errors(scores),
        # cut off by max_steps (or, full, by the token budget); an unreadable step is a parse error
        "unfinished": sum(not g.finished and g.error is None for g in generations),
        "steps_mean": round(sum(g.steps for g in generations) / len(generations), 3) if generations else 0.0,
        "by_difficulty": by_difficulty,
        "by_num_ops": by_num_ops,
    }
    groups = {"difficulty": by_difficulty, "num_ops": by_num_ops}
    plots = {name: plot_rows(groups[x], x) for name, x in PLOTS.items()}
    return EvalResult(predictions, metrics, plots)


def _prediction(ex: TestExample, g: Generation, s: Score) -> dict[str, Any]:
    row = ex.row
    return {
        "id": row["id"],
        "db_id": row["db_id"],
        "difficulty": ex.difficulty,
        "num_ops": ex.num_ops,
        "question": row["question"],
        "evidence": row.get("evidence"),
        "gold": row["pipe_sql"],
        "gold_sql": row["gold_sql"],
        "prediction": g.query,
        "lowered": s.lowered,
        "status": s.status,
        "error": g.error or s.error,  # an unreadable step says more than the parse error it causes
        "exact_match": s.exact_match,
        "steps": g.steps,
        "finished": g.finished,
    }


def _one_line(sql: str) -> str:
    return " ".join(sql.split())
