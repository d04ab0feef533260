"""Which columns a GROUP BY key determines: the columns of every table whose primary key it holds.

Standard SQL (and Spark, and GoogleSQL) reject a column that is neither grouped nor aggregated;
SQLite takes any row's value. When the key holds the column's table's primary key, every row of
a group has the same value, so the column can join the key without changing the groups. Column
equalities of inner joins and WHERE carry key columns across tables: with
`JOIN dept AS d ON e.dept_id = d.id`, grouping by `e.dept_id` groups by `d.id` too.

    >>> import sqlglot
    >>> from pipesql.sql.schema import Schema, TableSchema
    >>> schema = Schema({"emp": TableSchema(("id", "name", "dept_id"), ("id",)),
    ...                  "dept": TableSchema(("id", "name"), ("id",))})
    >>> select = sqlglot.parse_one(
    ...     "SELECT d.name, COUNT(*) FROM emp AS e JOIN dept AS d ON e.dept_id = d.id "
    ...     "GROUP BY e.dept_id")
    >>> determined = key_determines(select, select.args["group"].expressions, schema)
    >>> determined(exp.column("name", "d")), determined(exp.column("name", "e"))
    (True, False)
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

from pipesql.sql.schema import Schema

_Ref = tuple[str, str]  # (table alias, column), lower-case


def key_determines(
    select: exp.Select, keys: list[exp.Expression], schema: Schema | None
) -> Callable[[exp.Expression], bool]:
    """A test: is this column of `select`'s FROM determined by `keys`? Always False without schema."""
    if schema is None:
        return lambda column: False
    sources = _sources(select, schema)
    resolve = lambda node: _resolve(node, sources, schema)  # noqa: E731
    classes = _equalities(select, resolve)
    known = {ref for key in keys if (ref := resolve(key.unnest())) is not None}
    determined = _closure(known, classes, sources, schema)
    return lambda column: resolve(column) in determined


def _sources(select: exp.Select, schema: Schema) -> dict[str, str]:
    """Alias -> table name, for the plain tables of FROM and the JOINs the schema knows."""
    tables = [select.args["from_"].this, *(j.this for j in select.args.get("joins") or [])]
    return {
        t.alias_or_name.lower(): t.name.lower()
        for t in tables
        if isinstance(t, exp.Table) and schema.table(t.name) is not None
    }


def _resolve(node: exp.Expression, sources: dict[str, str], schema: Schema) -> _Ref | None:
    if not isinstance(node, exp.Column) or not isinstance(node.this, exp.Identifier):
        return None
    name = node.name.lower()
    if node.table:
        alias = node.table.lower()
        table = sources.get(alias)
        found = table is not None and name in schema.tables[table].columns
        return (alias, name) if found else None
    owners = [a for a, t in sources.items() if name in schema.tables[t].columns]
    return (owners[0], name) if len(owners) == 1 else None


def _equalities(
    select: exp.Select, resolve: Callable[[exp.Expression], _Ref | None]
) -> list[set[_Ref]]:
    """Classes of columns equal on every row: `a = b` conjuncts of inner-join ONs and WHERE."""
    conditions = [j.args.get("on") for j in select.args.get("joins") or [] if not j.side]
    where = select.args.get("where")
    conditions.append(where.this if where else None)
    classes: list[set[_Ref]] = []
    for condition in filter(None, conditions):
        for conjunct in condition.flatten() if isinstance(condition, exp.And) else [condition]:
            if not isinstance(conjunct, exp.EQ):
                continue
            left, right = resolve(conjunct.this), resolve(conjunct.expression)
            if left and right:
                merged = {left, right}.union(*(c for c in classes if left in c or right in c))
                classes = [c for c in classes if not (left in c or right in c)] + [merged]
    return classes


def _closure(
    known: set[_Ref], classes: list[set[_Ref]], sources: dict[str, str], schema: Schema
) -> set[_Ref]:
    """Grow `known` by equal columns and by whole tables whose primary key it holds."""
    known = set(known)
    while True:
        size = len(known)
        for c in classes:
            if known & c:
                known |= c
        for alias, table in sources.items():
            info = schema.tables[table]
            if info.primary_key and all((alias, k) in known for k in info.primary_key):
                known |= {(alias, column) for column in info.columns}
        if len(known) == size:
            return known
