"""tables: one type per column for engines with static schemas, as a table of cases."""

from __future__ import annotations

import doctest
import sqlite3
from pathlib import Path

import pytest

from pipesql.engines import tables
from pipesql.engines.tables import column_type, read_tables

CASES = [
    # (declared type, values, column type)
    ("INTEGER", [1, 2, None], "long"),
    ("INT", [1, 2.5], "double"),
    ("REAL", [1.0, None], "double"),
    ("TEXT", ["a", None], "string"),
    ("", ["a", 1], "string"),
    ("INTEGER", ["12", 3], "string"),
    ("INTEGER", [1, "", 3], "long"),
    ("INTEGER", [None, None], "long"),
    ("FLOAT", [None], "double"),
    ("TEXT", ["", ""], "string"),
    ("INTEGER", [2**70], "double"),
]


@pytest.mark.parametrize(("declared", "values", "expected"), CASES)
def test_column_type(declared: str, values: list, expected: str) -> None:
    assert column_type(declared, values) == expected


def test_values_are_converted_to_their_column_type(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE t (a INTEGER, b REAL, c TEXT, d);"
        "INSERT INTO t VALUES (1, 2, 'x', 'y'), ('', 2.5, 3, 4);"
    )
    conn.execute("INSERT INTO t VALUES (3, NULL, ?, NULL)", (b"\xff",))
    conn.commit()
    conn.close()
    (table,) = read_tables(path)
    assert (table.name, table.columns, table.types) == ("t", ("a", "b", "c", "d"), ("long", "double", "string", "string"))
    assert table.rows == [(1, 2.0, "x", "y"), (None, 2.5, "3", "4"), (3, None, "\ufffd", None)]


def test_docstring_examples() -> None:
    assert doctest.testmod(tables).failed == 0
