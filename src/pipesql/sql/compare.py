"""Do two query results answer the same question? Three rules, one module: golden_pairs and eval share it.

strict (`results_match`, golden_pairs' rule and eval's `execution_accuracy`): multisets of rows
    (duplicates count), in order only when the gold's outermost query orders its rows, floats
    within a tolerance. Column names do not matter (an alias is not an answer), column order does.
Spider (`spider_results_match`, `execution_accuracy_spider`): the execution rule of the official
    test-suite evaluator (taoyds/test-suite-sql-eval, `result_eq`): multisets of rows under some
    permutation of the columns, in order when the gold mentions ORDER BY anywhere
    (`spider_orders`), values compared exactly; two empty results match whatever their widths.
    The evaluator runs both queries with every DISTINCT removed first (its default,
    `--keep_distinct` off): `remove_distinct` does that to the SQL before it is executed.
BIRD (`bird_results_match`, `execution_accuracy_bird`): BIRD's evaluation.py, `set(predicted) ==
    set(gold)`: sets of rows (order and duplicates ignored), column order kept, values exact.

All three reject a result that max_rows cut: rows past the cap are unknown. None of them raises.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import sqlglot
from sqlglot import exp

from pipesql.sql.execute import QueryResult

Row = tuple[Any, ...]

# Leftover rows that sorted pairing cannot match are retried with an exact bipartite matching
# when a group has at most this many rows (cost grows with its cube); larger groups are reported
# as a mismatch.
_MAX_MATCHING_ROWS = 64

# The clauses of `SELECT * FROM <cte>` that keep the CTE's row order (sqlglot 30's arg names).
_FORWARDING_ARGS = frozenset({"expressions", "from_", "with_", "where", "limit", "offset"})

_NUMBER = object()  # stands for a numeric value in a row's exact part


def results_match(
    gold: QueryResult, pred: QueryResult, *, ordered: bool, float_tol: float = 1e-6
) -> bool:
    """True when `pred` holds the same rows as `gold`: in the same order if `ordered`.

    A truncated result never matches: rows past max_rows are unknown. Values match when equal,
    with int 3 equal to float 3.0; two numbers of which one is a float match within `float_tol`,
    relative or absolute (two ints match only exactly: COUNT(*) has no rounding error). NULL
    matches only NULL, a str never matches a number, and a BLOB matches the text it decodes to.
    """
    if gold.truncated or pred.truncated:
        return False
    if len(gold.columns) != len(pred.columns) or len(gold.rows) != len(pred.rows):
        return False
    if gold.rows == pred.rows:  # the common case, at C speed
        return True
    gold_rows = [_normalize(row) for row in gold.rows]
    pred_rows = [_normalize(row) for row in pred.rows]
    if ordered:
        return all(_rows_close(g, p, float_tol) for g, p in zip(gold_rows, pred_rows))
    return _multisets_close(gold_rows, pred_rows, float_tol)


def spider_results_match(gold: QueryResult, pred: QueryResult, *, ordered: bool) -> bool:
    """The Spider test-suite evaluator's `result_eq`: same rows under some column permutation.

    Two empty results match (widths aside); otherwise lengths and widths must agree and some
    permutation of pred's columns must give gold's rows: as a multiset, or as a list when
    `ordered` (the gold mentions ORDER BY, see `spider_orders`). Values compare with Python's
    `==`, as the evaluator's do: 3 == 3.0, no float tolerance, a BLOB never equals text.
    The search assigns gold columns one by one and drops a partial assignment as soon as the
    projected rows differ, so it is exact (the evaluator prunes by sampling rows; both accept
    the same pairs) and fast unless many columns hold the same values.
    """
    if gold.truncated or pred.truncated:
        return False
    if not gold.rows and not pred.rows:
        return True
    width = len(gold.columns)
    if len(gold.rows) != len(pred.rows) or len(pred.columns) != width:
        return False
    project: Callable[[Sequence[Row], tuple[int, ...]], Any] = (
        (lambda rows, cols: [tuple(r[c] for c in cols) for r in rows]) if ordered
        else (lambda rows, cols: Counter(tuple(r[c] for c in cols) for r in rows))
    )

    def extend(assigned: tuple[int, ...]) -> bool:
        k = len(assigned)
        if k == width:
            return True
        want = project(gold.rows, tuple(range(k + 1)))
        return any(
            project(pred.rows, (*assigned, j)) == want and extend((*assigned, j))
            for j in range(width) if j not in assigned
        )

    return extend(())


def bird_results_match(gold: QueryResult, pred: QueryResult) -> bool:
    """BIRD's evaluation.py: `set(pred_rows) == set(gold_rows)`, column order kept, values exact."""
    if gold.truncated or pred.truncated:
        return False
    return set(gold.rows) == set(pred.rows)


