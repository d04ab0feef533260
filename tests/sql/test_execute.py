"""execute_safely: hostile SQL leaves the database untouched and every call meets its deadline."""

from __future__ import annotations

import hashlib
import pickle
import re
import sqlite3
import time
import tracemalloc
from pathlib import Path

import pytest

from pipesql.sql.execute import MAX_RESULT_BYTES, ExecutionError, QueryResult, execute_safely

TIMEOUT_S = 0.5
MARGIN_S = 0.25  # scheduling slack on a busy 2-core machine; SQLite itself stops within ~1 ms


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 2000-row tables (their cartesian product has 8e9 rows) and one non-UTF-8 value."""
    path = tmp_path_factory.mktemp("db") / "shop.sqlite"
    with sqlite3.connect(path) as conn:
        for table in ("a", "b", "c"):
            conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, v TEXT)")
            rows = [(f"x{i}",) for i in range(2000)]
            conn.executemany(f"INSERT INTO {table} (v) VALUES (?)", rows)
        conn.execute("CREATE INDEX a_v ON a (v)")
        conn.execute("CREATE TABLE latin (name TEXT)")
        conn.execute("INSERT INTO latin VALUES (CAST(X'436166E9' AS TEXT))")  # "Café" in Latin-1
    conn.close()
    return path


def _snapshot(db_path: Path) -> tuple[str, list[str]]:
    """The database's hash and its folder's listing: a write or a new file changes one of them."""
    digest = hashlib.sha256(db_path.read_bytes()).hexdigest()
    return digest, sorted(p.name for p in db_path.parent.iterdir())


# (title, sql, category)
HOSTILE = [
    ("drop", "DROP TABLE a", "exec_error"),
    ("delete", "DELETE FROM a", "exec_error"),
    ("insert", "INSERT INTO a (v) VALUES ('y')", "exec_error"),
    ("update", "UPDATE a SET v = 'z'", "exec_error"),
    ("attach a new file", "ATTACH DATABASE '{dir}/new.sqlite' AS n", "exec_error"),
    ("vacuum into a new file", "VACUUM INTO '{dir}/copy.sqlite'", "exec_error"),
    ("writable_schema", "PRAGMA writable_schema = 1", "exec_error"),
    ("journal_mode", "PRAGMA journal_mode = WAL", "exec_error"),
    ("query_only off", "PRAGMA query_only = 0", "exec_error"),
    ("temp table", "CREATE TEMP TABLE t AS SELECT * FROM a", "exec_error"),
    ("load_extension", "SELECT load_extension('libevil')", "exec_error"),
    ("a second statement", "SELECT 1; DROP TABLE a", "exec_error"),
    ("a gigabyte value", "SELECT randomblob(1000000000)", "exec_error"),
    ("recursive CTE that never ends",
     "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT COUNT(*) FROM r",
     "timeout"),
    ("cartesian product", "SELECT COUNT(*) FROM a, b, c", "timeout"),
    ("cartesian product, sorted", "SELECT * FROM a, b, c ORDER BY random() LIMIT 1", "timeout"),
]


@pytest.mark.parametrize(("sql", "category"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_sql_is_refused_in_time(db_path: Path, sql: str, category: str) -> None:
    before = _snapshot(db_path)
    start = time.monotonic()
    with pytest.raises(ExecutionError) as info:
        execute_safely(db_path, sql.format(dir=db_path.parent), timeout_s=TIMEOUT_S)
    assert time.monotonic() - start < TIMEOUT_S + MARGIN_S
    assert info.value.category == category, info.value
    assert _snapshot(db_path) == before


def test_deadline_covers_fetching(db_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(ExecutionError) as info:
        execute_safely(db_path, "SELECT * FROM a, b, c", timeout_s=TIMEOUT_S, max_rows=10**9)
    assert time.monotonic() - start < TIMEOUT_S + MARGIN_S
    assert info.value.category == "timeout"


def test_reads_columns_and_rows(db_path: Path) -> None:
    result = execute_safely(db_path, "SELECT id, v AS value FROM a ORDER BY id LIMIT 2")
    assert result == QueryResult(("id", "value"), ((1, "x0"), (2, "x1")), truncated=False)


def test_max_rows_truncates(db_path: Path) -> None:
    cut = execute_safely(db_path, "SELECT id FROM a", max_rows=10)
    assert (len(cut.rows), cut.truncated) == (10, True)
    whole = execute_safely(db_path, "SELECT id FROM a", max_rows=2000)
    assert (len(whole.rows), whole.truncated) == (2000, False)


# (sql, max_bytes, error or None): text and blobs count their length, numbers and NULL 8 bytes
BYTE_CAP = [
    ("SELECT v FROM a ORDER BY id LIMIT 3", 6, None),                    # 'x0' 'x1' 'x2': 6 bytes
    ("SELECT v FROM a ORDER BY id LIMIT 3", 5, "more than 5 bytes (at row 3)"),
    ("SELECT id, NULL FROM a ORDER BY id LIMIT 2", 32, None),
    ("SELECT id, NULL FROM a ORDER BY id LIMIT 2", 31, "more than 31 bytes (at row 2)"),
    ("SELECT zeroblob(11)", 10, "more than 10 bytes (at row 1)"),
    ("SELECT zeroblob(20000000)", 16_000_000, "string or blob too big"),  # SQLite will not build it
    ("SELECT v FROM a", 10**9, None),
]


@pytest.mark.parametrize(("sql", "max_bytes", "error"), BYTE_CAP)
def test_a_result_over_its_byte_cap_is_an_error(db_path: Path, sql: str, max_bytes: int, error: str | None) -> None:
    if error is None:
        assert execute_safely(db_path, sql, max_bytes=max_bytes).rows
        return
    with pytest.raises(ExecutionError, match=re.escape(error)) as info:
        execute_safely(db_path, sql, max_bytes=max_bytes)
    assert info.value.category == "exec_error"


def test_rows_cut_by_max_rows_do_not_count_against_the_bytes(db_path: Path) -> None:
    result = execute_safely(db_path, "SELECT v FROM a ORDER BY id", max_rows=2, max_bytes=4)
    assert (result.rows, result.truncated) == ((("x0",), ("x1",)), True)


def test_huge_values_on_every_row_stop_at_the_default_cap_not_out_of_memory(db_path: Path) -> None:
    """2,000 rows of 30 MB (60 GB) within the deadline: stopped after the cap's worth of rows."""
    tracemalloc.start()
    try:
        with pytest.raises(ExecutionError, match="bytes") as info:
            execute_safely(db_path, "SELECT zeroblob(30000000) FROM a", timeout_s=60)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.category == "exec_error"
    assert peak < MAX_RESULT_BYTES + 2 * 30_000_000


