"""Pipe SQL as a list of operators: the AST nodes the decompiler builds, their one-line rendering,
and the split of pipe SQL text into top-level operators (the unit a model emits one at a time).

sqlglot has no AST for pipe syntax (its parser lowers `|>` to CTEs while parsing), so the pipe
operators are a few nodes of our own; expressions inside them stay ordinary sqlglot nodes and print
as SQLite prints them. Standard nodes serve where the operator reads like the clause it is
(`exp.From`, `exp.Join`, `exp.Where`, `exp.Order`).

    >>> limit = PipeLimit(this=exp.Literal.number(1))
    >>> render(PipeQuery(expressions=[exp.From(this=exp.to_table("t")), limit]))
    'FROM t |> LIMIT 1'
    >>> split_operators("FROM t |> WHERE s = '|>' |> SELECT a")
    ['FROM t', "WHERE s = '|>'", 'SELECT a']
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.dialects.sqlite import SQLite
from sqlglot.errors import TokenError
from sqlglot.tokens import Token, TokenType

SEPARATOR = " |> "


class PipeQuery(exp.Expression):
    """`[WITH ...] FROM t |> op |> ...`: `expressions` holds the operators in data-flow order."""

    arg_types = {"expressions": True, "with_": False}


class PipeAggregate(exp.Expression):
    """`AGGREGATE items [GROUP BY keys]`; its output is the keys, then the items."""

    arg_types = {"expressions": True, "group": False}


class PipeSelect(exp.Expression):
    """`SELECT [DISTINCT] items`: the projection, which hides every column it does not list.

    DISTINCT is written here, not as a `|> DISTINCT` operator: Spark 4's pipe grammar has none.
    """

    arg_types = {"expressions": True, "distinct": False}


class PipeExtend(exp.Expression):
    """`EXTEND items`: adds columns and keeps the input's."""

    arg_types = {"expressions": True}


class PipeAs(exp.Expression):
    """`AS alias`: names the table so far, as a derived table's alias would."""

    arg_types = {"this": True}


class PipeLimit(exp.Expression):
    """`LIMIT n [OFFSET m]`."""

    arg_types = {"this": True, "offset": False}


class PipeSetOperation(exp.Expression):
    """`UNION|INTERSECT|EXCEPT ALL|DISTINCT (query), ...`; `this` is the operator's keyword."""

    arg_types = {"this": True, "distinct": True, "expressions": True}


def render(query: exp.Expression) -> str:
    """One line, operators joined by ` |> `, expressions as sqlglot prints SQLite."""
    return PipeSQL().generate(query, copy=False)


def split_operators(pipe_sql: str) -> list[str]:
    """Top-level operators of `pipe_sql` as text, split on `|>` tokens outside parentheses.

    Splitting on tokens, not on the text, keeps `'a |> b'` literals and nested pipe subqueries
    whole. A leading WITH clause stays with the first operator: `["WITH c AS (...) FROM c", ...]`.
    Raises ValueError on an empty operator or on text that cannot be tokenized.
    """
    operators: list[str] = []
    start: Token | None = None
    previous: Token | None = None
    depth = 0
    for token in _tokenize(pipe_sql):
        if token.token_type == TokenType.PIPE_GT and depth == 0:
            if start is None or previous is None:
                raise ValueError(f"empty pipe operator before position {token.start}: {pipe_sql!r}")
            operators.append(pipe_sql[start.start : previous.end + 1])
            start = None
            continue
        depth += _DEPTH_CHANGE.get(token.token_type, 0)
        start = start or token
        previous = token
    if start is None or previous is None:
        raise ValueError(f"empty pipe operator at the end of {pipe_sql!r}")
    operators.append(pipe_sql[start.start : previous.end + 1])
    return operators


_DEPTH_CHANGE = {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}


