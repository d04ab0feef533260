"""Golden pairs: each gold query decompiled to pipe SQL, kept only when execution proves it equal.

Everything the model learns comes from these pairs, so a pair is kept only when its pipe SQL,
lowered to SQLite, returns the same result as the gold SQL on the example's own database, and
then, for each further engine of `golden_pairs.engines` (Spark), when the pipe SQL itself runs
there and returns the gold's rows: SQLite's, or where the engine answers the gold itself otherwise
(ties under LIMIT broken another way, SQLite's integer division and cross-type comparisons), the
gold's rows on that engine, so that the pair is proved faithful on each. Every other outcome is a rejection with a category (and the
engine that rejected it), so one bad example never stops the run; an engine that cannot start
stops it before anything is written.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipesql.io import atomic_path, write_jsonl
from pipesql.params.golden_pairs import GoldenPairsParams
from pipesql.sources.raw import Example, database_path
from pipesql.sql.compare import is_ordered, results_match
from pipesql.sql.decompile import DecompileError, decompile
from pipesql.sql.execute import ExecutionError, execute_safely
from pipesql.sql.lower import LoweringError, lower_to_sqlite
from pipesql.sql.pipe import operator_name, split_operators
from pipesql.sql.schema import Schema, read_schema

PAIRS_FILE = "pairs.jsonl"
REJECTED_FILE = "rejected.jsonl"
CATEGORIES = (
    "gold_error",       # the gold query fails on its own database (or the database is missing)
    "parse_error",      # sqlglot cannot parse the gold query
    "unsupported",      # a construct the decompiler cannot express in pipe syntax
    "lowering_error",   # the pipe query does not lower to SQLite
    "exec_error",       # the lowered pipe query fails on the database
    "timeout",          # gold or pipe query ran past golden_pairs.timeout_s
    "mismatch",         # both ran; the results differ
)
# On an engine beside SQLite, a pair whose pipe SQL fails there is a gold_error when the gold
# fails there too (the gold is not portable) and an exec_error when only the pipe SQL fails.
ENGINE_CATEGORIES = ("gold_error", "exec_error", "timeout", "mismatch")


@dataclass(frozen=True)
class Outcome:
    """What happened to one example: a kept pair, or a rejection with its category."""

    example: Example
    pipe_sql: str | None = None
    ops: tuple[str, ...] = ()
    category: str | None = None   # None when kept
    error: str | None = None
    engine: str = "sqlite"        # the engine whose run decided a rejection
    error_class: str | None = None  # the engine's own error class (Spark's condition)
    # engines where the gold and the pipe SQL agree with each other but not with SQLite's rows
    differs_from_sqlite: tuple[str, ...] = ()

    @property
    def is_kept(self) -> bool:
        return self.category is None

    def to_json(self) -> dict[str, Any]:
        row = self.example.to_json()
        if self.is_kept:
            differs = {"differs_from_sqlite": list(self.differs_from_sqlite)} if self.differs_from_sqlite else {}
            return {**row, "pipe_sql": self.pipe_sql, "ops": list(self.ops), **differs}
        extra = {"pipe_sql": self.pipe_sql} if self.pipe_sql else {}
        engine = {"engine": self.engine, "error_class": self.error_class} if self.engine != "sqlite" else {}
        return {**row, **extra, "category": self.category, "error": self.error, **engine}


@dataclass
class GoldenResult:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def kept(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.is_kept]

    def write(self, out_dir: Path) -> None:
        """pairs.jsonl and rejected.jsonl, in input order, replacing out_dir only when both are done."""
        with atomic_path(Path(out_dir)) as tmp:
            tmp.mkdir(parents=True)
            write_jsonl(tmp / PAIRS_FILE, (o.to_json() for o in self.outcomes if o.is_kept))
            write_jsonl(tmp / REJECTED_FILE, (o.to_json() for o in self.outcomes if not o.is_kept))

    engines: tuple[str, ...] = ("sqlite",)

    @property
    def metrics(self) -> dict[str, Any]:
        """Totals over all engines; `rejected` counts SQLite's verdicts, `engines` each engine's."""
        total = len(self.outcomes)
        rejected = Counter(o.category for o in self.outcomes if not o.is_kept and o.engine == "sqlite")
        kept = self.kept
        checkable = total - rejected["gold_error"]
        return {
            "total": total,
            "kept": len(kept),
            "coverage": round(len(kept) / checkable, 4) if checkable else 0.0,
            "rejected": {c: rejected[c] for c in CATEGORIES},
            "engines": {e: self._engine_metrics(e) for e in self.engines},
            "operators": dict(sorted(Counter(op for o in kept for op in o.ops).items())),
            "pairs_by_num_operators": {
                str(n): c for n, c in sorted(Counter(len(o.ops) for o in kept).items())
            },
        }


    def _engine_metrics(self, engine: str) -> dict[str, Any]:
        """SQLite: the pairs it proved. Others: of the pairs SQLite proved, how many run and match."""
        if engine == "sqlite":
            proved = sum(1 for o in self.outcomes if o.is_kept or o.engine != "sqlite")
            return {"kept": proved}
        mine = [o for o in self.outcomes if o.engine == engine and not o.is_kept]
        later = [o for o in self.outcomes if o.is_kept or self.engines.index(o.engine) > self.engines.index(engine)]
        checked = len(mine) + len(later)
        rejected = Counter(o.category for o in mine)
        gold_runs = checked - rejected["gold_error"]
        return {
            "checked": checked,
            "kept": len(later),
            "pass_rate": round(len(later) / checked, 4) if checked else 0.0,
            "pass_rate_of_portable_golds": round(len(later) / gold_runs, 4) if gold_runs else 0.0,
            # kept on the gold's own rows there, which differ from SQLite's
            "differs_from_sqlite": sum(engine in o.differs_from_sqlite for o in later),
            "rejected": {c: rejected[c] for c in ENGINE_CATEGORIES},
            "error_classes": dict(Counter(o.error_class for o in mine if o.error_class).most_common()),
        }


def build_golden_pairs(
    examples: Iterable[Example], raw_dir: Path, params: GoldenPairsParams, total: int | None = None
) -> GoldenResult:
    """Decompile and validate every example in parallel; outcomes keep the input order.

    The input is streamed to the workers, and `imap` hands results back in input order, so the
    output files are the same whatever the number of workers.
    """
    workers = params.workers or os.cpu_count() or 1
    check = partial(validate_example, raw_dir=Path(raw_dir), params=params)
    bar = tqdm(total=total, desc="golden pairs", unit="query", mininterval=1.0)
    result = GoldenResult(engines=params.engines)
    with bar:
        for outcome in _map(check, examples, workers):
            result.outcomes.append(outcome)
            bar.update()
    for engine in params.engines[1:]:
        check_on_engine(result.outcomes, engine, Path(raw_dir), params)
    return result


def check_on_engine(
    outcomes: list[Outcome], engine: str, raw_dir: Path, params: GoldenPairsParams
) -> None:
    """Run each kept pair's pipe SQL on `engine` (one session, databases in turn), in place.

    A pair is kept when the rows match the gold's SQLite rows, or else the gold's rows on the
    engine; when the pipe SQL fails, the gold is run there too, to tell an unportable gold from
    our own unportable spelling.
    """
    from pipesql.engines import open_engine

    kept = sorted((i for i, o in enumerate(outcomes) if o.is_kept), key=lambda i: outcomes[i].example.db_id)
    with open_engine(engine) as runner:
        for i in tqdm(kept, desc=f"golden pairs on {engine}", unit="query", mininterval=1.0):
            outcomes[i] = _engine_verdict(outcomes[i], runner, raw_dir, params)


def _engine_verdict(outcome: Outcome, runner: Any, raw_dir: Path, params: GoldenPairsParams) -> Outcome:
    example, pipe_sql = outcome.example, outcome.pipe_sql or ""
    db_path = database_path(raw_dir, example.db_id)
    limits = {"timeout_s": params.timeout_s, "max_rows": params.max_rows}
    gold = execute_safely(db_path, example.gold_sql, **limits)
    reject = partial(Outcome, example, pipe_sql, engine=runner.name)
    try:
        pred = runner.run(db_path, pipe_sql, **limits)
    except ExecutionError as e:
        error_class = getattr(e, "error_class", None)
        if e.category == "timeout":
            return reject(category="timeout", error=f"{runner.name} pipe: {e}")
        try:
            runner.run(db_path, example.gold_sql, **limits)
            category = "exec_error"
        except ExecutionError:
            category = "gold_error"
        return reject(category=category, error=f"{runner.name} pipe: {e}", error_class=error_class)
    ordered = is_ordered(example.gold_sql)
    if results_match(gold, pred, ordered=ordered, float_tol=params.float_tol):
        return outcome
    try:
        engine_gold = runner.run(db_path, example.gold_sql, **limits)
    except ExecutionError:
        engine_gold = None
    if engine_gold is None or not results_match(engine_gold, pred, ordered=ordered, float_tol=params.float_tol):
        on_engine = "fails" if engine_gold is None else f"{len(engine_gold.rows)} rows"
        return reject(category="mismatch",
                      error=f"{runner.name}: pipe {len(pred.rows)} rows differ from the gold's "
                            f"(SQLite {len(gold.rows)} rows, {runner.name} {on_engine})")
    return replace(outcome, differs_from_sqlite=(*outcome.differs_from_sqlite, runner.name))


def validate_example(example: Example, raw_dir: Path, params: GoldenPairsParams) -> Outcome:
    """Gold runs → decompile → lower → pipe runs → results equal; the first failure is the verdict."""
    db_path = database_path(raw_dir, example.db_id)
    if not db_path.exists():
        return Outcome(example, category="gold_error", error=f"database not found: {db_path}")
    run = partial(execute_safely, db_path, timeout_s=params.timeout_s, max_rows=params.max_rows)
    try:
        gold = run(example.gold_sql)
    except ExecutionError as e:
        category = "timeout" if e.category == "timeout" else "gold_error"
        return Outcome(example, category=category, error=f"gold: {e}")
    try:
        pipe_sql = decompile(example.gold_sql, schema=_schema(db_path))
    except DecompileError as e:
        return Outcome(example, category=e.category, error=str(e))
    except Exception as e:  # a sqlglot internal error must not stop the stage
        return Outcome(example, category="unsupported", error=f"{type(e).__name__}: {e}")
    try:
        lowered = lower_to_sqlite(pipe_sql)
        ops = tuple(operator_name(op) for op in split_operators(pipe_sql))
    except Exception as e:  # LoweringError, or sqlglot failing on our own output
        kind = "" if isinstance(e, LoweringError) else f"{type(e).__name__}: "
        return Outcome(example, pipe_sql, category="lowering_error", error=f"{kind}{e}")
    try:
        pred = run(lowered)
    except ExecutionError as e:
        return Outcome(example, pipe_sql, category=e.category, error=f"pipe: {e}")
    if gold.truncated:
        return Outcome(example, pipe_sql, category="mismatch",
                       error=f"gold result exceeds golden_pairs.max_rows={params.max_rows}")
    if not results_match(gold, pred, ordered=is_ordered(example.gold_sql), float_tol=params.float_tol):
        return Outcome(example, pipe_sql, category="mismatch",
                       error=f"gold {len(gold.rows)} rows, pipe {len(pred.rows)} rows differ")
    return Outcome(example, pipe_sql, ops)


@functools.lru_cache(maxsize=64)
def _schema(db_path: Path) -> Schema:
    """Read once per database and process: the portable rewrites consult it for every query."""
    return read_schema(db_path)


def _map(fn: Any, items: Iterable[Example], workers: int) -> Iterator[Outcome]:
    if workers == 1:
        yield from map(fn, items)
        return
    # fork: workers inherit the imported sqlglot instead of re-importing it (start-up cost).
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers) as pool:
        yield from pool.imap(fn, items, chunksize=16)
