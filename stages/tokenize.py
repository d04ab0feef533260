"""tokenize stage: golden pairs into train/dev/test samples, in the base model's chat template.

    python -m stages.tokenize data/golden data/raw models/base data/samples
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pipesql.io import write_metrics
from pipesql.params.base import load_section
from pipesql.params.tokenize import TokenizeParams
from pipesql.samples import build_samples
from pipesql.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description="Split, build and tokenize training samples.")
    parser.add_argument("golden_dir", type=Path)
    parser.add_argument("raw_dir", type=Path)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    params = load_section("tokenize", TokenizeParams, args.params)

    start = time.perf_counter()
    metrics = build_samples(args.golden_dir, args.raw_dir, args.model_dir, params, args.out_dir)
    elapsed = time.perf_counter() - start
    write_metrics("tokenize", metrics)
    samples = {name: counts["total"] for name, counts in metrics["samples"].items()}
    print(f"samples {samples} from pairs {metrics['pairs']} in {elapsed:.1f}s "
          f"({sum(samples.values()) / elapsed:.0f}/s); dropped for length: "
          f"{metrics['dropped_for_length']['total']}")


if __name__ == "__main__":
    run_stage(main)
