"""The conversations of one golden pair: incremental steps, the full query, a tool session.

Every prompt comes from `pipesql.prompts`, the functions eval generates with. A tool session's
results are real: each call runs on the pair's database through `run_tool` (the safe executor),
and a session in which a call fails is dropped rather than given an invented result.
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlglot.dialects.sqlite import SQLite
from sqlglot.tokens import TokenType

from pipesql.params.tokenize import TokenizeParams
from pipesql.prompts import (
    ToolCall,
    call_message,
    format_query,
    full_answer,
    full_messages,
    list_tables,
    result_message,
    run_tool,
    step_answer,
    step_messages,
    tool_messages,
)

KINDS = ("incremental", "full", "tool")
SAMPLE_ROWS_SHARE = 0.5  # tool sessions that look at a table's rows before testing the query


@dataclass(frozen=True)
class Sample:
    messages: list[dict[str, Any]]
    kind: str   # incremental | full | tool
    step: int   # operator position k of an incremental sample (k = num_ops: the end); else -1


def text_samples(
    row: dict[str, Any], ops: list[str], schema: str, params: TokenizeParams
) -> list[Sample]:
    """Incremental samples k = 0..N (operator k, then the end marker) and/or the full sample."""
    question, evidence = row["question"], row.get("evidence")
    reasoning = row.get("reasoning") if params.reasoning else None
    samples = []
    if params.mode in ("incremental", "both"):
        for k in range(len(ops) + 1):
            answer = step_answer(ops[k] if k < len(ops) else None, reasoning if k == 0 else None)
            messages = step_messages(question, schema, ops[:k], evidence) + [_assistant(answer)]
            samples.append(Sample(messages, "incremental", k))
    if params.mode in ("full", "both"):
        messages = full_messages(question, schema, evidence)
        samples.append(Sample(messages + [_assistant(full_answer(ops, reasoning))], "full", -1))
    return samples


def has_tool_sample(example_id: str, params: TokenizeParams) -> bool:
    """A fixed `tool_ratio` share of pairs, drawn per example id: the same pairs on every run."""
    return random.Random(f"{params.split.seed}/tool/{example_id}").random() < params.tool_ratio


def tool_sample(
    row: dict[str, Any], ops: list[str], db_path: Path, params: TokenizeParams
) -> Sample | None:
    """list_tables, describe_table for each table the query reads, sometimes sample_rows, then
    execute_pipe_sql on the gold query, then the answer; None when a call fails (a timeout).
    """
    rng = random.Random(f"{params.split.seed}/session/{row['id']}")
    query = format_query(ops)
    tables = used_tables(query, db_path, params)
    turns: list[list[tuple[str, dict[str, Any]]]] = [[("list_tables", {})]]
    if tables:
        turns.append([("describe_table", {"table": t}) for t in tables])
        if rng.random() < SAMPLE_ROWS_SHARE:
            turns.append([("sample_rows", {"table": tables[0], "limit": 3})])
    turns.append([("execute_pipe_sql", {"query": query})])
    messages: list[dict[str, Any]] = tool_messages(row["question"], row.get("evidence"))
    for calls in turns:
        messages.append(call_message([ToolCall(name, args) for name, args in calls]))
        for name, args in calls:
            result = _run_tool(db_path, name, json.dumps(args, sort_keys=True), params)
            if result.startswith("error:"):
                return None
            messages.append(result_message(name, result))
    reasoning = row.get("reasoning") if params.reasoning else None
    messages.append(_assistant(full_answer(ops, reasoning)))
    return Sample(messages, "tool", -1)


def used_tables(pipe_sql: str, db_path: Path, params: TokenizeParams) -> list[str]:
    """The database's tables the query names, in the order it names them.

    Read off sqlglot's tokens, not a parse (a tenth of the cost): a column named like a table
    adds that table, which a session exploring the database may well describe anyway.
    """
    by_lower = {name.lower(): name for name in _list_tables(db_path, params)}
    tokens = SQLite().tokenize(pipe_sql)
    # Any token but a string literal: a table may be named like a keyword (`date`).
    found = (by_lower.get(t.text.lower()) for t in tokens if t.token_type != TokenType.STRING)
    return list(dict.fromkeys(name for name in found if name))


def _run_tool(db_path: Path, name: str, args_json: str, params: TokenizeParams) -> str:
    """run_tool, run once per process for the calls that only read the schema.

    The database is read-only, so list_tables and describe_table give the same result on every
    call; running them again for each of a database's sessions would only cost time.
    """
    if name in _SCHEMA_TOOLS:
        return _schema_tool(db_path, name, args_json, params)
    return run_tool(db_path, name, json.loads(args_json), params)


_SCHEMA_TOOLS = frozenset({"list_tables", "describe_table"})


@functools.lru_cache(maxsize=4096)
def _schema_tool(db_path: Path, name: str, args_json: str, params: TokenizeParams) -> str:
    return run_tool(db_path, name, json.loads(args_json), params)


@functools.lru_cache(maxsize=1024)
def _list_tables(db_path: Path, params: TokenizeParams) -> tuple[str, ...]:
    return tuple(list_tables(db_path, params))


def _assistant(content: str) -> dict[str, str]:
    return {"role": "assistant", "content": content}
