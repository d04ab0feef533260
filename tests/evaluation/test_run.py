"""The eval stage on the tiny project: test pairs and their gold, scripted generation scored into
metrics and plots, teacher-forced figures, and the stage script end to end on a trained model.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
import yaml

from evaluation.tinyrun import TinyProject
from pipesql.evaluation.generate import Messages, Reply
from pipesql.models import load_model
from pipesql.evaluation.run import (
    generate_queries,
    read_test_examples,
    read_test_samples,
    report,
    resolve_protocol,
    sample_candidates,
    score_examples,
    vote_examples,
)
from pipesql.evaluation.teacher_forced import teacher_forced
from pipesql.io import DataError
from pipesql.params.eval import EvalParams, GenerationParams
from pipesql.prompts import END_MARKER

REPO_ROOT = Path(__file__).resolve().parents[2]
# the tiny project's four test questions, and how the scripted model answers each
SCRIPTS = {
    "How many singers are there?": ["FROM singer", "AGGREGATE COUNT(*)", END_MARKER],            # correct
    "What are the names of singers from France?":                                                 # the cap
        ["FROM singer", "WHERE country = 'France'", "SELECT name"],
    "List the species by number of legs, most first.":                                            # order
        ["FROM animal", "ORDER BY legs", "SELECT species", END_MARKER],
    "How many animals have four legs?": ["FROM animal", "COUNT legs", END_MARKER],                # parse
}


def scripted(prompts: Sequence[Messages], max_new_tokens: int) -> list[str]:
    replies = []
    for messages in prompts:
        user = messages[1]["content"]
        question = user.split("\n")[0].removeprefix("Question: ")
        so_far = user.split("Query so far:")[1]
        step = 0 if so_far == " (empty)" else so_far.count("\n")
        script = SCRIPTS[question]
        replies.append(script[min(step, len(script) - 1)])
    return replies


def _scripted_run(project: TinyProject) -> tuple[list, list, list]:
    """The tiny project's test examples answered by `scripted`, and their scores."""
    params = EvalParams(generation=GenerationParams(max_steps=5))
    examples = read_test_examples(project.samples, project.raw, params, progress=False)
    schemas = {ex.row["db_id"]: "CREATE TABLE x (y INT);" for ex in examples}
    generations = generate_queries(examples, schemas, scripted, "incremental", params.generation, progress=False)
    return examples, generations, score_examples(examples, generations, params, progress=False)


def test_several_sources_get_figures_each(project: TinyProject) -> None:
    """A run over several sources (download.data.sources) reports each source's rates; one source, none."""
    examples, generations, scores = _scripted_run(project)
    assert "by_source" not in report(examples, generations, scores, "incremental").metrics
    examples = [dataclasses.replace(ex, row={**ex.row, "source": "spider" if i < 2 else "bird"})
                for i, ex in enumerate(examples)]
    by_source = report(examples, generations, scores, "incremental").metrics["by_source"]
    assert {k: (v["examples"], v["execution_accuracy"]) for k, v in by_source.items()} == {
        "spider": (2, 1.0), "bird": (2, 0.0)}


def test_scripted_answers_become_metrics_predictions_and_plots(project: TinyProject) -> None:
    examples, generations, scores = _scripted_run(project)
    result = report(examples, generations, scores, "incremental")

    m = result.metrics
    assert [p["status"] for p in result.predictions] == ["correct", "correct", "mismatch", "parse"]
    assert (m["examples"], m["valid_rate"], m["lowered_rate"], m["gold_errors"]) == (4, 0.75, 0.75, 0)
    assert (m["execution_accuracy"], m["exact_match"], m["unfinished"]) == (0.5, 0.25, 1)
    # the species listed by legs ascending: wrong where the gold's order counts (strict, Spider)
    assert (m["execution_accuracy_spider"], m["execution_accuracy_bird"]) == (0.5, 0.75)
    assert m["errors"] == {"parse": 1, "lowering": 0, "execution": 0, "timeout": 0, "mismatch": 1}
    assert list(m["by_difficulty"]) == ["easy", "medium"]
    assert m["by_difficulty"]["easy"]["execution_accuracy"] == 1.0
    assert m["by_difficulty"]["medium"] | {} == {
        "examples": 2, "valid_rate": 0.5, "lowered_rate": 0.5, "execution_accuracy": 0.0,
        "execution_accuracy_spider": 0.0, "execution_accuracy_bird": 0.5, "exact_match": 0.0,
    }
    assert {k: v["examples"] for k, v in m["by_num_ops"].items()} == {"2": 1, "3": 3}
    assert result.plots["execution_accuracy_by_difficulty"] == [
        {"difficulty": "easy", "execution_accuracy": 1.0, "execution_accuracy_spider": 1.0,
         "execution_accuracy_bird": 1.0, "examples": 2},
        {"difficulty": "medium", "execution_accuracy": 0.0, "execution_accuracy_spider": 0.0,
         "execution_accuracy_bird": 0.5, "examples": 2},
    ]
    verdicts = [(p["correct"], p["correct_spider"], p["correct_bird"]) for p in result.predictions]
    assert verdicts == [(True, True, True), (True, True, True), (False, False, True), (False, False, False)]

    capped = result.predictions[1]
    assert capped["prediction"] == "FROM singer\n|> WHERE country = 'France'\n|> SELECT name\n|> SELECT name\n|> SELECT name"
    assert (capped["finished"], capped["steps"], capped["exact_match"]) == (False, 5, False)
    parse = result.predictions[3]
    assert parse["question"] == "How many animals have four legs?"
    assert parse["gold"] == "FROM animal |> WHERE legs = 4 |> AGGREGATE COUNT(*)"
    assert parse["error"].startswith("step 1: not a pipe operator")
    assert "How many singers are there?" in result.show(2) and "legs" not in result.show(2)