def spider_orders(sql: str | exp.Expression) -> bool:
    """Does row order count under the Spider rule? When the gold holds an ORDER BY anywhere.

    The evaluator tests `'order by' in gold.lower()`; the tree's ORDER BY nodes (outer, subquery,
    window) are what that text search finds, less the words inside a string literal or a name.
    A string is parsed as SQLite SQL; a parse error propagates.
    """
    tree = sqlglot.parse_one(sql, read="sqlite") if isinstance(sql, str) else sql
    return tree.find(exp.Order) is not None


def remove_distinct(tree: exp.Expression) -> exp.Expression:
    """`SELECT DISTINCT a, COUNT(DISTINCT b)` -> `SELECT a, COUNT(b)`: the Spider evaluator's default.

    It drops every `distinct` token of the query text (`parse.remove_distinct`): after SELECT,
    inside an aggregate, in a subquery alike (a DISTINCT over several arguments, which SQLite
    does not have, is left as it is). UNION, INTERSECT and EXCEPT keep their own
    duplicate removal (the token is not there). Returns a copy; the input is not changed.
    """
    tree = tree.copy()
    for node in list(tree.find_all(exp.Distinct)):
        if node.arg_key == "distinct":      # SELECT DISTINCT ...
            node.pop()
        elif len(node.expressions) == 1:    # COUNT(DISTINCT x), SUM(DISTINCT x), ...
            node.replace(node.expressions[0])
    return tree


def is_ordered(sql: str | exp.Expression) -> bool:
    """True when the outermost query orders its rows, so row order is part of the answer.

    An ORDER BY inside a subquery or CTE does not order the result, with one exception: sqlglot
    lowers a pipe query whose last ORDER BY is followed by order-keeping steps
    (`FROM t |> ORDER BY b |> SELECT a`) to `WITH __tmp1 AS (... ORDER BY b) SELECT * FROM
    __tmp1`, so `SELECT * FROM <cte>` with at most WHERE, LIMIT and OFFSET (which filter, never
    reorder) passes its CTE's order on.
    A string is parsed as SQLite SQL, pipes included; a parse error propagates.
    A DISTINCT query ordered by a column it drops (`SELECT DISTINCT a FROM t ORDER BY b`) has no
    defined order (which row's b orders a?): standard SQL rejects it, and its rows compare as a set.
    """
    query = sqlglot.parse_one(sql, read="sqlite") if isinstance(sql, str) else sql
    while True:
        if query.args.get("order"):
            return not _distinct_ordered_by_dropped_columns(query)
        if isinstance(query, exp.Subquery):
            query = query.this
            continue
        source = _forwarded_cte(query)
        if source is None:
            return False
        query = source


def _distinct_ordered_by_dropped_columns(query: exp.Expression) -> bool:
    """SELECT DISTINCT (not made redundant by a GROUP BY it selects) with an ORDER BY key that is
    neither a selected expression nor over selected columns only."""
    if not isinstance(query, exp.Select) or not query.args.get("distinct"):
        return False
    projection = query.expressions
    if any(isinstance(p, exp.Star) or (isinstance(p, exp.Column) and isinstance(p.this, exp.Star)) for p in projection):
        return False  # every column is selected
    names = {p.alias_or_name.lower() for p in projection}
    selected = {p.unalias().sql().lower() for p in projection}
    group = query.args.get("group")
    if group and all(g.sql().lower() in selected for g in group.expressions):
        return False  # one row per group key: DISTINCT changes nothing
    for key in query.args["order"].expressions:
        node = key.this
        if node.sql().lower() in selected or (isinstance(node, exp.Column) and node.name.lower() in names):
            continue
        columns = list(node.find_all(exp.Column))
        if not (columns and all(c.name.lower() in names for c in columns) and not node.find(exp.AggFunc)):
            return True
    return False


