"""What the model sees: schema text, the chat messages of one step, tools and their results.

The single source of every prompt, imported by tokenize (training samples) and by eval and
predict (generation), so the text a model is trained on is the text it is asked with. Three
shapes of conversation, each a system turn (instructions, and the schema where one is given)
and a user turn (question, evidence, and in step mode the query so far):

    step   the answer is the next operator, or END_MARKER once the query is complete
    full   the answer is the whole query in a ```sql block
    tools  the schema is not given: the model calls TOOLS, then answers as in full

The schema sits in the system turn, apart from what changes from step to step, so every step of
every question on one database shares that turn's text (and tokenize encodes it once).
Databases are read through `execute_safely` only; nothing here imports torch or transformers
(a tokenizer is passed in where the schema budget needs counting).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from pipesql.io import DataError
from pipesql.params.tokenize import TokenizeParams
from pipesql.sql.execute import ExecutionError, QueryResult, execute_safely
from pipesql.sql.lower import lower_to_sqlite
from pipesql.sql.pipe import split_operators

END_MARKER = "END"  # never an operator's first word, so a reply of END is unambiguous

SYSTEM_STEP = (
    "You write pipe SQL for SQLite, one operator at a time. Reply with the next operator of the"
    f" query, or {END_MARKER} when the query is complete."
)
SCHEMA_HEADING = "Database schema:"
SYSTEM_FULL = "You write pipe SQL for SQLite. Reply with the whole query in a ```sql block."
SYSTEM_TOOLS = (
    "You write pipe SQL for SQLite. Inspect the database and test your query with the tools,"
    " then reply with the whole query in a ```sql block."
)

# Example values come from the first rows only: a full scan of a BIRD table would cost seconds
# per column, and the first rows show a column's literal format as well as any.
_VALUE_SCAN_ROWS = 1000
# A tool result says how many rows a query returned up to this many ("more than N" beyond).
_COUNT_ROWS_CAP = 1000
_MAX_CELL_CHARS = 80  # a cell of a tool result is cut here: a long note teaches nothing
_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FENCED = re.compile(r"```[A-Za-z]*[ \t]*\n(.*?)```", re.DOTALL)


class Tokenizer(Protocol):
    """What the schema budget needs of a tokenizer (any Hugging Face tokenizer has it)."""

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


# ---------------------------------------------------------------- messages


def step_messages(
    question: str, schema: str, ops_so_far: Sequence[str], evidence: str | None = None
) -> list[dict[str, str]]:
    """The prompt of step k (k = len(ops_so_far)): its answer is operator k, or END_MARKER."""
    so_far = f"\n{format_query(ops_so_far)}" if ops_so_far else " (empty)"
    return [
        {"role": "system", "content": _system(SYSTEM_STEP, schema)},
        {"role": "user", "content": f"{_question_text(question, evidence)}\nQuery so far:{so_far}"},
    ]


def step_answer(op: str | None, reasoning: str | None = None) -> str:
    """Operator k as the assistant writes it; None is the end of the query.

    Reasoning (step 0 only: the model thinks once, before its first operator) comes first and
    the operator follows in a ```sql block, so `parse_step_answer` finds it either way.
    """
    text = END_MARKER if op is None else op
    return f"{reasoning.strip()}\n\n```sql\n{text}\n```" if reasoning else text


def parse_step_answer(text: str) -> str | None:
    """A generated step back to one operator, or None where the model says the query is done.

    Lenient where a model drifts harmlessly (a leading `|>`, a fence, more than one operator:
    the first is the step); raises ValueError when no operator can be read.
    """
    body = _last_fenced(text).strip()
    if body == END_MARKER:
        return None
    body = body.removeprefix("|>").strip()
    if not body:
        raise ValueError(f"no operator in the answer {text!r}")
    return split_operators(body)[0]


def full_messages(
    question: str, schema: str, evidence: str | None = None
) -> list[dict[str, str]]:
    """The prompt whose answer is the whole query (`full_answer`)."""
    return [
        {"role": "system", "content": _system(SYSTEM_FULL, schema)},
        {"role": "user", "content": _question_text(question, evidence)},
    ]


def full_answer(ops: Sequence[str], reasoning: str | None = None) -> str:
    """The whole query, one operator a line, in a ```sql block; reasoning, if any, before it."""
    block = f"```sql\n{format_query(ops)}\n```"
    return f"{reasoning.strip()}\n\n{block}" if reasoning else block


def parse_full_answer(text: str) -> str:
    """The pipe SQL of a full (or tool) answer: its last ```sql block, else the whole text."""
    return _last_fenced(text).strip()


def tool_messages(question: str, evidence: str | None = None) -> list[dict[str, str]]:
    """The prompt of a tool conversation: no schema, which the model looks up with TOOLS."""
    return [
        {"role": "system", "content": SYSTEM_TOOLS},
        {"role": "user", "content": _question_text(question, evidence)},
    ]


def template_texts() -> list[str]:
    """The fixed wording of every prompt kind, so a tokenizer trained from scratch merges it.

    Without it the instructions, a sixth of a short prompt, split into letters and pairs.
    """
    kinds = (step_messages("", "", []), step_messages("", "", ["FROM t"]), full_messages("", ""), tool_messages(""))
    return [SCHEMA_HEADING] + [message["content"] for messages in kinds for message in messages]


def format_query(ops: Sequence[str]) -> str:
    """`FROM t\\n|> WHERE a > 1`: one operator a line, as pipe SQL is usually laid out."""
    return "\n|> ".join(op.strip() for op in ops)


def _system(instructions: str, schema: str) -> str:
    """The system turn: instructions, then the schema unless `schema.format` is none."""
    return f"{instructions}\n\n{SCHEMA_HEADING}\n{schema}" if schema else instructions


def _question_text(question: str, evidence: str | None) -> str:
    text = f"Question: {question.strip()}"
    return f"{text}\nEvidence: {evidence.strip()}" if evidence else text


def _last_fenced(text: str) -> str:
    """The last fenced block: reasoning may hold blocks of its own before the answer's."""
    blocks = _FENCED.findall(text)
    return blocks[-1] if blocks else text


# ---------------------------------------------------------------- schema text


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
    info = _query(db_path, f"PRAGMA table_info({_quoted(table)})", params)
    fk_rows = _query(db_path, f"PRAGMA foreign_key_list({_quoted(table)})", params)
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
        parts = [_name(col.name)] + ([col.type] if col.type else [])
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
            items.append((f"PRIMARY KEY ({', '.join(map(_name, table.primary_key))})", ""))
        for fk in table.foreign_keys:
            if len(fk.columns) > 1:
                cols = ", ".join(map(_name, fk.columns))
                items.append((f"FOREIGN KEY ({cols}) {_references(fk)}", ""))
    last = max((i for i, (definition, _) in enumerate(items) if definition), default=-1)
    lines = [
        f"  {definition}{',' if i < last else ''}{comment}" if definition
        else f"  {comment.strip()}"
        for i, (definition, comment) in enumerate(items)
    ]
    return f"CREATE TABLE {_name(table.name)} (\n" + "\n".join(lines) + "\n);"


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
        parts = [_name(col.name)]
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
            items.append(f"PK ({', '.join(map(_name, table.primary_key))})")
        for fk in table.foreign_keys:
            if len(fk.columns) > 1:
                items.append(f"({', '.join(map(_name, fk.columns))}) -> {_target(fk)}")
    return f"{_name(table.name)}({', '.join(items)})"


def _target(fk: ForeignKey) -> str:
    refs = fk.references
    return _name(fk.table) + (f".{_name(refs[0])}" if len(refs) == 1 else f"({', '.join(map(_name, refs))})" if refs else "")


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
        names = ", ".join(_name(t.name) for t in tables[n_tables:])
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
    col = _quoted(column)
    rows = _query(
        db_path,
        f"SELECT DISTINCT {col} FROM (SELECT {col} FROM {_quoted(table)} LIMIT {_VALUE_SCAN_ROWS})"
        f" WHERE typeof({col}) = 'text' AND length({col}) BETWEEN 1 AND {max_chars}"
        f" AND instr({col}, char(10)) = 0 LIMIT {k}",
        params,
    )
    return tuple("'" + value.replace("'", "''") + "'" for (value,) in rows)


def _references(fk: ForeignKey) -> str:
    cols = f"({', '.join(map(_name, fk.references))})" if fk.references else ""
    return f"REFERENCES {_name(fk.table)}{cols}"


def _query(db_path: Path, sql: str, params: TokenizeParams) -> tuple[tuple[Any, ...], ...]:
    try:
        return execute_safely(db_path, sql, timeout_s=params.timeout_s).rows
    except ExecutionError as e:
        raise DataError(f"{db_path}: cannot read the schema: {e}") from None


def _quoted(name: str) -> str:
    """Always quoted, for the queries built here: any name is safe inside double quotes."""
    return '"' + name.replace('"', '""') + '"'


@cache
def _name(name: str) -> str:
    """A name as the model should write it: bare where SQLite takes it bare, else quoted."""
    if not _PLAIN_NAME.match(name):
        return _quoted(name)
    # Only a plain identifier gets here, so this probe of an empty in-memory database can run
    # nothing else. A keyword (`order`) fails it; names SQLite allows (`key`, `date`) pass.
    try:
        with closing(sqlite3.connect(":memory:")) as probe:
            probe.execute(f'SELECT {name} FROM (SELECT 1 AS "{name}")')
    except sqlite3.Error:
        return _quoted(name)
    return name


# ---------------------------------------------------------------- tools


def _function(name: str, description: str, properties: dict[str, Any]) -> dict[str, Any]:
    required = [key for key in properties if key != "limit"]
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


_TABLE_ARG = {"table": {"type": "string", "description": "The table's name."}}
TOOLS: list[dict[str, Any]] = [
    _function("list_tables", "List the tables of the database.", {}),
    _function(
        "describe_table",
        "Show a table's columns with their types, keys and example values.",
        _TABLE_ARG,
    ),
    _function(
        "sample_rows",
        "Show the first rows of a table.",
        _TABLE_ARG | {"limit": {"type": "integer", "description": "How many rows (default 3)."}},
    ),
    _function(
        "execute_pipe_sql",
        "Run a pipe SQL query on the database and show the first rows of its result.",
        {"query": {"type": "string", "description": "The pipe SQL query."}},
    ),
]


def run_tool(db_path: Path, name: str, arguments: dict[str, Any], params: TokenizeParams) -> str:
    """A tool call's result as the model reads it; a failure is reported, never raised.

    Every query goes through `execute_safely`: at inference the arguments are model output.
    """
    try:
        if name == "list_tables":
            return "\n".join(_name(t) for t in list_tables(db_path, params))
        if name == "describe_table":
            table = _find_table(db_path, arguments.get("table"), params)
            render = RENDERERS[params.schema_.format]
            return render(read_table(db_path, table, params), params.schema_.example_values, None)
        if name == "sample_rows":
            table = _find_table(db_path, arguments.get("table"), params)
            limit = min(int(arguments.get("limit") or 3), params.tool_max_rows)
            sql = f"SELECT * FROM {_quoted(table)} LIMIT {max(limit, 1)}"
            return format_result(execute_safely(db_path, sql, timeout_s=params.timeout_s), limit)
        if name == "execute_pipe_sql":
            sql = lower_to_sqlite(str(arguments.get("query", "")))
            result = execute_safely(
                db_path, sql, timeout_s=params.timeout_s, max_rows=_COUNT_ROWS_CAP
            )
            return format_result(result, params.tool_max_rows)
        return f"error: unknown tool {name!r}"
    except (ExecutionError, DataError, ValueError, TypeError) as e:  # LoweringError: ValueError
        return f"error: {e}"


def format_result(result: QueryResult, max_rows: int) -> str:
    """Header, up to max_rows rows (` | ` between cells), then the row count."""
    lines = [" | ".join(result.columns)]
    lines += [" | ".join(_cell(v) for v in row) for row in result.rows[:max_rows]]
    n = len(result.rows)
    count = f"more than {n}" if result.truncated else str(n)
    shown = f", first {max_rows} shown" if n > max_rows else ""
    lines.append(f"({count} row{'' if n == 1 and not result.truncated else 's'}{shown})")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    text = value.hex() if isinstance(value, bytes) else str(value)
    text = " ".join(text.split())  # one row a line
    return text if len(text) <= _MAX_CELL_CHARS else text[: _MAX_CELL_CHARS - 3] + "..."


def _find_table(db_path: Path, table: Any, params: TokenizeParams) -> str:
    """The table's own spelling: SQLite matches names case-insensitively, and so does this."""
    wanted = str(table or "").lower()
    for name in list_tables(db_path, params):
        if name.lower() == wanted:
            return name
    raise ValueError(f"no such table: {table}")
