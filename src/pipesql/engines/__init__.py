"""Real pipe-SQL engines, beside SQLite: proof that golden pairs and predictions run where users
run pipe SQL. Spark 4 (`spark.py`, the optional extra `pip install -e '.[spark]'`) reads each
SQLite table of a database as a view of the same name (`tables.py`)."""

from __future__ import annotations

from typing import Any

ENGINES = ("sqlite", "spark")  # what `golden_pairs.engines` and `eval.engines` may list


def open_engine(name: str) -> Any:
    """A started engine for `name` (not sqlite: `execute_safely` is SQLite's); raises EngineError."""
    if name == "spark":
        from pipesql.engines.spark import SparkEngine

        return SparkEngine()
    raise ValueError(f"no engine {name!r}: choose from {', '.join(ENGINES[1:])}")