def _forwarded_cte(query: exp.Expression) -> exp.Expression | None:
    """The body of x in `WITH x AS (body) SELECT * FROM x [WHERE ...] [LIMIT n]`, else None."""
    if not (isinstance(query, exp.Select) and query.ctes and query.args.get("from_")):
        return None
    if any(value for key, value in query.args.items() if key not in _FORWARDING_ARGS):
        return None  # a JOIN, GROUP BY, DISTINCT, ... may reorder the rows
    if len(query.expressions) != 1 or not isinstance(query.expressions[0], exp.Star):
        return None
    table = query.args["from_"].this
    if not isinstance(table, exp.Table) or table.args.get("db"):
        return None
    return next((cte.this for cte in query.ctes if cte.alias_or_name == table.name), None)


def _normalize(row: Row) -> Row:
    """Decode BLOBs so that a BLOB and the TEXT it holds compare equal."""
    return tuple(v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in row)


def _values_close(a: Any, b: Any, tol: float) -> bool:
    if a == b:
        return True
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, int) and isinstance(b, int):
            return False
        return math.isclose(a, b, rel_tol=tol, abs_tol=tol)
    return False


def _rows_close(a: Row, b: Row, tol: float) -> bool:
    return all(_values_close(x, y, tol) for x, y in zip(a, b))


def _multisets_close(gold_rows: list[Row], pred_rows: list[Row], tol: float) -> bool:
    """Match equal rows exactly, then the leftovers within tolerance.

    Counting exact rows first (3 == 3.0 and hash alike) settles nearly every case without any
    sorting, so mixed types never meet `<`. Leftovers are grouped by their non-numeric values,
    which must match exactly, and paired within a group by their sorted numeric values: rounding
    to a grid instead would split two close values that straddle a grid line.
    """
    gold_counts, pred_counts = Counter(gold_rows), Counter(pred_rows)
    gold_left = gold_counts - pred_counts
    if not gold_left:
        return True  # equal lengths, so pred has no leftovers either
    groups: dict[Row, tuple[list[Row], list[Row]]] = {}
    for side, leftovers in enumerate((gold_left, pred_counts - gold_counts)):
        for row in leftovers.elements():
            groups.setdefault(_exact_part(row), ([], []))[side].append(row)
    return all(
        len(golds) == len(preds) and _group_close(golds, preds, tol)
        for golds, preds in groups.values()
    )


def _exact_part(row: Row) -> Row:
    return tuple(_NUMBER if isinstance(v, (int, float)) else v for v in row)


def _group_close(golds: list[Row], preds: list[Row], tol: float) -> bool:
    """Rows alike but for numbers: pair them in sorted order, or find a matching if that fails.

    Sorted pairing is right for one numeric column; with several, near-ties in an early column
    can misalign it, which the bipartite matching repairs for small groups.
    """
    golds.sort(key=_numeric_part)
    preds.sort(key=_numeric_part)
    if all(_rows_close(g, p, tol) for g, p in zip(golds, preds)):
        return True
    return len(golds) <= _MAX_MATCHING_ROWS and _has_perfect_matching(golds, preds, tol)


def _numeric_part(row: Row) -> Row:
    return tuple(v for v in row if isinstance(v, (int, float)))


def _has_perfect_matching(golds: Sequence[Row], preds: Sequence[Row], tol: float) -> bool:
    """Kuhn's augmenting paths: can every gold row take a distinct pred row within tolerance?"""
    close = [[j for j, p in enumerate(preds) if _rows_close(g, p, tol)] for g in golds]
    gold_of: list[int | None] = [None] * len(preds)

    def augment(i: int, seen: set[int]) -> bool:
        for j in close[i]:
            if j not in seen:
                seen.add(j)
                if gold_of[j] is None or augment(gold_of[j], seen):
                    gold_of[j] = i
                    return True
        return False

    return all(augment(i, set()) for i in range(len(golds)))
