"""key_determines: which columns a GROUP BY key fixes, as a table of queries and columns."""

from __future__ import annotations

import doctest

import pytest
import sqlglot

from pipesql.sql import dependence
from pipesql.sql.dependence import key_determines
from pipesql.sql.schema import Schema, TableSchema

SCHEMA = Schema({
    "emp": TableSchema(("id", "name", "dept_id"), ("id",)),
    "dept": TableSchema(("id", "name", "city"), ("id",)),
    "visit": TableSchema(("emp_id", "day", "note"), ("emp_id", "day")),
    "log": TableSchema(("msg",)),
})

CASES = [
    # (title, query with GROUP BY, column, determined)
    ("primary key", "SELECT 1 FROM emp GROUP BY id", "name", True),
    ("qualified primary key", "SELECT 1 FROM emp AS e GROUP BY e.id", "e.name", True),
    ("not the key", "SELECT 1 FROM emp GROUP BY dept_id", "name", False),
    ("the key column itself", "SELECT 1 FROM emp GROUP BY dept_id", "dept_id", True),
    ("across an inner join", "SELECT 1 FROM emp AS e JOIN dept AS d ON e.dept_id = d.id "
     "GROUP BY e.dept_id", "d.city", True),
    ("not across a left join", "SELECT 1 FROM emp AS e LEFT JOIN dept AS d ON e.dept_id = d.id "
     "GROUP BY e.dept_id", "d.city", False),
    ("through WHERE", "SELECT 1 FROM emp AS e, dept AS d WHERE e.dept_id = d.id AND d.city = 'x' "
     "GROUP BY e.dept_id", "d.name", True),
    ("the other table's key does not carry", "SELECT 1 FROM emp AS e JOIN dept AS d "
     "ON e.dept_id = d.id GROUP BY d.id", "e.name", False),
    ("composite key, whole", "SELECT 1 FROM visit GROUP BY emp_id, day", "note", True),
    ("composite key, part", "SELECT 1 FROM visit GROUP BY emp_id", "note", False),
    ("parenthesised key", "SELECT 1 FROM emp GROUP BY (id)", "name", True),
    ("table without a key", "SELECT 1 FROM log GROUP BY msg", "msg", True),
    ("ambiguous unqualified column", "SELECT 1 FROM emp AS e JOIN dept AS d ON e.dept_id = d.id "
     "GROUP BY e.id", "name", False),
    ("no group by", "SELECT 1 FROM emp", "name", False),
]


@pytest.mark.parametrize(("title", "sql", "column", "expected"), CASES, ids=[c[0] for c in CASES])
def test_determines(title: str, sql: str, column: str, expected: bool) -> None:
    select = sqlglot.parse_one(sql, read="sqlite")
    group = select.args.get("group")
    keys = group.expressions if group else []
    assert key_determines(select, keys, SCHEMA)(sqlglot.parse_one(column)) is expected


def test_without_schema_nothing_is_determined() -> None:
    select = sqlglot.parse_one("SELECT 1 FROM emp GROUP BY id")
    assert key_determines(select, select.args["group"].expressions, None)(sqlglot.parse_one("id")) is False


def test_docstring_examples() -> None:
    assert doctest.testmod(dependence).failed == 0
