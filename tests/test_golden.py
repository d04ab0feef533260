"""The golden-pair pipeline: every outcome category, input order kept, metrics."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest

import pipesql.golden as golden
from pipesql.golden import CATEGORIES, build_golden_pairs, validate_example
from pipesql.params.golden_pairs import GoldenPairsParams
from pipesql.sources.raw import Example, database_path

PARAMS = GoldenPairsParams(workers=1, timeout_s=0.5)


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("raw")
    db = database_path(raw, "shop")
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT, price REAL, kind TEXT)")
        con.executemany(
            "INSERT INTO item VALUES (?, ?, ?, ?)",
            [(i, f"item {i}", 1.5 * i, "ab"[i % 2]) for i in range(1, 41)] + [(41, "it's", None, None)],
        )
    return raw


def _ex(sql: str, db_id: str = "shop", id: str = "e") -> Example:
    return Example(id, db_id, "question?", sql)


def test_kept_pair_has_pipe_sql_and_ops(raw_dir: Path) -> None:
    sql = "SELECT kind, count(*) FROM item WHERE price > 10 GROUP BY kind ORDER BY kind"
    outcome = validate_example(_ex(sql), raw_dir, PARAMS)
    assert outcome.is_kept, outcome.error
    assert outcome.pipe_sql.startswith("FROM item |> WHERE")
    assert outcome.ops[0] == "FROM" and "AGGREGATE" in outcome.ops and outcome.ops[-1] == "ORDER BY"
    row = outcome.to_json()
    assert row["ops"] == list(outcome.ops) and row["gold_sql"] == sql and "category" not in row


@pytest.mark.parametrize(
    ("sql", "db_id", "category"),
    [
        ("SELECT nope FROM item", "shop", "gold_error"),
        ("SELECT 1", "no_such_db", "gold_error"),
        (  # a gold query that never ends is stopped at golden_pairs.timeout_s
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c",
            "shop",
            "timeout",
        ),
    ],
    ids=["gold-fails", "missing-database", "gold-timeout"],
)
def test_real_rejections(raw_dir: Path, sql: str, db_id: str, category: str) -> None:
    outcome = validate_example(_ex(sql, db_id), raw_dir, PARAMS)
    assert outcome.category == category
    assert outcome.error


@pytest.mark.parametrize(
    ("stage", "replacement", "category"),
    [
        ("decompile", "raise-parse", "parse_error"),
        ("decompile", "raise-unsupported", "unsupported"),
        ("decompile", "raise-internal", "unsupported"),
        ("decompile", "FROM item |> WHERE (", "lowering_error"),
        ("decompile", "FROM item |> SELECT nope", "exec_error"),
        ("decompile", "FROM item |> WHERE id < 3 |> SELECT id", "mismatch"),
    ],
)
def test_each_failure_after_gold_is_categorised(
    raw_dir: Path, monkeypatch: pytest.MonkeyPatch, stage: str, replacement: str, category: str
) -> None:
    # The decompiler is replaced to force each later failure; the pipeline's verdict is the test.
    def fake(sql: str, **options: object) -> str:
        if replacement == "raise-parse":
            raise golden.DecompileError("cannot parse", category="parse_error")
        if replacement == "raise-unsupported":
            raise golden.DecompileError("no pipe form", category="unsupported")
        if replacement == "raise-internal":
            raise RecursionError("deep")
        return replacement

    monkeypatch.setattr(golden, stage, fake)
    outcome = validate_example(_ex("SELECT id FROM item"), raw_dir, PARAMS)
    assert outcome.category == category, outcome.error
    assert set(golden.CATEGORIES) >= {outcome.category}


def test_order_is_compared_only_under_outer_order_by(raw_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(golden, "decompile", lambda sql, **options: "FROM item |> SELECT id |> ORDER BY id DESC")
    assert validate_example(_ex("SELECT id FROM item"), raw_dir, PARAMS).is_kept
    ordered = validate_example(_ex("SELECT id FROM item ORDER BY id"), raw_dir, PARAMS)
    assert ordered.category == "mismatch"


def test_output_order_and_files_do_not_depend_on_workers(raw_dir: Path, tmp_path: Path) -> None:
    sqls = [
        "SELECT name FROM item WHERE price BETWEEN 3 AND 9",
        "SELECT nope FROM item",
        "SELECT kind, avg(price) FROM item GROUP BY kind HAVING count(*) > 3",
        "SELECT name FROM item ORDER BY price DESC LIMIT 5",
        "SELECT DISTINCT kind FROM item",
    ] * 4
    examples = [_ex(sql, id=f"e{i:02d}") for i, sql in enumerate(sqls)]
    outputs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        result = build_golden_pairs(examples, raw_dir, GoldenPairsParams(workers=workers, timeout_s=2.0))
        result.write(out)
        outputs.append(((out / "pairs.jsonl").read_bytes(), (out / "rejected.jsonl").read_bytes()))
        assert [o.example.id for o in result.outcomes] == [e.id for e in examples]
    assert outputs[0] == outputs[1]
    rejected = [json.loads(line) for line in outputs[0][1].decode().splitlines()]
    assert {r["category"] for r in rejected} == {"gold_error"}


def test_metrics(raw_dir: Path) -> None:
    examples = [
        _ex("SELECT name FROM item WHERE kind = 'a'", id="a"),
        _ex("SELECT count(*) FROM item", id="b"),
        _ex("SELECT nope FROM item", id="c"),
    ]
    metrics = build_golden_pairs(examples, raw_dir, PARAMS).metrics
    assert metrics["total"] == 3 and metrics["kept"] == 2
    assert metrics["coverage"] == 1.0  # gold errors are the data's fault, not ours
    assert metrics["rejected"] == {c: int(c == "gold_error") for c in CATEGORIES}
    assert metrics["operators"]["FROM"] == 2
    assert sum(metrics["pairs_by_num_operators"].values()) == 2


def test_golden_does_not_import_torch() -> None:
    import subprocess

    code = "import sys, pipesql.sql, pipesql.golden; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
