"""Golden-pair coverage and throughput on SQL nobody here wrote, and on a large synthetic set.

    python -m benchmarks.golden_pairs --spider ../shared/spider-train
    python -m benchmarks.golden_pairs --synthetic 20000 --workers 2

Spider-train: `gold.tsv` (gold SQL <TAB> db_id) beside `database/<db_id>/<db_id>.sqlite`.
Coverage is kept / (total - gold_error): a gold query that fails on its own database is the
data's fault. Prints a JSON summary (and writes it with --json).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pipesql.golden import GoldenResult, build_golden_pairs
from pipesql.params.download import SyntheticDataParams
from pipesql.params.golden_pairs import GoldenPairsParams
from pipesql.sources.raw import Example, write_raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spider", type=Path, help="a directory with gold.tsv and database/")
    parser.add_argument("--synthetic", type=int, default=0, help="examples of synthetic data")
    parser.add_argument("--workers", type=int, default=None, help="default: all cores")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args()
    if not args.spider and not args.synthetic:
        parser.error("give --spider DIR, --synthetic N, or both")
    params = GoldenPairsParams(workers=args.workers)
    summary: dict[str, Any] = {}
    if args.spider:
        summary["spider_train"] = _run(_spider_examples(args.spider), args.spider, params)
    if args.synthetic:
        summary["synthetic"] = _run_synthetic(args.synthetic, params)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


def bench_spider(root: Path, workers: int | None = None) -> dict[str, Any]:
    return _run(_spider_examples(root), root, GoldenPairsParams(workers=workers))


def bench_synthetic(n: int, workers: int | None = None) -> dict[str, Any]:
    return _run_synthetic(n, GoldenPairsParams(workers=workers))


def _spider_examples(root: Path) -> list[Example]:
    path = root / "gold.tsv"
    if not path.exists():
        sys.exit(f"{path}: not found (expected 'gold SQL<TAB>db_id' lines)")
    examples = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            sql, db_id = line.rsplit("\t", 1)
            examples.append(Example(f"spider-train-{lineno:05d}", db_id.strip(), "", sql))
    return examples


def _run_synthetic(n: int, params: GoldenPairsParams) -> dict[str, Any]:
    from pipesql.sources.synthetic import generate_synthetic

    with tempfile.TemporaryDirectory() as tmp:
        examples, dbs = generate_synthetic(SyntheticDataParams(n_examples=n), 0, Path(tmp) / "gen")
        write_raw(Path(tmp) / "raw", examples, dbs)
        return _run(examples, Path(tmp) / "raw", params)


def _run(examples: list[Example], raw_dir: Path, params: GoldenPairsParams) -> dict[str, Any]:
    start = time.perf_counter()
    result = build_golden_pairs(examples, raw_dir, params, total=len(examples))
    elapsed = time.perf_counter() - start
    metrics = result.metrics
    return {
        "queries": metrics["total"],
        "gold_error": metrics["rejected"]["gold_error"],
        "kept": metrics["kept"],
        "coverage": metrics["coverage"],
        "seconds": round(elapsed, 2),
        "queries_per_s": round(metrics["total"] / elapsed, 1),
        "workers": params.workers or "all cores",
        "rejected": {k: v for k, v in metrics["rejected"].items() if v},
        "examples_of_failures": _failure_examples(result),
    }


def _failure_examples(result: GoldenResult) -> dict[str, dict[str, str]]:
    """One example per rejection category (not gold_error), the most frequent first."""
    failed = [o for o in result.outcomes if not o.is_kept and o.category != "gold_error"]
    counts = Counter(o.category for o in failed)
    firsts = {}
    for o in failed:
        firsts.setdefault(o.category, o)
    return {
        c: {"gold_sql": firsts[c].example.gold_sql, "pipe_sql": firsts[c].pipe_sql or "",
            "error": (firsts[c].error or "")[:300]}
        for c, _ in counts.most_common()
    }


if __name__ == "__main__":
    main()
