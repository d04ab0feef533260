"""Execution accuracy on real pipe engines (Spark 4), beside SQLite's: `eval.engines`.

SQLite scores a prediction through our lowering; an engine runs the predicted pipe SQL text
itself, so its figure says how often the model writes pipe SQL that engine accepts and answers
right. The reference is the gold result SQLite gave, compared by the same rule (`results_match`,
order only under the gold's outer ORDER BY), or, where the engine answers the gold query itself
otherwise (ties under LIMIT, integer division), the gold's rows there: golden_pairs proves each
pair on that same reference. One session serves all predictions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipesql.sql.compare import results_match
from pipesql.sql.execute import ExecutionError, QueryResult


@dataclass(frozen=True)
class Prediction:
    """What an engine needs to score one prediction."""

    db_path: Path
    query: str            # the predicted pipe SQL, as the model wrote it
    gold: QueryResult     # the gold SQL's SQLite result
    ordered: bool         # row order counts (the gold's outer ORDER BY)
    gold_sql: str = ""    # run on the engine when the prediction does not give SQLite's rows


def engine_accuracy(
    predictions: Sequence[Prediction],
    engines: Sequence[str],
    *,
    timeout_s: float,
    max_rows: int,
    float_tol: float,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Per engine other than sqlite: execution accuracy, and failures by category/error class."""
    from pipesql.engines import open_engine

    figures = {}
    order = sorted(range(len(predictions)), key=lambda i: str(predictions[i].db_path))
    for name in engines:
        if name == "sqlite":
            continue
        verdicts = Counter[str]()
        with open_engine(name) as engine:
            for i in tqdm(order, desc=f"score on {name}", unit="query", disable=not progress):
                verdicts[_verdict(engine, predictions[i], timeout_s, max_rows, float_tol)] += 1
        correct = verdicts.pop("correct", 0) + (differs := verdicts.pop(DIFFERS, 0))
        n = len(predictions)
        figures[name] = {
            "examples": n,
            "execution_accuracy": round(correct / n, 4) if n else 0.0,
            "differs_from_sqlite": differs,  # correct on the gold's rows there, not SQLite's
            "failures": dict(verdicts.most_common()),
        }
    return figures


DIFFERS = "correct, on the gold's rows on the engine"


def _verdict(engine: Any, p: Prediction, timeout_s: float, max_rows: int, float_tol: float) -> str:
    """"correct", DIFFERS, "mismatch", "timeout", or the engine's error class for a rejection."""
    if not p.query.strip():
        return "empty"
    limits = {"timeout_s": timeout_s, "max_rows": max_rows}
    try:
        result = engine.run(p.db_path, p.query, **limits)
    except ExecutionError as e:
        return "timeout" if e.category == "timeout" else getattr(e, "error_class", None) or e.category
    if results_match(p.gold, result, ordered=p.ordered, float_tol=float_tol):
        return "correct"
    if not p.gold_sql:
        return "mismatch"
    try:
        gold = engine.run(p.db_path, p.gold_sql, **limits)
    except ExecutionError:
        return "mismatch"
    return DIFFERS if results_match(gold, result, ordered=p.ordered, float_tol=float_tol) else "mismatch"
