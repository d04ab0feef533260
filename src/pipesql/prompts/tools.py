"""The tools a model may call on a database, and the rendering of their results.

Used by tokenize (tool samples, whose results come from really running each call) and at
inference; every query goes through `execute_safely`, since at inference the arguments are
model output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipesql.io import DataError
from pipesql.params.tokenize import TokenizeParams
from pipesql.prompts.schema import RENDERERS, list_tables, quoted, read_table, sql_name
from pipesql.sql.execute import ExecutionError, QueryResult, execute_safely
from pipesql.sql.lower import lower_to_sqlite

# A tool result says how many rows a query returned up to this many ("more than N" beyond).
_COUNT_ROWS_CAP = 1000
_MAX_CELL_CHARS = 80  # a cell of a tool result is cut here: a long note teaches nothing


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
            return "\n".join(sql_name(t) for t in list_tables(db_path, params))
        if name == "describe_table":
            table = _find_table(db_path, arguments.get("table"), params)
            render = RENDERERS[params.schema_.format]
            return render(read_table(db_path, table, params), params.schema_.example_values, None)
        if name == "sample_rows":
            table = _find_table(db_path, arguments.get("table"), params)
            limit = min(int(arguments.get("limit") or 3), params.tool_max_rows)
            sql = f"SELECT * FROM {quoted(table)} LIMIT {max(limit, 1)}"
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
