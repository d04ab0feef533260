"""The schema text of a prompt: a database's tables as DDL or a compact form, within a budget.

Databases are read through `execute_safely` only; a tokenizer is passed in where the budget needs
counting, so nothing here imports torch or transformers.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from pipesql.io import DataError
from pipesql.params.tokenize import TokenizeParams
from pipesql.sql.execute import ExecutionError, execute_safely

# Example values come from the first rows only: a full scan of a BIRD table would cost seconds
# per column, and the first rows show a column's literal format as well as any.
_VALUE_SCAN_ROWS = 1000
_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Tokenizer(Protocol):
    """What the schema budget needs of a tokenizer (any Hugging Face tokenizer has it)."""

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


@dataclass(frozen=True)
class Column:
    name: str
    type: str                 # as declared ("" when none), since SQLite keeps what was written
    values: tuple[str, ...]   # example values as SQL literals, up to example_values


@dataclass(frozen=True)
class ForeignKey:
    columns: tuple[str, ...]
    table: str
    references: tuple[str, ...]  # empty when the key names no columns: the target's primary key


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    foreign_keys: tuple[ForeignKey, ...]


def schema_text(db_path: Path, params: TokenizeParams, tokenizer: Tokenizer) -> str:
    """The database's tables as `schema.format` writes them, within `schema.max_tokens` tokens.

    Over budget, the text is cut by a rule that never looks at a query, so training and
    inference cut alike: first example values go (one per column at a time), then whole tables
    from the end (named in a closing comment), then columns from the end of the one table left.
    """
    if params.schema_.format == "none":
        return ""
    tables = read_schema(db_path, params)
    budget = params.schema_.max_tokens
    text = ""
    for text in _cuts(tables, params.schema_.example_values, RENDERERS[params.schema_.format]):
        if len(tokenizer.encode(text, add_special_tokens=False)) <= budget:
            return text
    return text  # a single table header over budget: nothing is left to cut


def read_schema(db_path: Path, params: TokenizeParams) -> list[Table]:
    """Every table in creation order, with example values; raises DataError naming the file."""
    return [read_table(db_path, name, params) for name in list_tables(db_path, params)]


def list_tables(db_path: Path, params: TokenizeParams) -> list[str]:
    rows = _query(
        db_path,
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%'"
        " ESCAPE '\\' ORDER BY rowid",
        params,
    )
    return [name for (name,) in rows]


def read_table(db_path: Path, table: str, params: TokenizeParams) -> Table:
    """One table's columns, keys and example values, from SQLite's own pragmas."""
    info = _query(db_path, f"PRAGMA table_info({quoted(table)})", params)
    fk_rows = _query(db_path, f"PRAGMA foreign_key_list({quoted(table)})", params)
    columns = tuple(
        Column(name, declared or "", _example_values(db_path, table, name, declared or "", params))
        for _, name, declared, *_ in info
    )
    primary_key = tuple(name for _, name, _, _, _, pk in sorted(info, key=lambda r: r[5]) if pk)
    by_id: dict[int, list[tuple[Any, ...]]] = {}
    for row in sorted(fk_rows, key=lambda r: (r[0], r[1])):  # (id, seq, table, from, to, ...)
        by_id.setdefault(row[0], []).append(row)
    foreign_keys = tuple(
        ForeignKey(
            columns=tuple(r[3] for r in rows),
            table=rows[0][2],
            references=tuple(r[4] for r in rows) if all(r[4] for r in rows) else (),
        )
        for rows in by_id.values()
    )
    return Table(table, columns, primary_key, foreign_keys)


def render_table(table: Table, n_values: int, n_columns: int | None = None) -> str:
    """`CREATE TABLE t (\\n  a INTEGER PRIMARY KEY,\\n  b TEXT, -- e.g. 'x', 'y'\\n);`: what code
    models read most, with types and keys spelled out."""
    single_pk = table.primary_key if len(table.primary_key) == 1 else ()
    single_fk = {fk.columns[0]: fk for fk in table.foreign_keys if len(fk.columns) == 1}
    shown = table.columns[:n_columns]
    items: list[tuple[str, str]] = []  # (definition, comment)
    for col in shown:
        parts = [sql_name(col.name)] + ([col.type] if col.type else [])
        if col.name in single_pk:
            parts.append("PRIMARY KEY")
        if col.name in single_fk:
            parts.append(_references(single_fk[col.name]))
        values = col.values[:n_values]
        items.append((" ".join(parts), f" -- e.g. {', '.join(values)}" if values else ""))
    if len(shown) < len(table.columns):
        items.append(("", f"-- {len(table.columns) - len(shown)} more columns not shown"))
    else:
        if len(table.primary_key) > 1:
            items.append((f"PRIMARY KEY ({', '.join(map(sql_name, table.primary_key))})", ""))
        for fk in table.foreign_keys:
            if len(fk.columns) > 1:
                cols = ", ".join(map(sql_name, fk.columns))
                items.append((f"FOREIGN KEY ({cols}) {_references(fk)}", ""))
    last = max((i for i, (definition, _) in enumerate(items) if definition), default=-1)
    lines = [
        f"  {definition}{',' if i < last else ''}{comment}" if definition
        else f"  {comment.strip()}"
        for i, (definition, comment) in enumerate(items)
    ]
    return f"CREATE TABLE {sql_name(table.name)} (\n" + "\n".join(lines) + "\n);"


def render_table_compact(table: Table, n_values: int, n_columns: int | None = None) -> str:
    """`t(a PK, b ['x', 'y'], c -> u.id)`: names and keys only, a third of the DDL's tokens.

    For small models on a CPU, where every prompt token costs training time; types are left
    out (the example values show a text column's literal format).
    """
    single_pk = table.primary_key if len(table.primary_key) == 1 else ()
    single_fk = {fk.columns[0]: fk for fk in table.foreign_keys if len(fk.columns) == 1}
    shown = table.columns[:n_columns]
    items = []
    for col in shown:
        parts = [sql_name(col.name)]
        if col.name in single_pk:
            parts.append("PK")
        if col.name in single_fk:
            parts.append(f"-> {_target(single_fk[col.name])}")
        if values := col.values[:n_values]:
            parts.append(f"[{', '.join(values)}]")
        items.append(" ".join(parts))
    if len(shown) < len(table.columns):
        items.append(f"... {len(table.columns) - len(shown)} more columns")
    else:
        if len(table.primary_key) > 1:
            items.append(f"PK ({', '.join(map(sql_name, table.primary_key))})")
        for fk in table.foreign_keys:
            if len(fk.columns) > 1:
                items.append(f"({', '.join(map(sql_name, fk.columns))}) -> {_target(fk)}")
    return f"{sql_name(table.name)}({', '.join(items)})"


def _target(fk: ForeignKey) -> str:
    refs = fk.references
    return sql_name(fk.table) + (f".{sql_name(refs[0])}" if len(refs) == 1 else f"({', '.join(map(sql_name, refs))})" if refs else "")


Renderer = Callable[[Table, int, int | None], str]  # (table, example values, columns shown)
RENDERERS: dict[str, Renderer] = {"ddl": render_table, "compact": render_table_compact}


def _cuts(tables: list[Table], n_values: int, render: Renderer) -> Iterator[str]:
    """Schema texts from whole to smallest, in the order the budget rule tries them."""
    for k in range(n_values, -1, -1):
        yield _render(tables, k, len(tables), render)
    for n in range(len(tables) - 1, 0, -1):
        yield _render(tables, 0, n, render)
    if tables:
        for c in range(len(tables[0].columns) - 1, -1, -1):
            yield _render(tables, 0, 1, render, n_columns=c)


def _render(
    tables: list[Table], n_values: int, n_tables: int, render: Renderer, n_columns: int | None = None
) -> str:
    blocks = [render(t, n_values, None) for t in tables[: n_tables - 1]]
    if n_tables:
        blocks.append(render(tables[n_tables - 1], n_values, n_columns))
    if n_tables < len(tables):
        names = ", ".join(sql_name(t.name) for t in tables[n_tables:])
        blocks.append(f"-- {len(tables) - n_tables} more tables not shown: {names}")
    return "\n".join(blocks)


def _example_values(
    db_path: Path, table: str, column: str, declared: str, params: TokenizeParams
) -> tuple[str, ...]:
    """Distinct short text values, in row order: they show the model a column's literal format.

    Text columns only (declared with TEXT affinity, or with no type, as Spider often does):
    numbers tell little about how to write a filter. Values holding a newline would break the
    comment line they are shown on.
    """
    k, max_chars = params.schema_.example_values, params.schema_.max_value_chars
    upper = declared.upper()
    is_text = not upper or any(word in upper for word in ("CHAR", "CLOB", "TEXT"))
    if k == 0 or not is_text:
        return ()
    col = quoted(column)
    rows = _query(
        db_path,
        f"SELECT DISTINCT {col} FROM (SELECT {col} FROM {quoted(table)} LIMIT {_VALUE_SCAN_ROWS})"
        f" WHERE typeof({col}) = 'text' AND length({col}) BETWEEN 1 AND {max_chars}"
        f" AND instr({col}, char(10)) = 0 LIMIT {k}",
        params,
    )
    return tuple("'" + value.replace("'", "''") + "'" for (value,) in rows)


def _references(fk: ForeignKey) -> str:
    cols = f"({', '.join(map(sql_name, fk.references))})" if fk.references else ""
    return f"REFERENCES {sql_name(fk.table)}{cols}"


def _query(db_path: Path, sql: str, params: TokenizeParams) -> tuple[tuple[Any, ...], ...]:
    try:
        return execute_safely(db_path, sql, timeout_s=params.timeout_s).rows
    except ExecutionError as e:
        raise DataError(f"{db_path}: cannot read the schema: {e}") from None


def quoted(name: str) -> str:
    """Always quoted, for the queries built here: any name is safe inside double quotes."""
    return '"' + name.replace('"', '""') + '"'


@cache
def sql_name(name: str) -> str:
    """A name as the model should write it: bare where SQLite takes it bare, else quoted."""
    if not _PLAIN_NAME.match(name):
        return quoted(name)
    # Only a plain identifier gets here, so this probe of an empty in-memory database can run
    # nothing else. A keyword (`order`) fails it; names SQLite allows (`key`, `date`) pass.
    try:
        with closing(sqlite3.connect(":memory:")) as probe:
            probe.execute(f'SELECT {name} FROM (SELECT 1 AS "{name}")')
    except sqlite3.Error:
        return quoted(name)
    return name
