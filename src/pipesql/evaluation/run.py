"""The eval stage end to end: test pairs, gold results, model, generation, scores, figures.

    evaluate(params, tokenize_params, base_dir, adapter_dir, samples_dir, raw_dir) -> EvalResult

Gold queries run before the model is even loaded, so a missing database fails the stage in
seconds rather than after an hour of generation. A gold query that errors, times out or is cut at
eval.max_rows is bad gold, not a stopped stage: its example is recorded as `gold_error` with the
reason, generates nothing, is left out of every rate (the teacher-forced ones included) and is
counted in `gold_errors`. Schema text comes from `prompts.schema_text` with the tokenize stage's
params, so each prompt is the text the model was trained on. With generation.num_samples N > 1,
N sampled candidates per question are voted on (`consistency`) and reported beside the main
figures, with their cost in seconds.
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

from pipesql.evaluation.agent import AgentTask, run_agent, tool_metrics, tool_params
from pipesql.evaluation.consistency import Vote, vote
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
from pipesql.evaluation.score import (
    GOLD_ERROR,
    Gold,
    GoldError,
    Score,
    gold_for,
    judge,
    run_prediction,
    score_prediction,
)
from pipesql.evaluation.teacher_forced import LabelledSample, teacher_forced
from pipesql.io import DataError, atomic_path, read_jsonl, write_jsonl
from pipesql.models import load_model, resolve_dtype
from pipesql.params.eval import EvalParams, GenerationParams
from pipesql.params.tokenize import TokenizeParams
from pipesql.prompts import TOOLS, schema_text
from pipesql.samples import TEST_PAIRS_FILE
from pipesql.sources.raw import database_path
from pipesql.sql.pipe import split_operators
from pipesql.stratified import stratified_sample

Protocol = Literal["incremental", "full", "agent"]
PLOTS = {"execution_accuracy_by_difficulty": "difficulty", "execution_accuracy_by_num_ops": "num_ops"}


@dataclass(frozen=True)
class TestExample:
    """One test pair, with its gold result computed."""

    lineno: int                # in test_pairs.jsonl, for error messages
    row: dict[str, Any]        # the pair as tokenize wrote it
    db_path: Path
    num_ops: int               # of the gold pipe query
    gold: Gold | None          # None when the gold could not be run (see gold_error)
    gold_error: str | None = None

    @property
    def difficulty(self) -> str:
        return str(self.row.get("difficulty") or "unknown")


@dataclass
class EvalResult:
    predictions: list[dict[str, Any]]     # one row per example, for predictions.jsonl
    metrics: dict[str, Any]               # metrics/eval.json
    plots: dict[str, list[dict[str, Any]]]  # plot file stem -> its rows
    traces: list[dict[str, Any]] | None = None  # agent protocol: one conversation per example

    def write(self, predictions_path: Path, plots_dir: Path, traces_path: Path | None = None) -> None:
        """predictions.jsonl, the plot files and the agent's traces, each replaced only once complete."""
        write_jsonl(predictions_path, self.predictions)
        if traces_path is not None and self.traces is not None:
            write_jsonl(traces_path, self.traces)
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
                + f"\n  prediction: {_one_line(p['prediction'] or '')}"
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
    with_teacher_forced: bool = True,
) -> EvalResult:
    """Teacher-forced figures (unless left to another protocol's run of the same model), then
    generation and scoring, on the test pairs (eval.max_examples of them)."""
    examples = read_test_examples(Path(samples_dir), Path(raw_dir), params, progress)
    scored = [ex for ex in examples if ex.gold is not None]
    protocol = resolve_protocol(params.protocol, tokenize_params.mode)
    dtype = resolve_dtype(params.dtype)
    model, tokenizer = load_model(Path(base_dir), adapter_dir, dtype)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if with_teacher_forced:
        samples = read_test_samples(Path(samples_dir), {str(ex.row["id"]) for ex in scored})
        figures = teacher_forced(model, samples, params.teacher_forced_batch_size, pad_id, progress)
    db_paths = {ex.row["db_id"]: ex.db_path for ex in scored}
    schemas = {db_id: schema_text(path, tokenize_params, tokenizer) for db_id, path in db_paths.items()}
    # agent protocol: the tools in every prompt, and the tool loop instead of one reply
    tools = TOOLS if protocol == "agent" else None
    generator = HFGenerator(model, tokenizer, params.generation, progress, tools=tools)
    start = time.perf_counter()
    if protocol == "agent":
        traces = run_agent(
            [AgentTask(ex.row["question"], ex.db_path, ex.row.get("evidence"), str(ex.row["id"])) for ex in scored],
            generator, params.agent, tool_params(tokenize_params, params), progress=progress,
        )
        generations = [trace.generation() for trace in traces]
    else:
        generations = generate_queries(scored, schemas, generator, protocol, params.generation, progress)
    seconds = time.perf_counter() - start
    scores = score_examples(scored, generations, params, progress)
    consistency, cost = None, {}
    if params.generation.num_samples > 1 and protocol != "agent":
        # candidates are sampled whatever do_sample says, one sequence each (no beams)
        sampling = params.generation.model_copy(update={"do_sample": True, "num_beams": 1})
        start = time.perf_counter()
        candidates = sample_candidates(scored, schemas, HFGenerator(model, tokenizer, sampling, progress), protocol,
                                       sampling, progress)
        sampled = time.perf_counter()
        consistency = vote_examples(scored, candidates, params, progress)
        cost = {"num_samples": sampling.num_samples, "seconds": round(time.perf_counter() - start, 1),
                "sampling_seconds": round(sampled - start, 1), "main_seconds": round(seconds, 1)}
    result = report(examples, generations, scores, protocol, consistency)
    if consistency is not None:
        result.metrics["self_consistency"] |= cost
    if protocol == "agent":  # the tool figures beside the accuracies, and the traces
        result.metrics["agent"] = tool_metrics(traces)
        result.traces = [trace.row() for trace in traces]
    if len(params.engines) > 1:  # eval.engines: execution accuracy on real pipe engines
        on_engines = [Prediction(ex.db_path, g.query, ex.gold.result, ex.gold.ordered, ex.row["gold_sql"])
                      for ex, g in zip(scored, generations, strict=True)]
        sqlite = {"sqlite": {"execution_accuracy": result.metrics["execution_accuracy"]}}
        result.metrics["engines"] = sqlite | engine_accuracy(
            on_engines, params.engines, timeout_s=params.timeout_s, max_rows=params.max_rows,
            float_tol=params.float_tol, progress=progress)
    if with_teacher_forced:
        result.metrics |= {
            "loss": figures["loss"],
            "perplexity": figures["perplexity"],
            "token_accuracy": figures["token_accuracy"],
            "teacher_forced": {k: figures[k] for k in ("samples", "tokens", "by_kind")},
        }
    result.metrics |= {
        "generation": {
            "seconds": round(seconds, 1),
            "queries_per_s": round(len(scored) / seconds, 3) if seconds else None,
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
    """The test pairs (a stratified sample of eval.max_examples), each with its gold's result or error."""
    path = samples_dir / TEST_PAIRS_FILE
    if not path.is_file():
        raise DataError(f"{path}: not found; run 'dvc repro tokenize' first")
    rows = list(read_jsonl(path))
    if not rows:
        raise DataError(f"{path}: no test pairs; give tokenize.split.ratios.test a share above 0")
    for lineno, row in rows:
        missing = [key for key in ("id", "db_id", "question", "gold_sql", "pipe_sql") if not row.get(key)]
        if missing:
            raise DataError(f"{path}:{lineno}: missing {', '.join(missing)}; run 'dvc repro tokenize' again")
    if params.max_examples is not None:
        strata = [(row["db_id"], str(row.get("difficulty") or "")) for _, row in rows]
        rows = [rows[i] for i in stratified_sample(strata, params.max_examples, params.sample_seed)]
    suite = Path(params.test_suite_path) if params.test_suite_path else None
    examples = []
    for lineno, row in tqdm(rows, desc="gold queries", unit="query", disable=not progress):
        db_path = database_path(raw_dir, row["db_id"])
        if not db_path.is_file():
            raise DataError(f"{path}:{lineno}: {db_path}: no such database; run 'dvc repro download'")
        num_ops = len(split_operators(row["pipe_sql"]))
        suite_dbs = _test_suite(suite, row["db_id"], db_path) if suite else []
        try:
            gold = gold_for(row["pipe_sql"], row["gold_sql"], db_path, params.timeout_s, params.max_rows, suite_dbs)
        except GoldError as e:
            examples.append(TestExample(lineno, row, db_path, num_ops, None, f"gold {e}"))
            continue
        examples.append(TestExample(lineno, row, db_path, num_ops, gold))
    if not any(ex.gold for ex in examples):
        raise DataError(f"{path}: no gold query runs ({examples[0].gold_error}, ...); check the databases")
    return examples


def _test_suite(suite: Path, db_id: str, db_path: Path) -> list[Path]:
    """The test-suite databases of db_id other than the eval database itself; DataError when none."""
    found = sorted((suite / db_id).glob("*.sqlite"))
    if not found:
        raise DataError(f"eval.test_suite_path: {suite / db_id} holds no .sqlite databases for {db_id!r}")
    return [p for p in found if p.resolve() != db_path.resolve()]


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
    """Each generated query's verdicts; `examples` are those with a gold (gold_error ones have none)."""
    pairs = zip(examples, generations, strict=True)
    return [
        score_prediction(
            g.query, _gold(ex), ex.db_path, timeout_s=params.timeout_s, max_rows=params.max_rows,
            float_tol=params.float_tol,
        )
        for ex, g in tqdm(pairs, total=len(examples), desc="score", unit="query", disable=not progress)
    ]


def sample_candidates(
    examples: Sequence[TestExample],
    schemas: dict[str, str],
    generate: Generate,
    protocol: Protocol,
    params: GenerationParams,
    progress: bool = True,
) -> list[list[Generation]]:
    """params.num_samples generations per example: each question asked that many times at once."""
    n = params.num_samples
    repeated = [ex for ex in examples for _ in range(n)]
    flat = generate_queries(repeated, schemas, generate, protocol, params, progress)
    return [flat[i * n : (i + 1) * n] for i in range(len(examples))]


@dataclass(frozen=True)
class Consistent:
    """The self-consistency answer of one example: the winning candidate, its verdicts, the vote."""

    generation: Generation
    score: Score
    vote: Vote


def vote_examples(
    examples: Sequence[TestExample], candidates: Sequence[Sequence[Generation]], params: EvalParams,
    progress: bool = True,
) -> list[Consistent]:
    """Run every candidate, vote on their results, and score the winner under the three rules."""
    out = []
    pairs = zip(examples, candidates, strict=True)
    for ex, gens in tqdm(pairs, total=len(examples), desc="vote", unit="query", disable=not progress):
        attempts = [run_prediction(g.query, ex.db_path, timeout_s=params.timeout_s, max_rows=params.max_rows)
                    for g in gens]
        chosen = vote(attempts, [g.logprob for g in gens])
        score = judge(attempts[chosen.winner], _gold(ex), timeout_s=params.timeout_s, max_rows=params.max_rows,
                      float_tol=params.float_tol)
        out.append(Consistent(gens[chosen.winner], score, chosen))
    return out


def report(
    examples: Sequence[TestExample],
    generations: Sequence[Generation],
    scores: Sequence[Score],
    protocol: Protocol,
    consistency: Sequence[Consistent] | None = None,
) -> EvalResult:
    """predictions.jsonl rows, the generation figures of metrics/eval.json, and the plot rows.

    `generations`, `scores` (and `consistency`) are those of the examples with a gold, in order;
    a gold_error example gets its row in predictions.jsonl and a count, no rate.
    """
    scored = [ex for ex in examples if ex.gold is not None]
    if not len(scored) == len(generations) == len(scores):
        raise ValueError(f"{len(scored)} examples with a gold, {len(generations)} generations, {len(scores)} scores")
    verdicts = iter(zip(generations, scores, consistency or [None] * len(scores), strict=True))
    predictions = [_gold_error(ex) if ex.gold is None else _prediction(ex, *next(verdicts)) for ex in examples]
    by_difficulty = rates_by(scores, [ex.difficulty for ex in scored])
    by_num_ops = rates_by(scores, [str(ex.num_ops) for ex in scored])
    metrics = {
        "protocol": protocol,
        **rates(scores),
        "gold_errors": len(examples) - len(scored),  # not in `examples` nor in any rate
        "databases": len({ex.row["db_id"] for ex in scored}),
        "errors": errors(scores),
        # cut off by max_steps (or, full, by the token budget); an unreadable step is a parse error
        "unfinished": sum(not g.finished and g.error is None for g in generations),
        "steps_mean": round(sum(g.steps for g in generations) / len(generations), 3) if generations else 0.0,
        "by_difficulty": by_difficulty,
        "by_num_ops": by_num_ops,
    }
    sources = [ex.row.get("source") for ex in scored]
    if len(set(sources)) > 1:  # several sources in one run (download.data.sources): each its own figures
        metrics["by_source"] = rates_by(scores, [str(source) for source in sources])
    if consistency is not None:
        sc_scores = [c.score for c in consistency]
        metrics["self_consistency"] = {
            **rates(sc_scores),
            "by_difficulty": rates_by(sc_scores, [ex.difficulty for ex in scored]),
        }
    groups = {"difficulty": by_difficulty, "num_ops": by_num_ops}
    plots = {name: plot_rows(groups[x], x) for name, x in PLOTS.items()}
    return EvalResult(predictions, metrics, plots)


def _gold(ex: TestExample) -> Gold:
    if ex.gold is None:
        raise ValueError(f"line {ex.lineno}: {ex.gold_error}: an example without a gold is not scored")
    return ex.gold


def _prediction(ex: TestExample, g: Generation, s: Score, c: Consistent | None) -> dict[str, Any]:
    row = ex.row
    out = {
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
        "correct": s.is_correct,
        "correct_spider": s.spider,
        "correct_bird": s.bird,
        "exact_match": s.exact_match,
        "steps": g.steps,
        "finished": g.finished,
    }
    if c is not None:
        out["self_consistency"] = {
            "prediction": c.generation.query, "status": c.score.status, "correct": c.score.is_correct,
            "correct_spider": c.score.spider, "correct_bird": c.score.bird, "votes": c.vote.votes,
            "results": c.vote.groups, "logprob": round(c.generation.logprob, 4),
        }
    return out


def _gold_error(ex: TestExample) -> dict[str, Any]:
    """The row of an example whose gold could not be run: no prediction, the reason."""
    row = ex.row
    return {
        "id": row["id"], "db_id": row["db_id"], "difficulty": ex.difficulty, "num_ops": ex.num_ops,
        "question": row["question"], "evidence": row.get("evidence"), "gold": row["pipe_sql"],
        "gold_sql": row["gold_sql"], "prediction": None, "lowered": None, "status": GOLD_ERROR,
        "error": ex.gold_error, "correct": False, "correct_spider": False, "correct_bird": False,
        "exact_match": False, "steps": 0, "finished": False,
    }


def _one_line(sql: str) -> str:
    return " ".join(sql.split())