def operator_name(op: str) -> str:
    """The operator's keyword: `"LEFT JOIN u ON ..."` -> `"JOIN"`, `"ORDER BY a"` -> `"ORDER BY"`.

    A leading `WITH ...` clause belongs to the query's source, so it names `"FROM"`.
    """
    tokens = _tokenize(op)
    if not tokens:
        raise ValueError("empty pipe operator")
    first = tokens[0]
    if first.token_type in _SOURCE_TOKENS:
        return "FROM"
    if first.token_type in _JOIN_TOKENS:
        return "JOIN"
    name = " ".join(first.text.upper().split())
    if name not in _OPERATOR_NAMES:
        raise ValueError(f"not a pipe operator: {op!r}")
    return name


_SOURCE_TOKENS = frozenset({TokenType.FROM, TokenType.WITH})
_JOIN_TOKENS = frozenset(
    {
        TokenType.JOIN,
        TokenType.LEFT,
        TokenType.RIGHT,
        TokenType.FULL,
        TokenType.INNER,
        TokenType.OUTER,
        TokenType.CROSS,
        TokenType.NATURAL,
    }
)
_OPERATOR_NAMES = frozenset(
    {
        "WHERE",
        "AGGREGATE",
        "SELECT",
        "EXTEND",
        "AS",
        "ORDER BY",
        "LIMIT",
        "DISTINCT",
        "UNION",
        "INTERSECT",
        "EXCEPT",
    }
)


def join_operators(ops: list[str]) -> str:
    """The inverse of `split_operators`: one line, operators joined by ` |> `."""
    return SEPARATOR.join(op.strip() for op in ops)


def _tokenize(sql: str) -> list[Token]:
    try:
        return SQLite().tokenize(sql)
    except TokenError as error:
        raise ValueError(f"cannot tokenize pipe SQL: {error}") from error


def _pipe_query_sql(self: SQLite.Generator, query: PipeQuery) -> str:
    with_ = self.sql(query, "with_")
    ops = SEPARATOR.join(self.sql(op).strip() for op in query.expressions)
    return f"{with_} {ops}" if with_ else ops


def _items_sql(self: SQLite.Generator, keyword: str, node: exp.Expression) -> str:
    return f"{keyword} {self.expressions(node, flat=True)}"


def _aggregate_sql(self: SQLite.Generator, node: PipeAggregate) -> str:
    items = self.expressions(node, flat=True)
    group = self.expressions(node, key="group", flat=True)
    parts = ["AGGREGATE", *([items] if items else []), *([f"GROUP BY {group}"] if group else [])]
    return " ".join(parts)


def _limit_sql(self: SQLite.Generator, node: PipeLimit) -> str:
    offset = self.sql(node, "offset")
    return f"LIMIT {self.sql(node, 'this')}" + (f" OFFSET {offset}" if offset else "")


def _set_operation_sql(self: SQLite.Generator, node: PipeSetOperation) -> str:
    quantifier = "DISTINCT" if node.args["distinct"] else "ALL"
    operands = ", ".join(f"({self.sql(operand)})" for operand in node.expressions)
    return f"{node.this} {quantifier} {operands}"


class PipeSQL(SQLite):
    """SQLite expressions inside GoogleSQL pipe operators; write-only (lower.py reads pipe SQL).

    Quoted identifiers take backticks, which SQLite, Spark and BigQuery all read as names:
    `"city"` is a string to Spark and BigQuery.
    """

    class Tokenizer(SQLite.Tokenizer):
        IDENTIFIERS = ["`", '"', ("[", "]")]  # the first is the one written

    class Generator(SQLite.Generator):
        TRANSFORMS = {
            **SQLite.Generator.TRANSFORMS,
            PipeQuery: _pipe_query_sql,
            PipeAggregate: _aggregate_sql,
            PipeSelect: lambda self, node: _items_sql(
                self, "SELECT DISTINCT" if node.args.get("distinct") else "SELECT", node
            ),
            PipeExtend: lambda self, node: _items_sql(self, "EXTEND", node),
            PipeAs: lambda self, node: f"AS {self.sql(node, 'this')}",
            PipeLimit: _limit_sql,
            exp.AnyValue: lambda self, node: self.func("ANY_VALUE", node.this),  # not SQLite's MAX
            PipeSetOperation: _set_operation_sql,
        }
