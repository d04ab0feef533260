"""The three comparison rules (strict, Spider, BIRD), is_ordered and the Spider rule's SQL steps."""

from __future__ import annotations

from typing import Any

import pytest
import sqlglot

from pipesql.sql.compare import (
    bird_results_match,
    is_ordered,
    remove_distinct,
    results_match,
    spider_orders,
    spider_results_match,
)
from pipesql.sql.execute import QueryResult


def _result(
    *rows: tuple[Any, ...], width: int | None = None, truncated: bool = False
) -> QueryResult:
    width = len(rows[0]) if width is None else width
    return QueryResult(tuple(f"c{i}" for i in range(width)), tuple(rows), truncated)


# (title, gold, pred, ordered, expected)
MATCH_CASES = [
    ("identical", _result((1, "a"), (2, "b")), _result((1, "a"), (2, "b")), True, True),
    ("both empty", _result(width=1), _result(width=1), False, True),
    ("order ignored without outer ORDER BY",
     _result((1,), (2,), (3,)), _result((3,), (1,), (2,)), False, True),
    ("order counts under outer ORDER BY", _result((1,), (2,)), _result((2,), (1,)), True, False),
    ("duplicates counted", _result((1,), (1,), (2,)), _result((1,), (2,), (2,)), False, False),
    ("same duplicates, other order",
     _result((1,), (2,), (1,)), _result((1,), (1,), (2,)), False, True),
    ("different lengths", _result((1,), (2,)), _result((1,), (2,), (2,)), False, False),
    ("different column counts, no rows", _result(width=1), _result(width=2), False, False),
    ("column names ignored", QueryResult(("n",), ((1,),), False),
     QueryResult(("count(*)",), ((1,),), False), False, True),
    ("column order counts", _result((1, "a")), _result(("a", 1)), False, False),
    ("int equals float", _result((3,),), _result((3.0,),), True, True),
    ("float within tolerance", _result((0.1 + 0.2,),), _result((0.3,),), True, True),
    ("float outside tolerance", _result((1.0,),), _result((1.001,),), True, False),
    ("absolute tolerance near zero", _result((1e-9,),), _result((0,),), True, True),
    ("ints match only exactly", _result((1_000_000,),), _result((1_000_001,),), True, False),
    ("NULL equals NULL", _result((None, 1),), _result((None, 1),), True, True),
    ("NULL is not 0", _result((None,),), _result((0,),), False, False),
    ("NULL is not empty text", _result((None,),), _result(("",),), False, False),
    ("text is not a number", _result(("3",),), _result((3,),), False, False),
    ("BLOB equals its text", _result((b"abc",),), _result(("abc",),), True, True),
    ("mixed types, reordered",
     _result((1, "a"), ("b", None), (2.5, b"x"), (None, 7)),
     _result((None, 7), (2.5, "x"), (1, "a"), ("b", None)), False, True),
    ("mixed types, one value differs",
     _result((1, "a"), ("b", None), (None, 7)),
     _result((None, 7), (1, "a"), ("b", 0)), False, False),
    ("close floats straddling a rounding boundary",
     _result((1.00000049999,), (2.0,)), _result((2.0,), (1.00000050001,)), False, True),
    ("close floats grouped by their text",
     _result(("a", 1.0000000001), ("b", 2.0)),
     _result(("b", 2.0000000001), ("a", 1.0)), False, True),
    ("floats swapped between texts",
     _result(("a", 1.0), ("b", 2.0)), _result(("a", 2.0), ("b", 1.0)), False, False),
    ("near-tie in the first float column needs a matching",
     _result((1.0, 5.0), (1.0 + 1e-9, 3.0)), _result((1.0 + 1e-9, 5.0), (1.0, 3.0)), False, True),
    ("ordered with float noise",
     _result((1.0,), (2.0,)), _result((1.0 + 1e-9,), (2.0,)), True, True),
    ("truncated gold never matches",
     _result((1,), truncated=True), _result((1,)), False, False),
    ("truncated pred never matches",
     _result((1,)), _result((1,), truncated=True), False, False),
]


@pytest.mark.parametrize(
    ("gold", "pred", "ordered", "expected"),
    [case[1:] for case in MATCH_CASES],
    ids=[case[0] for case in MATCH_CASES],
)
def test_results_match(gold: QueryResult, pred: QueryResult, ordered: bool, expected: bool) -> None:
    assert results_match(gold, pred, ordered=ordered) is expected
    assert results_match(pred, gold, ordered=ordered) is expected  # symmetric


def test_results_match_float_tol_is_a_knob() -> None:
    gold, pred = _result((1.0,),), _result((1.001,),)
    assert results_match(gold, pred, ordered=True, float_tol=1e-2)