# Three sampled answers per question, in the order they are asked: (query, log-likelihood) each.
SAMPLED = {
    "How many singers are there?": [  # two of three agree on the right count
        ("FROM singer |> AGGREGATE COUNT(*)", -3.0), ("FROM singer |> WHERE age > 30 |> AGGREGATE COUNT(*)", -0.5),
        ("FROM singer |> AGGREGATE COUNT(name)", -2.0)],
    "What are the names of singers from France?": [  # no majority: the likeliest answers
        ("FROM singer |> SELECT name", -1.0), ("FROM singer |> WHERE country = 'France' |> SELECT name", -0.2),
        ("FROM nope", -0.1)],
    "List the species by number of legs, most first.": [  # nothing runs
        ("FROM animal |> SELECT nope", -1.0), ("FROM animal |> COUNT legs", -1.0), ("FROM nope", -1.0)],
    "How many animals have four legs?": [  # all agree
        ("FROM animal |> WHERE legs = 4 |> AGGREGATE COUNT(*)", -1.0)] * 3,
}


def sampler() -> Callable[[Sequence[Messages], int], list[str]]:
    """Whole answers by SAMPLED: the k-th time a question is asked, its k-th answer."""
    asked: dict[str, int] = {}

    def generate(prompts: Sequence[Messages], max_new_tokens: int) -> list[str]:
        replies = []
        for messages in prompts:
            question = messages[-1]["content"].split("\n")[0].removeprefix("Question: ")
            k = asked[question] = asked.get(question, -1) + 1
            query, logprob = SAMPLED[question][k]
            replies.append(Reply(f"```sql\n{query}\n```", logprob))
        return replies

    return generate


def test_self_consistency_answers_with_the_majority_result(project: TinyProject) -> None:
    params = EvalParams(generation=GenerationParams(max_steps=5, num_samples=3))
    examples = read_test_examples(project.samples, project.raw, params, progress=False)
    schemas = {ex.row["db_id"]: "" for ex in examples}
    candidates = sample_candidates(examples, schemas, sampler(), "full", params.generation, progress=False)
    assert [len(c) for c in candidates] == [3, 3, 3, 3]
    consistency = vote_examples(examples, candidates, params, progress=False)
    assert [(c.vote.votes, c.vote.groups) for c in consistency] == [(2, 2), (1, 2), (0, 0), (3, 1)]
    assert [c.score.status for c in consistency] == ["correct", "correct", "execution", "correct"]
    generations = generate_queries(examples, schemas, scripted, "incremental", params.generation, progress=False)
    result = report(examples, generations, score_examples(examples, generations, params, progress=False),
                    "incremental", consistency)
    sc = result.metrics["self_consistency"]
    assert (sc["examples"], sc["execution_accuracy"], sc["execution_accuracy_bird"]) == (4, 0.75, 0.75)
    assert result.metrics["execution_accuracy"] == 0.5  # the main figures stay the greedy ones
    first = result.predictions[0]["self_consistency"]
    # the winning group's likeliest member answers
    assert (first["prediction"], first["votes"], first["correct"]) == ("FROM singer |> AGGREGATE COUNT(name)", 2, True)


def test_outputs_are_written_whole(project: TinyProject, tmp_path: Path) -> None:
    params = EvalParams()
    examples = read_test_examples(project.samples, project.raw, params, progress=False)
    generations = generate_queries(examples, {ex.row["db_id"]: "" for ex in examples}, scripted,
                                   "incremental", params.generation, progress=False)
    result = report(examples, generations, score_examples(examples, generations, params, progress=False),
                    "incremental")
    result.write(tmp_path / "eval" / "predictions.jsonl", tmp_path / "plots")
    rows = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["ex-0", "ex-1", "ex-2", "ex-3"]
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "execution_accuracy_by_difficulty.json", "execution_accuracy_by_num_ops.json",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval", "plots"]  # no temporary left


