"""pipe: splitting pipe SQL on `|>` tokens, naming operators, rendering the operator nodes."""

from __future__ import annotations

import pytest
from sqlglot import exp

from pipesql.sql.pipe import (
    PipeAggregate,
    PipeLimit,
    PipeQuery,
    PipeSelect,
    PipeSetOperation,
    join_operators,
    operator_name,
    render,
    split_operators,
)

SPLITS = [
    ("FROM t", ["FROM t"]),
    ("FROM t |> WHERE a > 1 |> SELECT a", ["FROM t", "WHERE a > 1", "SELECT a"]),
    # `|>` inside a string literal is text, not an operator boundary
    ("FROM t |> WHERE s = '|>' |> SELECT s", ["FROM t", "WHERE s = '|>'", "SELECT s"]),
    ('FROM t |> WHERE "a|>b" = 1', ["FROM t", 'WHERE "a|>b" = 1']),
    # a nested pipe query stays inside its operator
    (
        "FROM t |> WHERE a IN (FROM u |> WHERE b > 0 |> SELECT b) |> SELECT a",
        ["FROM t", "WHERE a IN (FROM u |> WHERE b > 0 |> SELECT b)", "SELECT a"],
    ),
    (
        "FROM t |> SELECT a |> UNION ALL (FROM u |> SELECT a), (FROM v |> SELECT a) |> ORDER BY a",
        ["FROM t", "SELECT a", "UNION ALL (FROM u |> SELECT a), (FROM v |> SELECT a)", "ORDER BY a"],
    ),
    (
        "FROM (FROM t |> SELECT a) AS s |> LEFT JOIN u ON s.a = u.a",
        ["FROM (FROM t |> SELECT a) AS s", "LEFT JOIN u ON s.a = u.a"],
    ),
    # a WITH clause belongs to the query's source
    ("WITH c AS (FROM t |> SELECT a) FROM c |> SELECT a", ["WITH c AS (FROM t |> SELECT a) FROM c", "SELECT a"]),
    # whitespace around operators is not part of them
    ("  FROM t\n|>   WHERE a = 1  |>LIMIT 2 ", ["FROM t", "WHERE a = 1", "LIMIT 2"]),
]


@pytest.mark.parametrize(("pipe_sql", "ops"), SPLITS, ids=[s for s, _ in SPLITS])
def test_split_operators(pipe_sql: str, ops: list[str]) -> None:
    assert split_operators(pipe_sql) == ops


@pytest.mark.parametrize("pipe_sql", [s for s, _ in SPLITS if "\n" not in s and "  " not in s])
def test_join_operators_inverts_split(pipe_sql: str) -> None:
    assert join_operators(split_operators(pipe_sql)) == pipe_sql


@pytest.mark.parametrize("pipe_sql", ["FROM t |> |> SELECT a", "FROM t |>", "|> FROM t", "", "FROM t |> WHERE s = 'open"])
def test_split_operators_rejects_broken_text(pipe_sql: str) -> None:
    with pytest.raises(ValueError):
        split_operators(pipe_sql)


NAMES = [
    ("FROM t AS a", "FROM"),
    ("WITH c AS (FROM t) FROM c", "FROM"),
    ("JOIN u ON t.a = u.a", "JOIN"),
    ("LEFT JOIN u ON t.a = u.a", "JOIN"),
    ("LEFT OUTER JOIN u USING (a)", "JOIN"),
    ("CROSS JOIN u", "JOIN"),
    ("INNER JOIN u ON TRUE", "JOIN"),
    ("NATURAL JOIN u", "JOIN"),
    ("WHERE a > 1", "WHERE"),
    ("AGGREGATE COUNT(*) AS n GROUP BY a", "AGGREGATE"),
    ("AGGREGATE GROUP BY a", "AGGREGATE"),
    ("SELECT a, b", "SELECT"),
    ("EXTEND a + 1 AS b", "EXTEND"),
    ("AS s", "AS"),
    ("ORDER BY a DESC", "ORDER BY"),
    ("order  by a", "ORDER BY"),
    ("LIMIT 3 OFFSET 1", "LIMIT"),
    ("DISTINCT", "DISTINCT"),
    ("UNION ALL (FROM u)", "UNION"),
    ("INTERSECT DISTINCT (FROM u)", "INTERSECT"),
    ("EXCEPT DISTINCT (FROM u)", "EXCEPT"),
]


@pytest.mark.parametrize(("op", "name"), NAMES, ids=[op for op, _ in NAMES])
def test_operator_name(op: str, name: str) -> None:
    assert operator_name(op) == name


@pytest.mark.parametrize("op", ["", "GROUP BY a", "HAVING n > 1", "a > 1"])
def test_operator_name_rejects_non_operators(op: str) -> None:
    with pytest.raises(ValueError):
        operator_name(op)


def test_render_prints_one_line_of_operators() -> None:
    inner = PipeQuery(
        expressions=[exp.From(this=exp.to_table("u")), PipeSelect(expressions=[exp.column("a")])]
    )
    query = PipeQuery(
        expressions=[
            exp.From(this=exp.to_table("t")),
            exp.Where(this=exp.column("a").eq(exp.Literal.string("x |> y"))),
            PipeAggregate(
                expressions=[exp.alias_(exp.Count(this=exp.Star()), "n")], group=[exp.column("a")]
            ),
            PipeSetOperation(this="UNION", distinct=False, expressions=[inner]),
            exp.Distinct(),
            PipeLimit(this=exp.Literal.number(5), offset=exp.Literal.number(2)),
        ]
    )
    assert render(query) == (
        "FROM t |> WHERE a = 'x |> y' |> AGGREGATE COUNT(*) AS n GROUP BY a"
        " |> UNION ALL (FROM u |> SELECT a) |> DISTINCT |> LIMIT 5 OFFSET 2"
    )
