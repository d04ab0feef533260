"""The tools a model may call on a database, the messages of a call and of its result, the
parsing of calls out of a reply, and the rendering of results.

Used by tokenize (tool samples, whose results come from really running each call) and by the
agent loop of eval and `pipesql predict`, so a model is asked in the format it was trained on.
Every query goes through `execute_safely`, since at inference the arguments are model output:
arguments are checked against the tool's definition, a table name must be one of the database's
(and is quoted), and row counts are clamped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipesql.io import DataError
from pipesql.params.tokenize import TokenizeParams
from pipesql.prompts.schema import (
    RENDERERS,
    list_tables,
    quoted,
    read_table,
    render_table,
    sql_name,
)
from pipesql.sql.execute import ExecutionError, QueryResult, execute_safely
from pipesql.sql.lower import lower_to_sqlite

# A tool result says how many rows a query returned up to this many ("more than N" beyond).
_COUNT_ROWS_CAP = 1000
_MAX_CELL_CHARS = 80  # a cell of a tool result is cut here: a long note teaches nothing
# A tool's query may hold no more than this (shown cut to rows of short cells anyway).
_TOOL_RESULT_BYTES = 16 * 1024 * 1024


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


_SPECS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
_JSON_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "integer": (int,)}
# The chat template writes each call as <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>.
_CALL_OPEN, _CALL_CLOSE = "<tool_call>", "</tool_call>"
_CALL_BLOCK = re.compile(re.escape(_CALL_OPEN) + r"(.*?)(?:" + re.escape(_CALL_CLOSE) + r"|\Z)", re.DOTALL)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ToolReply:
    """A reply read as the chat template writes tool calls.

    `content` is the text outside the calls that could be read; a block that could not be read
    stays in it verbatim (so the conversation shows the model what it wrote) and its reason is in
    `malformed`. A reply with no <tool_call> at all is a final answer.
    """

    content: str
    calls: tuple[ToolCall, ...]
    malformed: tuple[str, ...]

    @property
    def is_final(self) -> bool:
        return not self.calls and not self.malformed


def parse_tool_reply(text: str) -> ToolReply:
    """Every <tool_call> block of a reply: a JSON object with a string `name` and an object
    `arguments` (a JSON string of one is accepted too, and none is {}); an unclosed block, as a
    reply cut by its token budget leaves, is malformed."""
    calls: list[ToolCall] = []
    malformed: list[str] = []
    kept: list[str] = []
    end = 0
    for match in _CALL_BLOCK.finditer(text):
        kept.append(text[end : match.start()])
        end = match.end()
        call, reason = _read_call(match.group(1), closed=match.group(0).endswith(_CALL_CLOSE))
        if call is None:
            malformed.append(reason)
            kept.append(match.group(0))
        else:
            calls.append(call)
    kept.append(text[end:])
    return ToolReply("".join(kept).strip(), tuple(calls), tuple(malformed))


def _read_call(body: str, closed: bool) -> tuple[ToolCall | None, str]:
    if not closed:
        return None, "the <tool_call> block is not closed"
    try:
        data = json.loads(body)
    except ValueError as e:
        return None, f"the call is not JSON ({e})"
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None, 'the call is not a JSON object with a "name"'
    arguments = data.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            pass
    if not isinstance(arguments, dict):
        return None, '"arguments" is not a JSON object'
    return ToolCall(data["name"], arguments), ""


def check_arguments(name: str, arguments: dict[str, Any]) -> str | None:
    """Why the arguments do not fit the tool's definition, or None; an unknown tool is the caller's."""
    spec = _SPECS[name]
    properties = spec["properties"]
    unknown = sorted(set(arguments) - set(properties))
    if unknown:
        return f"{name} takes no argument {', '.join(map(repr, unknown))}"
    missing = [key for key in spec["required"] if key not in arguments]
    if missing:
        return f"{name} needs {', '.join(map(repr, missing))}"
    for key, value in arguments.items():
        kind = properties[key]["type"]
        if not isinstance(value, _JSON_TYPES[kind]) or isinstance(value, bool):
            return f"{name}: {key!r} must be a{'n' if kind == 'integer' else ''} {kind}, not {value!r}"
    return None


def call_message(calls: list[ToolCall], content: str = "") -> dict[str, Any]:
    """The assistant turn that makes these calls, as the chat template renders tool calls."""
    return {
        "role": "assistant",
        "content": content,
        "tool_calls": [
            {"type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls
        ],
    }


def result_message(name: str, result: str) -> dict[str, Any]:
    """A call's result as the turn after the call reads it."""
    return {"role": "tool", "name": name, "content": result}


def run_tool(db_path: Path, name: str, arguments: dict[str, Any], params: TokenizeParams) -> str:
    """A tool call's result as the model reads it; a failure is reported, never raised.

    Every query goes through `execute_safely`: at inference the arguments are model output.
    """
    if name not in _SPECS:
        return f"error: unknown tool {name!r}"
    problem = check_arguments(name, arguments)
    if problem:
        return f"error: {problem}"
    try:
        if name == "list_tables":
            return "\n".join(sql_name(t) for t in list_tables(db_path, params))
        if name == "describe_table":
            table = _find_table(db_path, arguments["table"], params)
            # With no schema in the prompts (format none) the tool is how the model sees one: DDL.
            render = RENDERERS.get(params.schema_.format, render_table)
            return render(read_table(db_path, table, params), params.schema_.example_values, None)
        if name == "sample_rows":
            table = _find_table(db_path, arguments["table"], params)
            limit = max(1, min(arguments.get("limit", 3), params.tool_max_rows))
            sql = f"SELECT * FROM {quoted(table)} LIMIT {limit}"
            result = execute_safely(db_path, sql, timeout_s=params.timeout_s, max_bytes=_TOOL_RESULT_BYTES)
            return format_result(result, limit)
        # execute_pipe_sql, the one tool left
        sql = lower_to_sqlite(arguments["query"])
        result = execute_safely(
            db_path, sql, timeout_s=params.timeout_s, max_rows=_COUNT_ROWS_CAP, max_bytes=_TOOL_RESULT_BYTES
        )
        return format_result(result, params.tool_max_rows)
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


def _find_table(db_path: Path, table: str, params: TokenizeParams) -> str:
    """The table's own spelling, one of the database's: a name is never put into SQL unchecked
    (and is quoted even then). SQLite matches names case-insensitively, and so does this."""
    wanted = table.lower()
    for name in list_tables(db_path, params):
        if name.lower() == wanted:
            return name
    raise ValueError(f"no such table: {table}")
