"""read_schema: columns and primary keys of a SQLite file."""

from __future__ import annotations

import doctest
import sqlite3
from pathlib import Path

from pipesql.sql import schema as schema_module
from pipesql.sql.schema import TableSchema, read_schema


def test_reads_columns_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        'CREATE TABLE "My Table" (Id INTEGER PRIMARY KEY, Name TEXT);'
        "CREATE TABLE visit (day TEXT, emp INT, note TEXT, PRIMARY KEY (emp, day));"
        "CREATE TABLE log (msg TEXT);"
    )
    conn.close()
    schema = read_schema(path)
    assert schema.table("my table") == TableSchema(("id", "name"), ("id",))
    assert schema.table("VISIT") == TableSchema(("day", "emp", "note"), ("emp", "day"))
    assert schema.table("log") == TableSchema(("msg",), ())
    assert schema.has_column("NOTE") and not schema.has_column("nope")


def test_docstring_examples() -> None:
    assert doctest.testmod(schema_module).failed == 0
