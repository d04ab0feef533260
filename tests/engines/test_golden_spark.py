"""golden_pairs with `engines: [sqlite, spark]`: a pair is kept only when Spark runs its pipe SQL
and returns the gold's rows; Spark's rejections are counted per category, named by error class."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

import pipesql.engines
import pipesql.golden as golden
from pipesql.engines.spark import SparkEngine
from pipesql.golden import ENGINE_CATEGORIES, build_golden_pairs
from pipesql.params.golden_pairs import GoldenPairsParams
from pipesql.sources.raw import Example, database_path

PARAMS = GoldenPairsParams(workers=1, timeout_s=30, engines=("sqlite", "spark"))

# gold SQL -> the pipe SQL the decompiler is made to write, and the verdict on Spark
CASES = {
    "SELECT name FROM item WHERE price > 3": (None, None),
    "SELECT DISTINCT kind FROM item": ("FROM item |> SELECT kind |> DISTINCT", "exec_error"),
    "SELECT kind, name FROM item GROUP BY kind": ("FROM item |> AGGREGATE name GROUP BY kind", "gold_error"),
    # SQLite divides integers to an integer (1), Spark to a double (1.5): the gold too, so the
    # pair is faithful on both and kept, counted as differing from SQLite
    "SELECT id / 2 FROM item WHERE id = 3": ("FROM item |> WHERE id = 3 |> SELECT id / 2", None),
    # 2 on SQLite, as the gold; 3 on Spark, where the gold gives 2.5: neither gold's rows there
    "SELECT id / 2 FROM item WHERE id = 5": (
        "FROM item |> WHERE id = 5 |> SELECT (id / 2) * 2 - id + 3", "mismatch"),
}


@pytest.fixture
def raw_dir(tmp_path: Path) -> Path:
    db = database_path(tmp_path, "shop")
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT, price REAL, kind TEXT)")
        con.executemany("INSERT INTO item VALUES (?, ?, ?, ?)",
                        [(i, f"item {i}", 1.5 * i, "ab"[i % 2]) for i in range(1, 9)])
    return tmp_path


class _Shared:
    """The session's engine, left running when golden_pairs closes it."""

    def __init__(self, engine: SparkEngine) -> None:
        self._engine, self.name = engine, engine.name

    def __enter__(self) -> _Shared:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self._engine.run(*args, **kwargs)


def test_spark_verdicts_metrics_and_rejected_rows(
    raw_dir: Path, spark: SparkEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = golden.decompile
    monkeypatch.setattr(golden, "decompile", lambda sql, **o: CASES[sql][0] or real(sql, **o))
    monkeypatch.setattr(pipesql.engines, "open_engine", lambda name: _Shared(spark))
    examples = [Example(f"e{i}", "shop", "q?", sql) for i, sql in enumerate(CASES)]
    result = build_golden_pairs(examples, raw_dir, PARAMS)

    verdicts = {o.example.gold_sql: o.category for o in result.outcomes}
    assert verdicts == {sql: category for sql, (_, category) in CASES.items()}
    spark_rejected = [o for o in result.outcomes if not o.is_kept]
    assert {o.engine for o in spark_rejected} == {"spark"}
    assert {o.error_class for o in spark_rejected if o.category != "mismatch"} == {
        "PARSE_SYNTAX_ERROR", "PIPE_OPERATOR_AGGREGATE_EXPRESSION_CONTAINS_NO_AGGREGATE_FUNCTION"}

    differs = {o.example.gold_sql: o.differs_from_sqlite for o in result.kept}
    assert differs == {"SELECT name FROM item WHERE price > 3": (),
                       "SELECT id / 2 FROM item WHERE id = 3": ("spark",)}

    metrics = result.metrics
    assert metrics["kept"] == 2 and metrics["coverage"] == 0.4
    assert metrics["rejected"]["mismatch"] == 0  # SQLite's own verdicts: it proved all five
    assert metrics["engines"]["sqlite"] == {"kept": 5}
    spark_metrics = metrics["engines"]["spark"]
    assert spark_metrics["checked"] == 5 and spark_metrics["kept"] == 2
    assert spark_metrics["differs_from_sqlite"] == 1
    assert spark_metrics["rejected"] == {c: int(c != "timeout") for c in ENGINE_CATEGORIES}
    assert spark_metrics["pass_rate_of_portable_golds"] == 0.5

    result.write(tmp_path / "golden")
    rejected = (tmp_path / "golden" / golden.REJECTED_FILE).read_text().splitlines()
    assert any('"engine": "spark"' in r and '"error_class": "PARSE_SYNTAX_ERROR"' in r for r in rejected)
    pairs = (tmp_path / "golden" / golden.PAIRS_FILE).read_text().splitlines()
    assert ['"differs_from_sqlite": ["spark"]' in p for p in pairs] == [False, True]


def test_an_engine_that_cannot_start_stops_the_stage_before_anything_is_written(
    raw_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_engine(name: str) -> None:
        raise pipesql.engines.spark.EngineError("Spark needs a Java runtime")

    monkeypatch.setattr(pipesql.engines, "open_engine", no_engine)
    with pytest.raises(pipesql.engines.spark.EngineError, match="Java"):
        build_golden_pairs([Example("e", "shop", "q?", "SELECT id FROM item")], raw_dir, PARAMS)
