"""quoted_strings_as_literals: a table of SQLite queries before and after, over one schema."""

from __future__ import annotations

import doctest

import pytest
import sqlglot

from pipesql.sql import quoted_strings
from pipesql.sql.quoted_strings import quoted_strings_as_literals
from pipesql.sql.schema import Schema, TableSchema

SCHEMA = Schema({"people": TableSchema(("id", "name", "city"), ("id",))})

CASES = [
    # (title, before, after)
    ("string", 'SELECT id FROM people WHERE name = "Alice"', "SELECT id FROM people WHERE name = 'Alice'"),
    ("string with spaces", 'SELECT id FROM people WHERE city IN ("New York", "Oslo")',
     "SELECT id FROM people WHERE city IN ('New York', 'Oslo')"),
    ("column of the schema stays", 'SELECT "name" FROM people WHERE "City" = \'Oslo\'',
     'SELECT "name" FROM people WHERE "City" = \'Oslo\''),
    ("alias of the query stays", 'SELECT count(*) AS "n" FROM people ORDER BY "n"',
     'SELECT COUNT(*) AS "n" FROM people ORDER BY "n"'),
    ("qualified name stays", 'SELECT p."nick" FROM people AS p', 'SELECT p."nick" FROM people AS p'),
    ("single quotes untouched", "SELECT id FROM people WHERE name = 'Bo'",
     "SELECT id FROM people WHERE name = 'Bo'"),
    ("in a subquery", 'SELECT id FROM people WHERE id IN (SELECT id FROM people WHERE city = "Rome")',
     "SELECT id FROM people WHERE id IN (SELECT id FROM people WHERE city = 'Rome')"),
]


@pytest.mark.parametrize(("title", "before", "after"), CASES, ids=[c[0] for c in CASES])
def test_rewrite(title: str, before: str, after: str) -> None:
    tree = sqlglot.parse_one(before, read="sqlite")
    assert quoted_strings_as_literals(tree, SCHEMA).sql("sqlite") == after


def test_without_schema_nothing_changes() -> None:
    sql = 'SELECT id FROM people WHERE name = "Alice"'
    tree = sqlglot.parse_one(sql, read="sqlite")
    assert quoted_strings_as_literals(tree, None).sql("sqlite") == sql


def test_docstring_examples() -> None:
    assert doctest.testmod(quoted_strings).failed == 0
