"""Pipe SQL on Apache Spark 4 (local mode, ANSI on): one session serves a whole stage.

Each SQLite database is loaded as temporary views named like its tables (`tables.py` gives each
column one type), so the same query text runs on SQLite and on Spark. Every query is time-boxed
as `execute_safely` boxes SQLite's: past its deadline its Spark jobs are cancelled and the query
is a timeout. A query Spark rejects raises `ExecutionError` whose message starts with Spark's
error class (`[UNRESOLVED_COLUMN.WITH_SUGGESTION] ...`), kept as `SparkQueryError.error_class`.

A Spark that cannot start is one `EngineError` naming what to install or fix (a missing Java or
pyspark, a JVM that never reports back within `start_timeout_s`), never a hang.
"""

from __future__ import annotations

import datetime
import decimal
import logging
import os
import shutil
import threading
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

from pipesql.engines.tables import Table, read_tables
from pipesql.sql.execute import ExecutionError, QueryResult

INSTALL_JAVA = (
    "Spark needs a Java runtime (17 or newer) and none was found on PATH or in JAVA_HOME: "
    "install one (Debian/Ubuntu: `apt-get install openjdk-17-jre-headless`) or set JAVA_HOME"
)
INSTALL_PYSPARK = "Spark is an optional extra: install it with `pip install -e '.[spark]'`"


class EngineError(RuntimeError):
    """The engine cannot run at all (not installed, will not start): stop the stage."""


class SparkQueryError(ExecutionError):
    """A query Spark rejected; `error_class` is Spark's condition (`UNRESOLVED_COLUMN...`)."""

    def __init__(self, message: str, error_class: str) -> None:
        super().__init__(f"[{error_class}] {message}" if error_class else message, "exec_error")
        self.error_class = error_class


def java_available() -> bool:
    """A `java` on PATH or under JAVA_HOME: what pyspark launches the JVM with."""
    home = os.environ.get("JAVA_HOME")
    return bool(shutil.which("java") or (home and (Path(home) / "bin" / "java").exists()))


class SparkEngine:
    """A local Spark session; `run(db_path, sql)` loads that database's views on first use.

    Use as a context manager, or call `close()`: the JVM outlives nothing it was not asked to.
    """

    name = "spark"

    def __init__(self, *, start_timeout_s: float = 180.0, cached_databases: int = 4) -> None:
        self._session = _start_session(start_timeout_s)
        self._loaded: OrderedDict[Path, list[Any]] = OrderedDict()  # db -> DataFrames, LRU
        self._cached = cached_databases
        self._current: Path | None = None
        self._views: list[str] = []

    def __enter__(self) -> SparkEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.stop()

    def run(
        self, db_path: Path, sql: str, *, timeout_s: float = 5.0, max_rows: int = 100_000
    ) -> QueryResult:
        """Rows of `sql` over the database's tables; raises ExecutionError (timeout, rejection)."""
        self._use(Path(db_path))
        outcome: dict[str, Any] = {}
        group = f"pipesql-{uuid.uuid4().hex}"
        context = self._session.sparkContext

        def work() -> None:
            try:
                context.setJobGroup(group, "pipesql query", interruptOnCancel=True)
                frame = self._session.sql(sql)
                columns = tuple(frame.columns)
                rows = frame.limit(max_rows + 1).collect()
                outcome["result"] = (columns, rows)
            except Exception as error:  # reported to the caller's thread below
                outcome["error"] = error

        thread = threading.Thread(target=work, daemon=True, name=group)
        thread.start()
        thread.join(timeout_s)
        if thread.is_alive():
            context.cancelJobGroup(group)
            thread.join(5.0)
            raise ExecutionError(f"timed out after {timeout_s:g} s", "timeout")
        if "error" in outcome:
            raise _query_error(outcome["error"]) from outcome["error"]
        columns, rows = outcome["result"]
        values = tuple(tuple(_plain(v) for v in row) for row in rows[:max_rows])
        return QueryResult(columns=columns, rows=values, truncated=len(rows) > max_rows)

    def _use(self, db_path: Path) -> None:
        """Make `db_path`'s tables the views of the session (and only those)."""
        if db_path == self._current:
            return
        if not db_path.is_file():
            raise ExecutionError(f"{db_path}: no such database file", "exec_error")
        frames = self._loaded.pop(db_path, None)
        if frames is None:
            frames = [self._frame(t) for t in read_tables(db_path)]
        self._loaded[db_path] = frames
        while len(self._loaded) > self._cached:
            self._loaded.popitem(last=False)
        for view in self._views:
            self._session.catalog.dropTempView(view)  # the bare name: it is not parsed
        self._views = []
        for name, frame in frames:
            frame.createOrReplaceTempView(_quoted(name))  # parsed: quoted for odd names
            self._views.append(name)
        self._current = db_path

    def _frame(self, table: Table) -> tuple[str, Any]:
        """Through Arrow: a table the JVM holds itself (`LocalTableScan`). Python rows would make
        every query start Python workers to unpickle them (4x slower on a 67k-row table)."""
        import pyarrow as pa

        arrow_type = {"long": pa.int64(), "double": pa.float64(), "string": pa.string()}
        values = list(zip(*table.rows)) if table.rows else [() for _ in table.columns]
        arrays = [pa.array(list(v), type=arrow_type[t]) for v, t in zip(values, table.types)]
        data = pa.Table.from_arrays(arrays, names=list(table.columns))
        return table.name, self._session.createDataFrame(data)


def _start_session(timeout_s: float) -> Any:
    """A local[1] session (the machines are small) or EngineError within `timeout_s`."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as error:
        raise EngineError(INSTALL_PYSPARK) from error
    if not java_available():
        raise EngineError(INSTALL_JAVA)
    builder = (
        SparkSession.builder.master("local[1]")
        .appName("pipesql")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.ansi.enabled", "true")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.memory", os.environ.get("PIPESQL_SPARK_MEMORY", "2g"))
    )
    started: dict[str, Any] = {}

    def start() -> None:
        try:
            started["session"] = builder.getOrCreate()
        except Exception as error:
            started["error"] = error

    thread = threading.Thread(target=start, daemon=True, name="pipesql-spark-start")
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise EngineError(
            f"Spark did not start within {timeout_s:g} s: check that `java -version` works and "
            "that the JVM may listen on 127.0.0.1"
        )
    if "error" in started:
        error = started["error"]
        raise EngineError(f"Spark did not start: {type(error).__name__}: {error}") from error
    session = started["session"]
    session.sparkContext.setLogLevel("FATAL")  # rejections come back as exceptions, not logs
    _quiet_python_loggers()
    session.sql("SELECT 1").collect()  # the first job pays for code generation: not a query's box
    return session


def _quiet_python_loggers() -> None:
    """pyspark logs every rejected query with its JVM stack trace; the caller gets it anyway."""
    from pyspark.logger import PySparkLogger

    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        PySparkLogger.getLogger(name).setLevel(logging.CRITICAL)


def _query_error(error: Exception) -> ExecutionError:
    """Spark's exception -> SparkQueryError with its error class (a Python-side bug: none)."""
    condition = getattr(error, "getCondition", None) or getattr(error, "getErrorClass", None)
    error_class = (condition() if condition else None) or type(error).__name__
    message = next((line for line in str(error).splitlines() if line.strip()), "")
    if message.startswith(f"[{error_class}]"):
        message = message[len(error_class) + 2 :].strip()
    return SparkQueryError(message, error_class)


def _plain(value: Any) -> Any:
    """Spark's values as SQLite's: Decimal -> float, dates and times -> ISO text."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return value


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"
