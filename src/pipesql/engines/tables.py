"""SQLite tables as typed columns, for loading into an engine with a static schema.

SQLite types values, not columns: an INTEGER column may hold '12' or 3.5. An engine such as
Spark needs one type per column, so each column gets the narrowest of long, double and string
that holds every value it has (its declared type only breaks the tie for an all-NULL column), and
values are converted to it. An empty string among numbers is a missing value in Spider's data
(one `''` in 3,665 `weather.cloud_cover` integers), read as NULL rather than turning the column
into text. Text that is not UTF-8 is decoded with replacement, as `execute_safely` reads it.

    >>> column_type("INTEGER", [1, 2, None]), column_type("INT", [1, 2.5]), column_type("", ["a", 1])
    ('long', 'double', 'string')
    >>> column_type("INTEGER", [1, "", 3])
    'long'
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

ColumnType = Literal["long", "double", "string"]

_INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    types: tuple[ColumnType, ...]
    rows: list[tuple[Any, ...]]


def read_tables(db_path: Path) -> list[Table]:
    """Every table of the SQLite file, read-only, with values converted to their column's type."""
    uri = f"file:{urllib.parse.quote(str(Path(db_path).absolute()))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    conn.text_factory = lambda b: b.decode("utf-8", "replace")
    try:
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )]
        tables = []
        for name in names:
            quoted = '"' + name.replace('"', '""') + '"'
            info = conn.execute(f"PRAGMA table_info({quoted})").fetchall()
            rows = conn.execute(f"SELECT * FROM {quoted}").fetchall()
            columns = tuple(row[1] for row in info)
            types = tuple(
                column_type(row[2] or "", [r[i] for r in rows]) for i, row in enumerate(info)
            )
            converted = [tuple(_convert(v, t) for v, t in zip(r, types)) for r in rows]
            tables.append(Table(name, columns, types, converted))
    finally:
        conn.close()
    return tables


def column_type(declared: str, values: Sequence[Any]) -> ColumnType:
    """The narrowest type holding every value; the declared type decides only when all are NULL."""
    present = [v for v in values if v is not None and not _is_blank(v)]
    if not present:
        upper = declared.upper()
        if "INT" in upper:
            return "long"
        return "double" if any(k in upper for k in ("REAL", "FLOA", "DOUB")) else "string"
    if all(isinstance(v, int) and _INT64[0] <= v <= _INT64[1] for v in present):
        return "long"
    if all(isinstance(v, (int, float)) for v in present):
        return "double"
    return "string"


def _is_blank(value: Any) -> bool:
    return isinstance(value, str) and not value.strip()


def _convert(value: Any, column: ColumnType) -> Any:
    if value is None or (column != "string" and _is_blank(value)):
        return None
    if column == "long":
        return value
    if column == "double":
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else str(value)
