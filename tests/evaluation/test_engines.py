"""eval.engines: execution accuracy of predicted pipe SQL run on Spark itself."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

import pipesql.engines
from pipesql.evaluation.engines import Prediction, engine_accuracy
from pipesql.params.eval import EvalParams
from pipesql.sql.execute import ExecutionError, QueryResult


class FakeEngine:
    """Answers from a table, so the scoring is tested without a JVM (tests/engines runs Spark)."""

    name = "fake"

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers, self.closed = answers, False

    def __enter__(self) -> FakeEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed = True

    def run(self, db_path: Path, sql: str, **limits: Any) -> QueryResult:
        answer = self.answers[sql]
        if isinstance(answer, Exception):
            raise answer
        return QueryResult(("c",), answer, False)


class Rejected(ExecutionError):
    def __init__(self, error_class: str) -> None:
        super().__init__(f"[{error_class}]", "exec_error")
        self.error_class = error_class


def test_accuracy_and_failures_per_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    gold = QueryResult(("c",), ((1,), (2,)), False)
    engine = FakeEngine({
        "right": ((2,), (1,)),
        "wrong order": ((2,), (1,)),
        "wrong": ((3,),),
        "rejected": Rejected("PARSE_SYNTAX_ERROR"),
        "slow": ExecutionError("timed out", "timeout"),
        # the engine answers the gold otherwise than SQLite: the prediction agrees with it there
        "engine's answer": ((5,),),
        "gold on the engine": ((5,),),
        "gold that fails there": Rejected("MISSING_AGGREGATION"),
    })
    monkeypatch.setattr(pipesql.engines, "open_engine", lambda name: engine)
    predictions = [
        Prediction(tmp_path, "right", gold, ordered=False),
        Prediction(tmp_path, "wrong order", gold, ordered=True),
        Prediction(tmp_path, "wrong", gold, ordered=False),
        Prediction(tmp_path, "rejected", gold, ordered=False),
        Prediction(tmp_path, "slow", gold, ordered=False),
        Prediction(tmp_path, "  ", gold, ordered=False),
        Prediction(tmp_path, "engine's answer", gold, False, gold_sql="gold on the engine"),
        Prediction(tmp_path, "wrong", gold, False, gold_sql="gold on the engine"),
        Prediction(tmp_path, "engine's answer", gold, False, gold_sql="gold that fails there"),
    ]
    figures = engine_accuracy(predictions, ("sqlite", "spark"), timeout_s=1, max_rows=10,
                              float_tol=1e-6, progress=False)
    assert figures == {"spark": {
        "examples": 9,
        "execution_accuracy": round(2 / 9, 4),
        "differs_from_sqlite": 1,
        "failures": {"mismatch": 4, "PARSE_SYNTAX_ERROR": 1, "timeout": 1, "empty": 1},
    }}
    assert engine.closed


def test_sqlite_alone_opens_no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipesql.engines, "open_engine", lambda name: pytest.fail("opened"))
    assert engine_accuracy([], ("sqlite",), timeout_s=1, max_rows=1, float_tol=0) == {}


def test_eval_engines_param_must_list_sqlite() -> None:
    assert EvalParams().engines == ("sqlite",)
    assert EvalParams(engines=["sqlite", "spark"]).engines == ("sqlite", "spark")
    with pytest.raises(ValueError, match="must list sqlite"):
        EvalParams(engines=["spark"])


def test_on_spark(spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "db.sqlite"
    with sqlite3.connect(db) as con:
        con.executescript("CREATE TABLE t (a INT); INSERT INTO t VALUES (1), (2);")
    gold = QueryResult(("a",), ((1,), (2,)), False)
    monkeypatch.setattr(pipesql.engines, "open_engine", lambda name: _Unclosed(spark))
    predictions = [Prediction(db, "FROM t |> SELECT a", gold, False),
                   Prediction(db, "FROM t |> SELECT a |> DISTINCT", gold, False)]
    figures = engine_accuracy(predictions, ("sqlite", "spark"), timeout_s=30, max_rows=10,
                              float_tol=1e-6, progress=False)
    assert figures["spark"]["execution_accuracy"] == 0.5
    assert figures["spark"]["failures"] == {"PARSE_SYNTAX_ERROR": 1}


class _Unclosed:
    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def __enter__(self) -> Any:
        return self.engine

    def __exit__(self, *exc: object) -> None:
        return None
