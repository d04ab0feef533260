"""golden_pairs section: how gold SQL and its pipe SQL translation are executed and compared."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from pipesql.params.base import Strict

Engine = Literal["sqlite", "spark"]  # spark: the optional extra `pip install -e '.[spark]'`


def check_engines(engines: tuple[str, ...]) -> tuple[str, ...]:
    """SQLite must be listed (every engine is compared with the gold's rows on SQLite), once each."""
    if "sqlite" not in engines:
        raise ValueError("must list sqlite: every engine is compared with the gold's SQLite rows")
    if len(set(engines)) != len(engines):
        raise ValueError(f"lists an engine twice: {list(engines)}")
    return engines


class GoldenPairsParams(Strict):
    workers: int | None = Field(None, gt=0)         # processes; null = all cores
    timeout_s: float = Field(5.0, gt=0)             # per query execution, gold and pipe alike
    max_rows: int = Field(100_000, gt=0)            # a result cut at this size is not compared
    float_tol: float = Field(1e-6, ge=0)            # relative tolerance when comparing floats
    engines: tuple[Engine, ...] = ("sqlite",)       # a pair is kept when it matches on every one

    _check_engines = field_validator("engines")(lambda cls, v: check_engines(v))
