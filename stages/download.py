"""download stage: raw benchmark data into data/raw/, the base model into models/base/.

Two items of one DVC `foreach` stage, so that a model param never re-fetches data and a data
param never re-fetches a hub model:

    python -m stages.download data --out data/raw
    python -m stages.download model --raw data/raw --out models/base
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipesql.io import write_metrics
from pipesql.params.base import load_section
from pipesql.params.download import DownloadParams
from pipesql.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description="Fetch raw data or the base model.")
    parser.add_argument("item", choices=["data", "model"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--raw", type=Path, help="data/raw: the scratch tokenizer's corpus")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/download"),
                        help="downloads and caches kept between runs (resumable)")
    args = parser.parse_args()
    params = load_section("download", DownloadParams, args.params)

    if args.item == "data":
        from pipesql.sources import fetch_data

        write_metrics("download", fetch_data(params.data, args.out, args.cache_dir))
    else:
        from pipesql.basemodel import prepare_base_model

        if args.raw is None:
            parser.error("the model item needs --raw (the raw data directory)")
        write_metrics("download_model", prepare_base_model(params.model, args.raw, args.out))


if __name__ == "__main__":
    run_stage(main)