def test_non_utf8_text_decodes(db_path: Path) -> None:
    assert execute_safely(db_path, "SELECT name FROM latin").rows == (("Caf\ufffd",),)


def test_schema_pragmas_are_allowed(db_path: Path) -> None:
    info = execute_safely(db_path, "PRAGMA table_info(a)")
    assert [row[1] for row in info.rows] == ["id", "v"]
    assert [row[1] for row in execute_safely(db_path, "PRAGMA index_list(a)").rows] == ["a_v"]
    assert execute_safely(db_path, "PRAGMA foreign_key_list(a)").rows == ()


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT nope FROM a", "no such column: nope"),
        ("", "not a query"),
        ("-- nothing", "not a query"),
    ],
)
def test_errors_carry_sqlites_message(db_path: Path, sql: str, message: str) -> None:
    with pytest.raises(ExecutionError, match=message) as info:
        execute_safely(db_path, sql)
    assert info.value.category == "exec_error"


def test_missing_database_is_an_error_not_a_new_file(tmp_path: Path) -> None:
    missing = tmp_path / "gone.sqlite"
    with pytest.raises(ExecutionError, match="gone.sqlite") as info:
        execute_safely(missing, "SELECT 1")
    assert info.value.category == "exec_error"
    assert not missing.exists()


def test_execution_error_pickles_with_its_category() -> None:
    """golden_pairs runs queries in worker processes, which send errors back pickled."""
    error = pickle.loads(pickle.dumps(ExecutionError("timed out after 5 s", "timeout")))
    assert (str(error), error.category) == ("timed out after 5 s", "timeout")
