"""`name = "Alice"` -> `name = 'Alice'`: SQLite's double-quoted strings as standard literals.

SQLite reads a double-quoted word as a column when one of that name exists and as a string
otherwise; GoogleSQL and Spark take it for a string, standard SQL and DataFusion for a column.
Written with single quotes it means the same everywhere. Which reading SQLite takes depends on
the database, so the rewrite needs the schema: a quoted name that is a column of some table, or
an alias the query defines, stays a column.

    >>> import sqlglot
    >>> from pipesql.sql.schema import Schema, TableSchema
    >>> schema = Schema({"t": TableSchema(("id", "name"))})
    >>> tree = sqlglot.parse_one('SELECT "name" FROM t WHERE name = "Alice"', read="sqlite")
    >>> quoted_strings_as_literals(tree, schema).sql("sqlite")
    'SELECT "name" FROM t WHERE name = \\'Alice\\''
"""

from __future__ import annotations

from sqlglot import exp

from pipesql.sql.schema import Schema


def quoted_strings_as_literals(tree: exp.Expression, schema: Schema | None) -> exp.Expression:
    """Every double-quoted, unqualified name that resolves to no column -> a string literal.

    Without a schema nothing can be decided, and `tree` is returned as it is.
    """
    if schema is None:
        return tree
    defined = {a.alias.lower() for a in tree.find_all(exp.Alias)}
    defined |= {i.name.lower() for alias in tree.find_all(exp.TableAlias) for i in alias.columns}
    for column in list(tree.find_all(exp.Column)):
        identifier = column.this
        if column.table or not isinstance(identifier, exp.Identifier) or not identifier.quoted:
            continue
        name = identifier.name
        if not schema.has_column(name) and name.lower() not in defined:
            column.replace(exp.Literal.string(name))
    return tree
