"""Time to generate the synthetic benchmark at scale (target: 100,000 examples well under a minute).

    python -m benchmarks.synthetic --examples 100000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from pipesql.params.download import SyntheticDataParams
from pipesql.sources.synthetic import generate_synthetic


def bench_synthetic_generation(n_examples: int = 100_000, runs: int = 3) -> dict[str, Any]:
    seconds = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            examples, _ = generate_synthetic(SyntheticDataParams(n_examples=n_examples), 0, Path(tmp))
            seconds.append(time.perf_counter() - start)
    assert len(examples) == n_examples
    median = statistics.median(seconds)
    return {
        "examples": n_examples,
        "runs": runs,
        "median_s": round(median, 2),
        "examples_per_s": round(n_examples / median),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(bench_synthetic_generation(args.examples, args.runs), indent=2))


if __name__ == "__main__":
    main()
