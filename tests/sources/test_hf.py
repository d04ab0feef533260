"""read_hf on a local dataset directory: the same `datasets.load_dataset` call a hub id takes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from pipesql.io import DataError
from pipesql.params.download import HfDataParams
from pipesql.sources.hf import read_hf

# SynSQL-2.5M's field names: the chain of thought is `cot`, the difficulty `sql_complexity`
SYNSQL_COLUMNS = {
    "question": "question",
    "gold_sql": "sql",
    "db_id": "db_id",
    "reasoning": "cot",
    "difficulty": "sql_complexity",
    "evidence": "external_knowledge",
}
ROWS = [
    {"db_id": "zoo", "question": "How many animals?", "sql": "SELECT count(*) FROM animal",
     "cot": "Count the rows of animal.", "sql_complexity": "Simple", "external_knowledge": ""},
    {"db_id": "zoo", "question": "Oldest animal?",
     "sql": "SELECT name FROM animal ORDER BY age DESC LIMIT 1", "cot": "Sort by age, take one.",
     "sql_complexity": "Moderate", "external_knowledge": "age in years"},
    {"db_id": "farm", "question": "Farm names?", "sql": "SELECT name FROM farm",
     "cot": "Project name.", "sql_complexity": "Simple", "external_knowledge": None},
]


@pytest.fixture
def hub(tmp_path: Path) -> Path:
    """A dataset directory (`train.jsonl`) and a databases directory beside it."""
    data = tmp_path / "SynSQL-mini"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    for db_id in ("zoo", "farm"):
        (tmp_path / "databases" / db_id).mkdir(parents=True)
        sqlite3.connect(tmp_path / "databases" / db_id / f"{db_id}.sqlite").close()
    return tmp_path


def params(hub: Path, **overrides) -> HfDataParams:
    fields = {"name": str(hub / "SynSQL-mini"), "databases_path": str(hub / "databases"),
              "columns": SYNSQL_COLUMNS, **overrides}
    return HfDataParams(**fields)


def test_maps_columns_keeping_reasoning(hub: Path) -> None:
    examples, databases = read_hf(params(hub), cache_dir=hub / "cache")

    assert [e.id for e in examples] == ["synsql-mini-train-0000000", "synsql-mini-train-0000001",
                                         "synsql-mini-train-0000002"]
    first = examples[1]
    assert (first.question, first.gold_sql, first.db_id) == (
        "Oldest animal?", "SELECT name FROM animal ORDER BY age DESC LIMIT 1", "zoo")
    assert (first.reasoning, first.difficulty, first.evidence, first.split) == (
        "Sort by age, take one.", "Moderate", "age in years", "train")
    assert examples[2].evidence is None
    assert databases == {db: hub / "databases" / db / f"{db}.sqlite" for db in ("zoo", "farm")}


def test_max_examples_caps_and_id_and_split_columns(hub: Path) -> None:
    rows = [{**r, "qid": f"q{i}", "part": "validation"} for i, r in enumerate(ROWS)]
    (hub / "SynSQL-mini/train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    columns = {**SYNSQL_COLUMNS, "id": "qid", "split": "part"}
    capped = params(hub, columns=columns, max_examples=2)
    examples, databases = read_hf(capped, cache_dir=hub / "cache")

    assert [(e.id, e.split) for e in examples] == [("q0", "dev"), ("q1", "dev")]
    assert list(databases) == ["zoo"]


def test_missing_column_names_param_key_and_dataset_columns(hub: Path) -> None:
    columns = {**SYNSQL_COLUMNS, "reasoning": "chain_of_thought"}
    with pytest.raises(DataError) as e:
        read_hf(params(hub, columns=columns), cache_dir=hub / "cache")
    message = str(e.value)
    assert "download.data.hf.columns.reasoning: column 'chain_of_thought' not in" in message
    assert "its columns: db_id, question, sql, cot, sql_complexity, external_knowledge" in message


def test_unknown_field_is_named_before_loading(hub: Path) -> None:
    with pytest.raises(DataError, match=r"hf\.columns\.qestion: not an Example field"):
        read_hf(params(hub, columns={**SYNSQL_COLUMNS, "qestion": "question"}))


def test_missing_database_names_row(hub: Path) -> None:
    (hub / "databases/farm/farm.sqlite").unlink()
    with pytest.raises(DataError, match=r"\[train\] row 2: database 'farm' not found"):
        read_hf(params(hub), cache_dir=hub / "cache")