# (title, gold, pred, ordered, strict, spider, bird): one table for the three rules, so each row
# shows where they part. `ordered` is the gold's: is_ordered for strict, spider_orders for Spider.
RULE_CASES = [
    ("identical", _result((1, "a"), (2, "b")), _result((1, "a"), (2, "b")), True, True, True, True),
    ("column order", _result((1, "a"), (2, "b")), _result(("a", 1), ("b", 2)), False, False, True, False),
    ("columns permuted, rows ordered",
     _result((1, "a"), (2, "b")), _result(("a", 1), ("b", 2)), True, False, True, False),
    ("a permutation must hold for every row",
     _result((1, 2), (3, 4)), _result((2, 1), (3, 4)), False, False, False, False),
    ("three columns, two alike",
     _result((1, 1, 2), (1, 3, 2)), _result((2, 1, 1), (2, 1, 3)), False, False, True, False),
    ("a duplicate row dropped", _result((1,), (1,), (2,)), _result((1,), (2,), (2,)), False, False, False, True),
    ("duplicates removed", _result((1,), (1,)), _result((1,),), False, False, False, True),
    ("row order, unordered gold", _result((1,), (2,)), _result((2,), (1,)), False, True, True, True),
    ("row order, ordered gold", _result((1,), (2,)), _result((2,), (1,)), True, False, False, True),
    ("ties listed the other way under ORDER BY",
     _result(("ann", 30), ("bob", 30)), _result(("bob", 30), ("ann", 30)), True, False, False, True),
    ("int equals float", _result((3,),), _result((3.0,),), True, True, True, True),
    ("float noise", _result((0.1 + 0.2,),), _result((0.3,),), True, True, False, False),
    ("float outside tolerance", _result((1.0,),), _result((1.001,),), True, False, False, False),
    ("NULL equals NULL", _result((None, 1),), _result((None, 1),), True, True, True, True),
    ("NULL is not 0", _result((None,),), _result((0,),), False, False, False, False),
    ("BLOB and its text", _result((b"abc",),), _result(("abc",),), True, True, False, False),
    ("both empty, one column each", _result(width=1), _result(width=1), False, True, True, True),
    ("both empty, widths differ", _result(width=1), _result(width=2), False, False, True, True),
    ("empty against one row", _result(width=1), _result((1,),), False, False, False, False),
    ("a column too many", _result((1,),), _result((1, 2),), False, False, False, False),
    ("truncated pred", _result((1,),), _result((1,), truncated=True), False, False, False, False),
    ("truncated gold", _result((1,), truncated=True), _result((1,),), False, False, False, False),
]


@pytest.mark.parametrize(
    ("gold", "pred", "ordered", "strict", "spider", "bird"),
    [case[1:] for case in RULE_CASES],
    ids=[case[0] for case in RULE_CASES],
)
def test_the_three_rules(gold: QueryResult, pred: QueryResult, ordered: bool, strict: bool, spider: bool,
                         bird: bool) -> None:
    assert (results_match(gold, pred, ordered=ordered), spider_results_match(gold, pred, ordered=ordered),
            bird_results_match(gold, pred)) == (strict, spider, bird)
    # each rule is symmetric
    assert (results_match(pred, gold, ordered=ordered), spider_results_match(pred, gold, ordered=ordered),
            bird_results_match(pred, gold)) == (strict, spider, bird)


# (title, sql, without DISTINCT)
DISTINCT_CASES = [
    ("SELECT DISTINCT", "SELECT DISTINCT a FROM t", "SELECT a FROM t"),
    ("inside an aggregate", "SELECT COUNT(DISTINCT a), SUM(DISTINCT b) FROM t", "SELECT COUNT(a), SUM(b) FROM t"),
    ("in a subquery", "SELECT a FROM t WHERE a IN (SELECT DISTINCT b FROM u)",
     "SELECT a FROM t WHERE a IN (SELECT b FROM u)"),
    ("UNION keeps its own", "SELECT a FROM t UNION SELECT a FROM u", "SELECT a FROM t UNION SELECT a FROM u"),
    ("no DISTINCT", "SELECT a FROM t ORDER BY a", "SELECT a FROM t ORDER BY a"),
]


@pytest.mark.parametrize(("sql", "expected"), [c[1:] for c in DISTINCT_CASES], ids=[c[0] for c in DISTINCT_CASES])
def test_remove_distinct(sql: str, expected: str) -> None:
    tree = sqlglot.parse_one(sql, read="sqlite")
    assert remove_distinct(tree).sql(dialect="sqlite") == expected
    assert tree.sql(dialect="sqlite") == sqlglot.parse_one(sql, read="sqlite").sql(dialect="sqlite")  # a copy