def test_max_examples_draws_from_every_database(project: TinyProject) -> None:
    examples = read_test_examples(project.samples, project.raw, EvalParams(max_examples=2), progress=False)
    assert [ex.row["db_id"] for ex in examples] == ["concert", "zoo"]  # not the file's first two
    again = read_test_examples(project.samples, project.raw, EvalParams(max_examples=2), progress=False)
    assert [ex.row["id"] for ex in again] == [ex.row["id"] for ex in examples]


def _with_golds(project: TinyProject, tmp_path: Path, golds: dict[int, str]) -> Path:
    """A copy of the tiny project's test pairs with some gold SQL replaced (line index -> SQL)."""
    rows = [json.loads(line) for line in (project.samples / "test_pairs.jsonl").read_text().splitlines()]
    for i, sql in golds.items():
        rows[i] |= {"gold_sql": sql}
    (tmp_path / "test_pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


RUNAWAY = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT COUNT(*) FROM r"


def test_bad_gold_is_recorded_and_left_out_of_every_rate(project: TinyProject, tmp_path: Path) -> None:
    samples = _with_golds(project, tmp_path, {0: RUNAWAY, 3: "SELECT name FROM singers"})
    params = EvalParams(generation=GenerationParams(max_steps=5), timeout_s=0.3)
    examples = read_test_examples(samples, project.raw, params, progress=False)
    scored = [ex for ex in examples if ex.gold is not None]
    generations = generate_queries(scored, {ex.row["db_id"]: "" for ex in scored}, scripted, "incremental",
                                   params.generation, progress=False)
    result = report(examples, generations, score_examples(scored, generations, params, progress=False),
                    "incremental")
    m = result.metrics
    assert [p["status"] for p in result.predictions] == ["gold_error", "correct", "mismatch", "gold_error"]
    assert "timed out" in result.predictions[0]["error"] and "no such table" in result.predictions[3]["error"]
    assert result.predictions[0]["prediction"] is None
    assert (m["gold_errors"], m["examples"], m["execution_accuracy"]) == (2, 2, 0.5)
    assert (m["execution_accuracy_spider"], m["execution_accuracy_bird"]) == (0.5, 1.0)  # order, Spider-wise
    assert sum(g["examples"] for g in m["by_difficulty"].values()) == 2
    assert "[ex-0] easy, 2 operators: gold_error" in result.show(1)


def test_test_pairs_that_cannot_be_scored_stop_the_stage_first(project: TinyProject, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"test_pairs.jsonl: not found; run 'dvc repro tokenize' first"):
        read_test_examples(tmp_path, project.raw, EvalParams(), progress=False)
    samples = _with_golds(project, tmp_path, dict.fromkeys(range(4), "SELECT name FROM singers"))
    with pytest.raises(DataError, match=r"test_pairs.jsonl: no gold query runs \(gold fails on .*no such table"):
        read_test_examples(samples, project.raw, EvalParams(), progress=False)
    with pytest.raises(DataError, match=r"test_pairs.jsonl:1: .*concert.sqlite: no such database"):
        read_test_examples(samples, tmp_path, EvalParams(), progress=False)


def test_a_test_suite_directory_must_hold_the_database(project: TinyProject, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"eval.test_suite_path: .*concert holds no .sqlite databases"):
        read_test_examples(project.samples, project.raw, EvalParams(test_suite_path=str(tmp_path)), progress=False)
    for db in ("concert", "zoo"):  # the eval databases themselves: test-suite accuracy is EX then
        (tmp_path / db).mkdir()
        shutil.copy(project.raw / "database" / db / f"{db}.sqlite", tmp_path / db / f"{db}_1.sqlite")
    examples = read_test_examples(project.samples, project.raw, EvalParams(test_suite_path=str(tmp_path)),
                                  progress=False)
    assert [len(ex.gold.spider_results) for ex in examples] == [2, 2, 2, 2]


@pytest.mark.parametrize(("protocol", "mode", "resolved"), [
    ("auto", "incremental", "incremental"), ("auto", "both", "incremental"), ("auto", "full", "full"),
    ("full", "incremental", "full"), ("incremental", "full", "incremental"),
])
def test_protocol_follows_what_tokenize_trained(protocol: str, mode: str, resolved: str) -> None:
    assert resolve_protocol(protocol, mode) == resolved


def test_teacher_forced_figures_are_the_models_own_loss(project: TinyProject, random_lora: Path) -> None:
    model, tokenizer = load_model(project.base, random_lora, "fp32")
    samples = read_test_samples(project.samples, {"ex-0", "ex-2"})
    assert len(samples) == 3 + 4  # operators + END per pair
    figures = teacher_forced(model, samples, batch_size=3, pad_id=tokenizer.pad_token_id, progress=False)
    losses, correct, tokens = [], 0, 0
    with torch.no_grad():
        for s in samples:  # one at a time, no padding, the model's own shifted loss
            ids, labels = torch.tensor([s.input_ids]), torch.tensor([s.labels])
            out = model(input_ids=ids, labels=labels)
            n = int((labels[0, 1:] != -100).sum())
            losses.append(float(out.loss) * n)
            predicted = out.logits[0, :-1].argmax(-1)
            correct += int(((predicted == labels[0, 1:]) & (labels[0, 1:] != -100)).sum())
            tokens += n
    assert figures["tokens"] == tokens and figures["samples"] == 7
    assert figures["loss"] == pytest.approx(sum(losses) / tokens, abs=1e-4)
    assert figures["perplexity"] == pytest.approx(torch.tensor(sum(losses) / tokens).exp().item(), rel=1e-3)
    assert figures["token_accuracy"] == pytest.approx(correct / tokens, abs=1e-4)
    assert list(figures["by_kind"]) == ["incremental"]


@pytest.mark.slow
def test_the_eval_stage_end_to_end(project: TinyProject, trained_lora: Path, tmp_path: Path) -> None:
    """`python -m stages.eval` on the trained tiny model: figures that agree with its rows, files in place."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["tokenize"] = project.tokenize_params.model_dump(mode="json", by_alias=True)
    params["eval"]["print_examples"] = 2
    params["eval"]["generation"]["num_samples"] = 2  # the self-consistency pass too, on the real generator
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}  # see tinyrun.one_thread
    proc = subprocess.run(
        [sys.executable, "-m", "stages.eval", str(project.base), str(trained_lora), str(project.samples),
         str(project.raw), "--predictions", "data/eval/predictions.jsonl", "--plots", "metrics/eval_plots"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics" / "eval.json").read_text())
    # The tiny model memorises its samples, but how well depends on the CPU's float kernels (all 4
    # right on one machine, 2 on another), so the figures are checked against the rows, not fixed.
    rows = [json.loads(line) for line in (tmp_path / "data" / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["prediction"].startswith("FROM ") for r in rows)
    assert metrics["execution_accuracy"] == round(sum(r["correct"] for r in rows) / 4, 4)
    assert metrics["execution_accuracy_spider"] == round(sum(r["correct_spider"] for r in rows) / 4, 4)
    assert 0.0 <= metrics["token_accuracy"] <= 1.0 and 0.0 < metrics["loss"] < 10.0
    assert metrics["generation"]["cached_prefixes"] == 2
    plots = json.loads((tmp_path / "metrics" / "eval_plots" / "execution_accuracy_by_num_ops.json").read_text())
    assert [(p["num_ops"], p["examples"]) for p in plots] == [("2", 1), ("3", 3)]
    assert metrics["gold_errors"] == 0
    sc = metrics["self_consistency"]
    assert (sc["num_samples"], sc["examples"]) == (2, 4) and sc["seconds"] >= sc["sampling_seconds"] > 0
    assert all(r["self_consistency"]["logprob"] < 0 for r in rows)  # sampled replies carry their likelihood
    assert "[ex-1] easy, 3 operators: " in proc.stdout
    assert f"execution accuracy {100 * metrics['execution_accuracy']:.2f}% (Spider rule" in proc.stdout
    assert "self-consistency, 2 samples: execution accuracy" in proc.stdout


def test_the_eval_stage_names_a_missing_adapter(project: TinyProject, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    proc = subprocess.run(
        [sys.executable, "-m", "stages.eval", str(project.base), str(tmp_path / "nope"), str(project.samples),
         str(project.raw), "--predictions", "p.jsonl", "--plots", "plots"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith(f"{tmp_path / 'nope'}: no such model directory; run 'dvc repro' first")
    assert not (tmp_path / "metrics").exists()


def test_the_eval_stage_refuses_params_that_contradict_the_prompt_contract(
    project: TinyProject, random_lora: Path, tmp_path: Path
) -> None:
    """The model was trained on the compact schema: a params.yaml saying ddl names both values."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["tokenize"] = project.tokenize_params.model_dump(mode="json", by_alias=True)
    params["tokenize"]["schema"]["format"] = "ddl"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "stages.eval", str(project.base), str(random_lora), str(project.samples),
         str(project.raw), "--predictions", "p.jsonl", "--plots", "plots"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 1
    assert "params.yaml: tokenize.schema.format: 'ddl', but the model was trained with 'compact'" in proc.stderr
    assert not (tmp_path / "metrics").exists() and not (tmp_path / "p.jsonl").exists()
