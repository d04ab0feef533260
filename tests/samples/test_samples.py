"""The tokenize stage end to end on the hand-built project: splits, samples, labels, determinism."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from datasets import DatasetDict, load_from_disk
from transformers import AutoTokenizer

from pipesql.io import DataError
from pipesql.prompts import END_MARKER, format_result, run_tool, schema_text
from pipesql.samples import TEST_PAIRS_FILE, build_samples
from pipesql.samples.conversations import tool_sample
from pipesql.samples.encode import IGNORE
from pipesql.samples.splits import SPLITS
from pipesql.sources.raw import database_path
from pipesql.sql.execute import execute_safely
from pipesql.sql.lower import lower_to_sqlite
from pipesql.sql.pipe import split_operators

REPO = Path(__file__).resolve().parents[2]
Build = Callable[..., dict[str, Any]]

# Operators as the model must emit them: `|>` inside a literal, inside a nested pipe subquery and
# inside a set operator's operand never splits an operator.
EXPECTED_OPS = {
    "ex-001": ["FROM singer", "WHERE name = 'Ben |> Kim'", "SELECT singer_id"],
    "ex-004": ["FROM product", "WHERE product_id NOT IN (FROM orders |> SELECT product_id)",
               "SELECT label"],
    "ex-007": ["FROM student", "WHERE grade = 9", "SELECT name",
               "UNION DISTINCT (FROM student |> JOIN enrolled USING (student_id)"
               " |> WHERE course_id = 2 |> SELECT name)"],
}


@pytest.fixture(scope="module")
def default_build(
    build: Build, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("samples") / "samples"
    return build(out, tool_ratio=0.5), out


def labelled_text(tokenizer: Any, labels: list[int]) -> str:
    return tokenizer.decode([label for label in labels if label != IGNORE])


def test_columns_and_types(default_build: tuple[dict[str, Any], Path]) -> None:
    _, out = default_build
    data = load_from_disk(str(out))
    assert isinstance(data, DatasetDict) and list(data) == list(SPLITS)
    row = data["train"][0]
    assert set(row) == {"input_ids", "labels", "example_id", "db_id", "kind", "step", "num_ops",
                        "difficulty"}
    assert len(row["input_ids"]) == len(row["labels"])
    assert {type(v) for v in row["input_ids"]} == {int}
    assert row["kind"] == "incremental" and row["step"] == 0
    assert row["difficulty"] in ("easy", "hard")


def test_incremental_answers_are_the_operators_then_the_end(
    default_build: tuple[dict[str, Any], Path], model_dir: Path
) -> None:
    _, out = default_build
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    answers: dict[str, dict[int, str]] = defaultdict(dict)
    for split in SPLITS:
        for row in load_from_disk(str(out))[split]:
            if row["kind"] == "incremental":
                answers[row["example_id"]][row["step"]] = labelled_text(tokenizer, row["labels"])
    for example_id, ops in EXPECTED_OPS.items():
        steps = answers[example_id]
        assert sorted(steps) == list(range(len(ops) + 1)), "N operators give N+1 samples"
        assert [steps[k] for k in range(len(ops) + 1)] == [
            f"{text}<|im_end|>" for text in [*ops, END_MARKER]
        ]


def test_tool_sample_results_equal_running_the_query(
    project: tuple[Path, Path], make_params: Callable[..., Any]
) -> None:
    golden, raw = project
    params = make_params(tool_ratio=1.0)
    rows = [json.loads(line) for line in (golden / "pairs.jsonl").read_text().splitlines()]
    for row in rows:
        db = database_path(raw, row["db_id"])
        sample = tool_sample(row, split_operators(row["pipe_sql"]), db, params)
        assert sample is not None, row["id"]
        calls = [c["function"] for m in sample.messages if m["role"] == "assistant"
                 for c in m.get("tool_calls", [])]
        results = [m["content"] for m in sample.messages if m["role"] == "tool"]
        assert [c["name"] for c in calls][:1] == ["list_tables"]
        assert [c["name"] for c in calls][-1] == "execute_pipe_sql"
        for call, result in zip(calls, results, strict=True):
            assert result == run_tool(db, call["name"], call["arguments"], params)
        query = calls[-1]["arguments"]["query"]
        ran = execute_safely(db, lower_to_sqlite(row["pipe_sql"]), max_rows=1000)
        assert results[-1] == format_result(ran, params.tool_max_rows), row["id"]
        assert lower_to_sqlite(query) == lower_to_sqlite(row["pipe_sql"])
        assert sample.messages[-1]["content"].endswith(f"```sql\n{query}\n```")


def test_tool_samples_are_encoded_with_the_tools(
    default_build: tuple[dict[str, Any], Path], model_dir: Path
) -> None:
    metrics, out = default_build
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tools = [row for s in SPLITS for row in load_from_disk(str(out))[s] if row["kind"] == "tool"]
    assert len(tools) == sum(metrics["samples"][s]["tool"] for s in SPLITS) > 0
    text = tokenizer.decode(tools[0]["input_ids"])
    assert "# Tools" in text and "<tool_call>" in text and "<tool_response>" in text
    assert {row["step"] for row in tools} == {-1}


@pytest.mark.parametrize("by", ["database", "question", "source"])
def test_no_leakage_between_splits(
    build: Build, tmp_path: Path, by: str, project: tuple[Path, Path]
) -> None:
    metrics = build(tmp_path / "samples", split={"by": by})
    data = load_from_disk(str(tmp_path / "samples"))
    ids = {s: set(data[s]["example_id"]) for s in SPLITS}
    dbs = {s: set(data[s]["db_id"]) for s in SPLITS}
    for a, b in [("train", "dev"), ("train", "test"), ("dev", "test")]:
        assert not ids[a] & ids[b]
        if by == "database":
            assert not dbs[a] & dbs[b]
    if by == "question":  # one question on two databases ("How many rows are there?")
        assert len({s for s in SPLITS if {"ex-006", "ex-009"} & ids[s]}) == 1
    if by == "source":  # no official test split: official dev is the test split
        golden, _ = project
        rows = map(json.loads, (golden / "pairs.jsonl").read_text().splitlines())
        official = {r["id"]: r["split"] for r in rows}
        assert ids["test"] == {i for i, s in official.items() if s == "dev"}
        assert ids["train"] | ids["dev"] == {i for i, s in official.items() if s == "train"}
        assert not dbs["train"] & dbs["dev"], "dev is carved from train by database"
    assert sum(metrics["pairs"].values()) == 13


def test_same_inputs_same_fingerprint_and_bytes(build: Build, tmp_path: Path) -> None:
    first = build(tmp_path / "a" / "samples", tool_ratio=0.5)
    second = build(tmp_path / "b" / "samples", tool_ratio=0.5, num_proc=2)
    assert first == second
    assert _digests(tmp_path / "a" / "samples") == _digests(tmp_path / "b" / "samples")
    states = [tmp_path / "a" / "samples" / s / "state.json" for s in SPLITS]
    stored = {s: json.loads(state.read_text())["_fingerprint"] for s, state in zip(SPLITS, states)}
    assert stored == first["fingerprints"]
    loaded = [load_from_disk(str(tmp_path / run / "samples")) for run in ("a", "b")]
    assert [{s: data[s]._fingerprint for s in SPLITS} for data in loaded] == [
        {s: loaded[0][s]._fingerprint for s in SPLITS}
    ] * 2
    third = build(tmp_path / "c" / "samples", tool_ratio=0.5, split={"seed": 1})
    assert third["fingerprints"] != first["fingerprints"]


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_dropped_for_length_counts(build: Build, tmp_path: Path) -> None:
    build(tmp_path / "all", mode="both", tool_ratio=0.5)
    data = load_from_disk(str(tmp_path / "all"))
    lengths = {s: [(len(r["input_ids"]), r["kind"]) for r in data[s]] for s in SPLITS}
    cut = max(min(n for n, _ in lengths[s]) for s in SPLITS)  # each split keeps a sample
    metrics = build(tmp_path / "cut", mode="both", tool_ratio=0.5, max_length=cut)
    for s in SPLITS:
        for kind in ("incremental", "full", "tool"):
            longer = sum(1 for n, k in lengths[s] if n > cut and k == kind)
            kept = sum(1 for n, k in lengths[s] if n <= cut and k == kind)
            assert metrics["dropped_for_length"][s][kind] == longer
            assert metrics["samples"][s][kind] == kept
    assert metrics["tokens"]["max"] <= cut
    assert metrics["dropped_for_length"]["total"] > 0
    kept = load_from_disk(str(tmp_path / "cut"))
    assert all(len(r["input_ids"]) <= cut for s in SPLITS for r in kept[s])
    shortest = min(min(n for n, _ in lengths[s]) for s in SPLITS)
    message = r"no (train|dev|test) sample is left: \d+ longer than tokenize.max_length"
    with pytest.raises(DataError, match=message):
        build(tmp_path / "none", mode="both", tool_ratio=0.5, max_length=shortest)


def test_modes_and_reasoning(build: Build, tmp_path: Path, model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    full = build(tmp_path / "full", mode="full", reasoning=True, tool_ratio=0.0)
    both = build(tmp_path / "both", mode="both", tool_ratio=0.0)
    assert {k: v for k, v in full["samples"]["train"].items() if v} == {"full": 9, "total": 9}
    assert full["samples_by_operator_position"] == {"end": 0}
    assert both["samples"]["train"]["full"] == 9
    assert both["samples"]["train"]["incremental"] == 9 + 27, "9 pairs of 27 operators in train"
    row = load_from_disk(str(tmp_path / "full"))["train"][0]
    answer = labelled_text(tokenizer, row["labels"])
    assert answer.startswith("Think about") and "```sql\nFROM singer\n|> AGGREGATE" in answer
    assert row["step"] == -1
    plain = load_from_disk(str(tmp_path / "both"))["train"][0]
    assert "Think about" not in tokenizer.decode(plain["input_ids"]), "reasoning is off by default"


def test_metrics_add_up(default_build: tuple[dict[str, Any], Path]) -> None:
    metrics, out = default_build
    data = load_from_disk(str(out))
    lengths = [len(r) for s in SPLITS for r in data[s]["input_ids"]]
    assert metrics["tokens"]["total"] == sum(lengths) and metrics["tokens"]["max"] == max(lengths)
    incremental = sum(metrics["samples"][s]["incremental"] for s in SPLITS)
    assert sum(metrics["samples_by_operator_position"].values()) == incremental
    positions = metrics["samples_by_operator_position"]
    assert positions["end"] == positions["0"] == 13
    assert metrics["databases"] == {"train": 3, "dev": 1, "test": 1}
    assert metrics["dropped_for_length"]["total"] == 0 and metrics["tool_sessions_failed"] == 0


def test_test_pairs_are_the_test_split_rows(
    default_build: tuple[dict[str, Any], Path], project: tuple[Path, Path]
) -> None:
    _, out = default_build
    golden, _ = project
    rows = {r["id"]: r for r in map(json.loads, (golden / "pairs.jsonl").read_text().splitlines())}
    test_rows = [json.loads(line) for line in (out / TEST_PAIRS_FILE).read_text().splitlines()]
    test_ids = set(load_from_disk(str(out))["test"]["example_id"])
    assert {r["id"] for r in test_rows} == test_ids
    assert all(r == rows[r["id"]] for r in test_rows)


def test_the_schema_in_prompts_is_schema_text(
    default_build: tuple[dict[str, Any], Path], model_dir: Path, project: tuple[Path, Path],
    make_params: Callable[..., Any],
) -> None:
    _, out = default_build
    _, raw = project
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    row = load_from_disk(str(out))["train"][0]
    schema = schema_text(database_path(raw, row["db_id"]), make_params(), tokenizer)
    assert f"Database schema:\n{schema}<|im_end|>" in tokenizer.decode(row["input_ids"])


def test_bad_inputs_name_file_and_line(
    project: tuple[Path, Path], model_dir: Path, tmp_path: Path, make_params: Callable[..., Any]
) -> None:
    golden, raw = project
    bad = tmp_path / "golden"
    bad.mkdir()
    lines = (golden / "pairs.jsonl").read_text().splitlines()
    row = json.loads(lines[2])
    lines[2] = json.dumps({**row, "pipe_sql": "FROM singer |> WHERE name = 'unterminated"})
    (bad / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"golden/pairs.jsonl:3: pipe_sql does not split"):
        build_samples(bad, raw, model_dir, make_params(num_proc=2), tmp_path / "out")
    assert not (tmp_path / "out").exists(), "nothing is written when the stage fails"
    with pytest.raises(DataError, match=r"cannot load the tokenizer .* run 'dvc repro download'"):
        build_samples(golden, raw, tmp_path / "no-model", make_params(), tmp_path / "out")


def test_stage_script(project: tuple[Path, Path], model_dir: Path, tmp_path: Path) -> None:
    """The stage runs as DVC runs it (`python -m stages.tokenize`) and reports bad params."""
    golden, raw = project
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["tokenize"]["split"] |= {"by": "database", "ratios": {"train": 0.6, "dev": 0.2, "test": 0.2}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    cmd = [sys.executable, "-m", "stages.tokenize", str(golden), str(raw), str(model_dir), "data/samples"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")])}
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "metrics" / "tokenize.json").read_text())
    assert metrics["pairs"] == {"train": 9, "dev": 2, "test": 2}
    assert (tmp_path / "data" / "samples" / TEST_PAIRS_FILE).is_file()
    params["tokenize"]["max_length"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert done.returncode == 1
    assert "error: params.yaml: tokenize.max_length: must be > 0, got 0" in done.stderr