# (title, sql, spider_orders): any ORDER BY, as the evaluator's text search finds it
SPIDER_ORDER_CASES = [
    ("outer", "SELECT a FROM t ORDER BY a", True),
    ("in a subquery", "SELECT * FROM (SELECT a FROM t ORDER BY a LIMIT 3)", True),
    ("in a window", "SELECT a, ROW_NUMBER() OVER (ORDER BY a) FROM t", True),
    ("none", "SELECT a FROM t GROUP BY a", False),
    ("only in a literal", "SELECT a FROM t WHERE b = 'order by'", False),
]


@pytest.mark.parametrize(("sql", "expected"), [c[1:] for c in SPIDER_ORDER_CASES],
                         ids=[c[0] for c in SPIDER_ORDER_CASES])
def test_spider_orders(sql: str, expected: bool) -> None:
    assert spider_orders(sql) is expected


# (title, sql, expected)
ORDER_CASES = [
    ("plain", "SELECT a FROM t", False),
    ("outer ORDER BY", "SELECT a FROM t ORDER BY a", True),
    ("ORDER BY with LIMIT", "SELECT a FROM t GROUP BY a ORDER BY COUNT(*) DESC LIMIT 1", True),
    ("parenthesized", "(SELECT a FROM t ORDER BY a)", True),
    ("subquery ORDER BY is not outer", "SELECT * FROM (SELECT a FROM t ORDER BY a LIMIT 3)", False),
    ("IN-subquery ORDER BY is not outer",
     "SELECT a FROM t WHERE a IN (SELECT a FROM u ORDER BY a LIMIT 1)", False),
    ("window ORDER BY is not outer", "SELECT a, ROW_NUMBER() OVER (ORDER BY a) FROM t", False),
    ("UNION with trailing ORDER BY", "SELECT a FROM t UNION SELECT a FROM u ORDER BY a", True),
    ("UNION without", "SELECT a FROM t UNION SELECT a FROM u", False),
    ("CTE ordered, outer reorders by JOIN",
     "WITH x AS (SELECT a FROM t ORDER BY a) SELECT * FROM x JOIN u", False),
    ("CTE ordered, outer groups",
     "WITH x AS (SELECT a FROM t ORDER BY a) SELECT a, COUNT(*) FROM x GROUP BY a", False),
    ("outer ORDER BY over a CTE", "WITH x AS (SELECT 1 AS a) SELECT * FROM x ORDER BY a", True),
    ("pipe, final ORDER BY", "FROM t |> ORDER BY a", True),
    ("pipe, ORDER BY then LIMIT", "FROM t |> WHERE a > 1 |> ORDER BY a |> LIMIT 3", True),
    ("pipe, ORDER BY then SELECT", "FROM t |> ORDER BY b |> SELECT a", True),
    ("pipe, ORDER BY then SELECT, WHERE", "FROM t |> ORDER BY b |> SELECT a |> WHERE a > 1", True),
    ("pipe, aggregate then ORDER BY then SELECT",
     "FROM t |> AGGREGATE COUNT(*) AS n GROUP BY b |> ORDER BY n DESC |> SELECT b", True),
    ("pipe, set operation then ORDER BY",
     "FROM t |> SELECT a |> UNION ALL (FROM u |> SELECT a) |> ORDER BY a", True),
    ("pipe, no ORDER BY", "FROM t |> WHERE a > 1 |> SELECT a", False),
    ("pipe, ORDER BY then JOIN", "FROM t |> ORDER BY a |> SELECT a |> JOIN u USING (a)", False),
    # which row's b orders a? No order is defined: the rows compare as a set
    ("DISTINCT ordered by a dropped column", "SELECT DISTINCT a FROM t ORDER BY b", False),
    ("DISTINCT ordered by a selected column", "SELECT DISTINCT a FROM t ORDER BY a DESC", True),
    ("DISTINCT ordered over selected columns", "SELECT DISTINCT a, c FROM t ORDER BY a + c", True),
    ("DISTINCT ordered by an alias", "SELECT DISTINCT a + 1 AS b FROM t ORDER BY b", True),
    ("DISTINCT of every column", "SELECT DISTINCT * FROM t ORDER BY b", True),
    ("DISTINCT made redundant by a selected GROUP BY",
     "SELECT DISTINCT a FROM t GROUP BY a ORDER BY COUNT(*) DESC", True),
    ("DISTINCT over a GROUP BY it does not select",
     "SELECT DISTINCT a FROM t GROUP BY c ORDER BY COUNT(*)", False),
]


@pytest.mark.parametrize(
    ("sql", "expected"), [case[1:] for case in ORDER_CASES], ids=[case[0] for case in ORDER_CASES]
)
def test_is_ordered(sql: str, expected: bool) -> None:
    assert is_ordered(sql) is expected
    assert is_ordered(sqlglot.parse_one(sql, read="sqlite")) is expected
