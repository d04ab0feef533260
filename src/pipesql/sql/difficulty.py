"""Spider's difficulty levels (easy, medium, hard, extra), computed on sqlglot's AST.

Spider's `evaluation.py` (`eval_hardness`) grades a query by counting components of its outermost
SELECT; with a set operation that is the left-most SELECT, as Spider's parser nests the right-hand
side as one query. We count the same components on sqlglot's tree:

- component1: WHERE, GROUP BY, ORDER BY, LIMIT (one each), one per joined table, and one per OR
  and per LIKE in the join, WHERE and HAVING conditions;
- component2: nested queries (in conditions, FROM, SELECT or WITH) plus one for a set operation;
- others: one each for more than one aggregate, select column, WHERE condition or GROUP BY column.

Aggregates are counted as Spider's script counts them, quirks included, so that levels match its
own: per SELECT, ORDER BY and GROUP BY item holding one, plus one per negated condition (NOT IN,
NOT LIKE) in WHERE and HAVING and one per AND/OR joining HAVING conditions; HAVING's aggregates
themselves are not counted. Spider's parser reads neither CTEs, derived tables nor window
functions: we count the first two as nested queries and do not count window functions as
aggregates. On Spider's training queries (8,562 that its parser reads) the levels agree with the
official script's on all but 9: 7 derived tables, and 2 where its parser drops an OR that follows
a column-to-column comparison.
"""

from __future__ import annotations

from collections.abc import Iterator

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError


def grade_difficulty(sql: str) -> str:
    """The Spider level of one SQLite query.

    >>> grade_difficulty("SELECT count(*) FROM singer")
    'easy'
    >>> grade_difficulty("SELECT name FROM singer WHERE age > (SELECT avg(age) FROM singer)")
    'hard'
    """
    root = _parse_query(sql)
    main = _main_select(root)
    c1 = _count_component1(main)
    c2 = _count_component2(root, main)
    others = _count_others(main)
    if c1 <= 1 and others == 0 and c2 == 0:
        return "easy"
    if (others <= 2 and c1 <= 1 and c2 == 0) or (c1 <= 2 and others < 2 and c2 == 0):
        return "medium"
    if (
        (others > 2 and c1 <= 2 and c2 == 0)
        or (2 < c1 <= 3 and others <= 2 and c2 == 0)
        or (c1 <= 1 and others == 0 and c2 <= 1)
    ):
        return "hard"
    return "extra"


def _parse_query(sql: str) -> exp.Query:
    try:
        statements = [s for s in sqlglot.parse(sql, read="sqlite") if s is not None]
    except SqlglotError as e:
        raise ValueError(f"cannot grade {sql!r}: sqlglot cannot parse it: {e}") from None
    if len(statements) != 1:
        raise ValueError(f"cannot grade {sql!r}: expected one statement, got {len(statements)}")
    root = statements[0]
    while isinstance(root, exp.Subquery):
        root = root.this
    if not isinstance(root, exp.Query):
        raise ValueError(f"cannot grade {sql!r}: not a query ({type(root).__name__})")
    return root


def _main_select(root: exp.Query) -> exp.Select:
    """The SELECT Spider grades: the left-most one of a set operation."""
    node: exp.Expression = root
    while not isinstance(node, exp.Select):
        if not isinstance(node, (exp.SetOperation, exp.Subquery)):
            raise ValueError(f"cannot grade {root.sql(dialect='sqlite')!r}: no SELECT in it")
        node = node.this
    return node


def _count_component1(select: exp.Select) -> int:
    clauses = sum(select.args.get(key) is not None for key in ("where", "group", "order", "limit"))
    joins = len(select.args.get("joins") or [])
    conditions = list(_conditions(select))
    ors = sum(1 for cond in conditions for _ in _scope_nodes(cond, exp.Or))
    likes = sum(1 for cond in conditions for _ in _scope_nodes(cond, exp.Like))
    return clauses + joins + ors + likes


def _count_component2(root: exp.Query, select: exp.Select) -> int:
    nested = sum(1 for _ in _scope_nodes(select, exp.Query, skip_root=True))
    if isinstance(root, exp.SetOperation):
        with_ = root.args.get("with_")
        nested += 1 + (len(with_.expressions) if with_ else 0)
    return nested


def _count_others(select: exp.Select) -> int:
    where = select.args.get("where")
    group = select.args.get("group")
    return (
        (_count_aggregates(select) > 1)
        + (len(select.expressions) > 1)
        + (where is not None and len(_predicates(where.this)) > 1)
        + (group is not None and len(group.expressions) > 1)
    )


def _count_aggregates(select: exp.Select) -> int:
    """What Spider's count_others counts as aggregates: see the module docstring."""
    items = list(select.expressions)
    for key in ("order", "group"):
        if select.args.get(key) is not None:
            items += select.args[key].expressions
    count = sum(1 for item in items if _has_aggregate(item))
    where, having = select.args.get("where"), select.args.get("having")
    if where is not None:
        count += sum(_is_negated(p) for p in _predicates(where.this))
    if having is not None:
        predicates = _predicates(having.this)
        count += sum(_is_negated(p) for p in predicates) + len(predicates) - 1
    return count


def _has_aggregate(node: exp.Expression) -> bool:
    return next(_scope_nodes(node, exp.AggFunc, windows=False), None) is not None


def _is_negated(predicate: exp.Expression) -> bool:
    return isinstance(predicate, exp.Not) or bool(predicate.args.get("negate"))


def _conditions(select: exp.Select) -> Iterator[exp.Expression]:
    """Join ON, WHERE and HAVING conditions: where Spider looks for OR and LIKE."""
    for join in select.args.get("joins") or []:
        if join.args.get("on") is not None:
            yield join.args["on"]
    for key in ("where", "having"):
        if select.args.get(key) is not None:
            yield select.args[key].this


def _predicates(condition: exp.Expression) -> list[exp.Expression]:
    """Leaves of an AND/OR tree: `a = 1 AND (b = 2 OR c = 3)` holds 3."""
    if isinstance(condition, exp.Paren):
        return _predicates(condition.this)
    if isinstance(condition, exp.Connector):
        return _predicates(condition.left) + _predicates(condition.right)
    return [condition]


def _scope_nodes(
    node: exp.Expression, kind: type[exp.Expression], skip_root: bool = False, windows: bool = True
) -> Iterator[exp.Expression]:
    """Nodes of `kind` in `node`'s own scope: nested queries are yielded but not entered."""

    def is_boundary(n: exp.Expression) -> bool:
        if n is node and skip_root:
            return False
        return isinstance(n, exp.Query) or (not windows and isinstance(n, exp.Window))

    for n in node.bfs(prune=is_boundary):
        if isinstance(n, kind) and not (n is node and skip_root):
            yield n
