"""Spark 4 runs the decompiler's pipe SQL: every fixture case (each operator it emits and each
portable rewrite) returns the standard query's SQLite rows; rejections, timeouts and a Spark
that cannot start are named errors."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from sql.test_decompile import EXECUTED, Case, write_fixture_db

from pipesql.engines import spark as spark_module
from pipesql.engines.spark import EngineError, SparkEngine, SparkQueryError
from pipesql.sql.compare import is_ordered, results_match
from pipesql.sql.execute import ExecutionError, execute_safely
from pipesql.sql.pipe import _OPERATOR_NAMES, operator_name, split_operators

SPARK_CASES = [c for c in EXECUTED if "no-spark" not in c.notes]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fixture_db(tmp_path_factory.mktemp("spark") / "fixture.sqlite")


@pytest.mark.parametrize("case", SPARK_CASES, ids=[c.title for c in SPARK_CASES])
def test_fixture_pipe_sql_returns_the_standard_rows_on_spark(
    case: Case, db: Path, spark: SparkEngine
) -> None:
    standard, pipe_sql = case.statements
    gold = execute_safely(db, standard)
    pred = spark.run(db, pipe_sql, timeout_s=60)
    assert results_match(gold, pred, ordered=is_ordered(standard)), (gold.rows, pred.rows)


def test_the_fixture_cases_cover_every_operator_but_distinct() -> None:
    used = {operator_name(op) for c in SPARK_CASES for op in split_operators(c.statements[1])}
    assert used == (_OPERATOR_NAMES - {"DISTINCT"}) | {"FROM", "JOIN"}


def test_a_rejected_query_carries_sparks_error_class(db: Path, spark: SparkEngine) -> None:
    with pytest.raises(SparkQueryError) as raised:
        spark.run(db, "FROM emp |> SELECT name |> DISTINCT")
    assert raised.value.error_class == "PARSE_SYNTAX_ERROR"
    assert raised.value.category == "exec_error"
    assert str(raised.value).startswith("[PARSE_SYNTAX_ERROR]")
    with pytest.raises(SparkQueryError) as raised:
        spark.run(db, "FROM emp |> AGGREGATE COUNT(*) GROUP BY dept_id |> SELECT name")
    assert raised.value.error_class.startswith("UNRESOLVED_COLUMN")


def test_a_runaway_query_times_out_and_the_session_still_works(tmp_path: Path, spark: SparkEngine) -> None:
    big = tmp_path / "big.sqlite"
    conn = sqlite3.connect(big)
    conn.execute("CREATE TABLE t (a INT)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(3000)])
    conn.commit()
    conn.close()
    start = time.monotonic()
    with pytest.raises(ExecutionError) as raised:
        spark.run(big, "FROM t AS x |> CROSS JOIN t AS y |> CROSS JOIN t AS z "
                       "|> WHERE x.a < y.a AND y.a < z.a |> AGGREGATE COUNT(*)", timeout_s=2)
    assert raised.value.category == "timeout"
    assert time.monotonic() - start < 30
    assert spark.run(big, "FROM t |> AGGREGATE COUNT(*)", timeout_s=60).rows == ((3000,),)


def test_max_rows_truncates(db: Path, spark: SparkEngine) -> None:
    result = spark.run(db, "FROM emp |> SELECT id", max_rows=3)
    assert result.truncated and len(result.rows) == 3


def test_databases_switch_views(tmp_path: Path, db: Path, spark: SparkEngine) -> None:
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.executescript("CREATE TABLE \"odd name\" (v INT, w); INSERT INTO \"odd name\" VALUES (1, 'x'), (2, 3);")
    conn.commit()
    conn.close()
    assert spark.run(other, "FROM `odd name` |> SELECT v, w |> ORDER BY v").rows == ((1, "x"), (2, "3"))
    with pytest.raises(SparkQueryError):
        spark.run(other, "FROM emp")  # the previous database's views are gone
    assert spark.run(db, "FROM emp |> AGGREGATE COUNT(*)").rows == ((8,),)


def test_missing_java_is_one_error_naming_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pyspark", reason=spark_module.INSTALL_PYSPARK)
    monkeypatch.setattr(spark_module, "java_available", lambda: False)
    with pytest.raises(EngineError, match="openjdk-17"):
        SparkEngine()


def test_a_spark_that_never_starts_is_an_error_not_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    pyspark_sql = pytest.importorskip("pyspark.sql", reason=spark_module.INSTALL_PYSPARK)
    monkeypatch.setattr(spark_module, "java_available", lambda: True)
    monkeypatch.setattr(pyspark_sql.SparkSession.Builder, "getOrCreate", lambda self: time.sleep(30))
    start = time.monotonic()
    with pytest.raises(EngineError, match="did not start within 0.5 s"):
        SparkEngine(start_timeout_s=0.5)
    assert time.monotonic() - start < 5
