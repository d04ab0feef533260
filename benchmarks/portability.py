"""Does the golden pipe SQL run on real pipe engines, and answer as the SQLite gold does?

    python -m benchmarks.portability --spider ../shared/spider-train
    python -m benchmarks.portability --synthetic 6000 --engines sqlite spark

Per engine: the share of pairs whose pipe SQL runs and returns the gold's rows, as golden_pairs
judges it (SQLite's rows, or else the gold's own rows on that engine), of all pairs whose gold runs
on SQLite and of those whose gold also runs on that engine; beside it, the shares that match
SQLite's rows and the gold's rows on the engine separately; the failures by category (Spark's error
class) with one example each, and seconds per query. SQLite runs the lowered pipe SQL, as
golden_pairs does; Spark runs the pipe SQL text itself and the gold too.
Spider-train: `gold.tsv` (gold SQL <TAB> db_id) beside `database/<db_id>/<db_id>.sqlite`.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm import tqdm

from benchmarks.golden_pairs import _spider_examples
from pipesql.engines import open_engine
from pipesql.params.download import SyntheticDataParams
from pipesql.sources.raw import Example, database_path, write_raw
from pipesql.sql.compare import is_ordered, results_match
from pipesql.sql.decompile import decompile
from pipesql.sql.execute import ExecutionError, execute_safely
from pipesql.sql.lower import lower_to_sqlite
from pipesql.sql.pipe import operator_name, split_operators
from pipesql.sql.schema import read_schema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spider", type=Path, help="a directory with gold.tsv and database/")
    parser.add_argument("--synthetic", type=int, default=0, help="examples of synthetic data")
    parser.add_argument("--engines", nargs="+", default=["sqlite", "spark"])
    parser.add_argument("--sample", type=int, help="a seeded random sample of this many pairs")
    parser.add_argument("--timeout-s", type=float, default=5.0)
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args()
    if not args.spider and not args.synthetic:
        parser.error("give --spider DIR, --synthetic N, or both")
    summary: dict[str, Any] = {}
    if args.spider:
        examples = _sample(_spider_examples(args.spider), args.sample)
        summary["spider"] = portability(examples, args.spider, args.engines, args.timeout_s)
    if args.synthetic:
        from pipesql.sources.synthetic import generate_synthetic

        with tempfile.TemporaryDirectory() as tmp:
            params = SyntheticDataParams(n_examples=args.synthetic)
            examples, dbs = generate_synthetic(params, 0, Path(tmp) / "gen")
            write_raw(Path(tmp) / "raw", examples, dbs)
            examples = _sample(examples, args.sample)
            summary["synthetic"] = portability(examples, Path(tmp) / "raw", args.engines, args.timeout_s)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


def portability(
    examples: list[Example], raw_dir: Path, engines: list[str], timeout_s: float
) -> dict[str, Any]:
    """Decompile each example whose gold runs on SQLite, then check it on every engine."""
    pairs = []
    distinct_ops = 0
    for ex in tqdm(examples, desc="decompile", unit="query", mininterval=1.0):
        db_path = database_path(raw_dir, ex.db_id)
        try:
            gold = execute_safely(db_path, ex.gold_sql, timeout_s=timeout_s)
            pipe_sql = decompile(ex.gold_sql, schema=read_schema(db_path))
        except Exception:  # a gold that fails, or one the decompiler refuses, is not measured here
            continue
        distinct_ops += any(operator_name(op) == "DISTINCT" for op in split_operators(pipe_sql))
        pairs.append((ex, db_path, gold, pipe_sql))
    pairs.sort(key=lambda p: p[0].db_id)  # one database loaded at a time on engines that load
    report = {"pairs": len(pairs), "distinct_operators": distinct_ops}
    for engine in engines:
        report[engine] = _check(engine, pairs, timeout_s)
    return report


def _check(engine: str, pairs: list[tuple], timeout_s: float) -> dict[str, Any]:
    failures: Counter[str] = Counter()
    examples: dict[str, dict[str, str]] = {}
    passed = gold_runs = passed_of_gold_runs = agrees = on_sqlite_rows = 0
    seconds = 0.0
    runner = open_engine(engine) if engine != "sqlite" else None
    try:
        for ex, db_path, gold, pipe_sql in tqdm(pairs, desc=engine, unit="query", mininterval=1.0):
            gold_ok, engine_gold = True, gold
            if runner is not None:
                try:
                    engine_gold = runner.run(db_path, ex.gold_sql, timeout_s=timeout_s)
                except ExecutionError:
                    gold_ok = False
            gold_runs += gold_ok
            start = time.perf_counter()
            try:
                if runner is None:
                    pred = execute_safely(db_path, lower_to_sqlite(pipe_sql), timeout_s=timeout_s)
                else:
                    pred = runner.run(db_path, pipe_sql, timeout_s=timeout_s)
                ordered = is_ordered(ex.gold_sql)
                matches_sqlite = results_match(gold, pred, ordered=ordered)
                matches_engine = gold_ok and results_match(engine_gold, pred, ordered=ordered)
                on_sqlite_rows += gold_ok and matches_sqlite
                agrees += matches_engine
                verdict = "ok" if matches_sqlite or matches_engine else "mismatch"
            except ExecutionError as e:
                verdict = getattr(e, "error_class", None) or e.category
                error = str(e)
            seconds += time.perf_counter() - start
            if verdict == "ok":
                passed += 1
                passed_of_gold_runs += gold_ok
                continue
            key = verdict if gold_ok else f"{verdict} (gold fails too)"
            failures[key] += 1
            examples.setdefault(key, {"gold_sql": ex.gold_sql, "pipe_sql": pipe_sql,
                                      "error": error[:300] if verdict != "mismatch" else ""})
    finally:
        if runner is not None:
            runner.close()
    n = len(pairs)
    return {
        "runs_and_matches": passed,
        "share": round(passed / n, 4) if n else 0.0,
        "golds_that_run": gold_runs,
        "share_of_golds_that_run": round(passed_of_gold_runs / gold_runs, 4) if gold_runs else 0.0,
        # the two references apart: SQLite's rows (which the engine may answer otherwise: ties
        # under LIMIT, integer division, SQLite's '' > 8), and the gold's rows on the engine
        "matches_sqlite_rows_of_golds_that_run": round(on_sqlite_rows / gold_runs, 4) if gold_runs else 0.0,
        "agrees_with_gold_on_engine": round(agrees / gold_runs, 4) if gold_runs else 0.0,
        "seconds_per_query": round(seconds / n, 4) if n else 0.0,
        "failures": dict(failures.most_common()),
        "examples_of_failures": {k: examples[k] for k, _ in failures.most_common()},
    }


def _sample(examples: list[Example], n: int | None) -> list[Example]:
    return random.Random(0).sample(examples, n) if n and n < len(examples) else examples


if __name__ == "__main__":
    main()
