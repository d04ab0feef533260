"""merge stage: the adapter merged into the unquantized base, checked against base + adapter.

    python -m stages.merge models/base models/adapter data/samples models/merged
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipesql.io import write_metrics
from pipesql.params.base import load_section
from pipesql.params.merge import MergeParams
from pipesql.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description="Merge the adapter into the base model.")
    parser.add_argument("base_dir", type=Path)
    parser.add_argument("adapter_dir", type=Path)
    parser.add_argument("samples_dir", type=Path, help="its test prompts check the merged logits")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    params = load_section("merge", MergeParams, args.params)

    from pipesql.merge import merge_adapter  # torch: imported once the params are known good

    metrics = merge_adapter(args.base_dir, args.adapter_dir, args.samples_dir, args.out_dir, params)
    write_metrics("merge", metrics)
    print(f"merged into {args.out_dir} ({metrics['dtype']}, {metrics['parameters']:,} parameters);"
          f" largest logit difference {metrics['max_abs_logit_diff']:.3g}"
          f" (tolerance {metrics['tolerance']:g}) over {metrics['compared_positions']} positions")


if __name__ == "__main__":
    run_stage(main)
