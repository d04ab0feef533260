"""golden_pairs section: how gold SQL and its pipe SQL translation are executed and compared."""

from __future__ import annotations

from pydantic import Field

from pipesql.params.base import Strict


class GoldenPairsParams(Strict):
    workers: int | None = Field(None, gt=0)         # processes; null = all cores
    timeout_s: float = Field(5.0, gt=0)             # per query execution, gold and pipe alike
    max_rows: int = Field(100_000, gt=0)            # a result cut at this size is not compared
    float_tol: float = Field(1e-6, ge=0)            # relative tolerance when comparing floats
