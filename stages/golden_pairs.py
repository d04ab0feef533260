"""golden_pairs stage: gold SQL decompiled to pipe SQL, kept only when execution proves it equal.

    python -m stages.golden_pairs data/raw data/golden
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pipesql.golden import build_golden_pairs
from pipesql.io import write_metrics
from pipesql.params.base import load_section
from pipesql.params.golden_pairs import GoldenPairsParams
from pipesql.sources.raw import count_examples, read_examples
from pipesql.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description="Build validated golden pairs.")
    parser.add_argument("raw_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    params = load_section("golden_pairs", GoldenPairsParams, args.params)

    total = count_examples(args.raw_dir)
    start = time.perf_counter()
    examples = (ex for _, ex in read_examples(args.raw_dir))
    result = build_golden_pairs(examples, args.raw_dir, params, total=total)
    elapsed = time.perf_counter() - start
    result.write(args.out_dir)
    metrics = result.metrics
    write_metrics("golden_pairs", metrics)
    print(f"kept {metrics['kept']}/{metrics['total']} (coverage {metrics['coverage']:.2%}) "
          f"in {elapsed:.1f}s; rejected: {metrics['rejected']}")


if __name__ == "__main__":
    run_stage(main)
