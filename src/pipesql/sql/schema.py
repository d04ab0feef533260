"""A database's tables, columns and primary keys: what the portable rewrites need to know.

Two rewrites depend on the schema and cannot be decided from the SQL text alone: whether a
double-quoted word names a column or is SQLite's fallback string (`name = "Alice"`), and whether a
column outside GROUP BY is determined by the group key (its table's primary key is in the key).

    >>> schema = Schema({"t": TableSchema(("id", "name"), ("id",))})
    >>> schema.has_column("NAME"), schema.table("T").primary_key
    (True, ('id',))
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class TableSchema:
    """Lower-case column names in table order, and the primary key's columns (maybe none)."""

    columns: tuple[str, ...]
    primary_key: tuple[str, ...] = ()


@dataclass(frozen=True)
class Schema:
    """Tables by lower-case name."""

    tables: dict[str, TableSchema] = field(default_factory=dict)

    def table(self, name: str) -> TableSchema | None:
        return self.tables.get(name.lower())

    def has_column(self, name: str) -> bool:
        """Whether any table has a column of this name (case-insensitive, as SQLite resolves)."""
        name = name.lower()
        return any(name in t.columns for t in self.tables.values())


def read_schema(db_path: Path) -> Schema:
    """The schema of a SQLite file, opened read-only; raises sqlite3.Error on a broken file."""
    uri = f"file:{urllib.parse.quote(str(Path(db_path).absolute()))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        tables = {}
        for name in names:
            info = conn.execute(f"PRAGMA table_info({_quoted(name)})").fetchall()
            columns = tuple(row[1].lower() for row in info)
            key = tuple(row[1].lower() for row in sorted(info, key=lambda r: r[5]) if row[5])
            tables[name.lower()] = TableSchema(columns, key)
    finally:
        conn.close()
    return Schema(tables)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
