"""Run untrusted SQL against a SQLite database: read-only, time-boxed, capped in rows and bytes.

Model output, decompiled gold and user input all pass through `execute_safely`, the one place
that decides how SQL touches a database (golden_pairs, tool samples, eval and predict share it).
Writes are stopped three times over: the file is opened `mode=ro`, `PRAGMA query_only` is on, and
an authorizer admits only reads. A deadline is enforced from inside SQLite by a progress handler,
so a runaway join is interrupted rather than waited for. Memory is bounded too: rows are fetched
one at a time against a byte budget, so `SELECT zeroblob(30000000) FROM big_table` is an error after
a few rows instead of gigabytes within the deadline.
"""

from __future__ import annotations

import operator
import sqlite3
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

# The progress handler runs every this many VM instructions: about every 0.1 ms of query work,
# so a query stops within a millisecond of its deadline. Measured on a 4M-row join, checking
# every 1000 instructions cost 4% and every 10000 under 1%.
_VM_STEPS_PER_CHECK = 10_000

# No single value may exceed this: `randomblob(1e9)` would otherwise allocate a gigabyte in one VM
# step, out of the progress handler's reach. Spider and BIRD values are far smaller.
_MAX_VALUE_BYTES = 64 * 1024 * 1024

# A whole result may hold no more than this by default (values counted as SQLite holds them: text
# and blobs by length, numbers and NULL 8 bytes). Spider and BIRD gold results at 100,000 rows stay far below.
MAX_RESULT_BYTES = 256 * 1024 * 1024
_NUMBER_BYTES = 8
_MIN_VALUE_LIMIT = 1024 * 1024

# Pragmas that only describe the schema. Their argument names a table or index, never a setting,
# so they are allowed with one; every other pragma (journal_mode, writable_schema, ...) is denied.
_SCHEMA_PRAGMAS = frozenset(
    {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
     "foreign_key_list"}
)

# load_extension is already disabled (Python never enables it); fts3_tokenizer can register
# native code from a pointer. Neither has a place in a query.
_DENIED_FUNCTIONS = frozenset({"load_extension", "fts3_tokenizer"})

# Real Spider databases hold bytes that are not UTF-8; replace them instead of failing the query.
# (methodcaller is the fastest lenient decoder: ~0.1 µs a value over sqlite3's strict default.)
_decode_text = operator.methodcaller("decode", "utf-8", "replace")


@dataclass(frozen=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    truncated: bool  # True when max_rows cut the result


class ExecutionError(Exception):
    """A query that could not produce a result; `category` is what metrics count it under.

    The message is SQLite's own (`no such column: x`), for the caller to prefix with its
    file, line and database.
    """

    def __init__(self, message: str, category: Literal["exec_error", "timeout"]) -> None:
        super().__init__(message)
        self.category = category

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # golden_pairs runs in worker processes: keep the category across pickling.
        return type(self), (self.args[0], self.category)


def execute_safely(
    db_path: Path,
    sql: str,
    *,
    timeout_s: float = 5.0,
    max_rows: int = 100_000,
    max_bytes: int = MAX_RESULT_BYTES,
) -> QueryResult:
    """Read-only, time-boxed and memory-bounded: model output is untrusted; a runaway join must
    not stall eval, nor a result of huge values exhaust its memory.

    Opens its own connection per call, so it is safe from any thread or process. Raises
    ExecutionError: "timeout" when the deadline (which covers fetching) passes, "exec_error"
    for everything else, including a missing database file, statements that are not queries and
    results over `max_bytes` (rows past max_rows are cut, not an error; bytes past the cap are).
    """
    deadline = time.monotonic() + timeout_s
    db_path = Path(db_path)
    if not db_path.is_file():
        raise ExecutionError(f"{db_path}: no such database file", "exec_error")
    # mode=ro, not immutable=1: immutable skips locking and would read a file mid-write.
    uri = f"file:{urllib.parse.quote(str(db_path.absolute()))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout_s, isolation_level=None)
    except sqlite3.Error as e:
        raise ExecutionError(f"{db_path}: {e}", "exec_error") from e
    try:
        conn.execute("PRAGMA query_only = ON")
        # No one value may exceed the result's own budget either: SQLite refuses to build it.
        # (The limit also bounds the statement and the sorter's records: never below a floor.)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, min(_MAX_VALUE_BYTES, max(_MIN_VALUE_LIMIT, max_bytes)))
        conn.set_authorizer(_authorize)
        conn.set_progress_handler(lambda: time.monotonic() > deadline, _VM_STEPS_PER_CHECK)
        conn.text_factory = _decode_text
        cursor = conn.execute(sql)
        if cursor.description is None:
            raise ExecutionError("not a query: the statement returns no columns", "exec_error")
        columns = tuple(d[0] for d in cursor.description)
        rows, truncated = _fetch(cursor, max_rows, max_bytes)
    except sqlite3.Error as e:
        if getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_INTERRUPT:
            raise ExecutionError(f"timed out after {timeout_s:g} s", "timeout") from e
        raise ExecutionError(str(e), "exec_error") from e
    except UnicodeEncodeError as e:  # lone surrogates in the SQL text
        raise ExecutionError(f"SQL is not valid Unicode: {e}", "exec_error") from e
    finally:
        conn.close()
    return QueryResult(columns=columns, rows=tuple(rows), truncated=truncated)


def _fetch(cursor: sqlite3.Cursor, max_rows: int, max_bytes: int) -> tuple[list[tuple[Any, ...]], bool]:
    """Up to max_rows rows and whether more followed, read one at a time so that the byte budget
    is checked before the next row is read."""
    rows: list[tuple[Any, ...]] = []
    used = 0
    for row in cursor:
        if len(rows) == max_rows:
            return rows, True
        used += sum(_NUMBER_BYTES if v is None or type(v) in (int, float) else len(v) for v in row)
        if used > max_bytes:
            raise ExecutionError(
                f"the result holds more than {max_bytes:,} bytes (at row {len(rows) + 1}); select"
                " fewer or smaller values", "exec_error",
            )
        rows.append(row)
    return rows, False


def _authorize(action: int, arg1: str | None, arg2: str | None, db: str | None,
               source: str | None) -> int:
    """Allow only what a read needs: an allow-list, so an action we did not foresee is denied."""
    if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE):
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION:
        return sqlite3.SQLITE_DENY if arg2 in _DENIED_FUNCTIONS else sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA and arg1 is not None and arg1.lower() in _SCHEMA_PRAGMAS:
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY
