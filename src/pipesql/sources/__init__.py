"""Data sources: each reads one benchmark layout and yields canonical Examples plus databases."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipesql.sources.raw import Example, write_raw

if TYPE_CHECKING:  # the stages that read data/raw import this package, and need no download params
    from pipesql.params.download import DataParams


def fetch_data(params: DataParams, out_dir: Path, cache_dir: Path | None = None) -> dict[str, Any]:
    """Read `params.source` and write the canonical raw layout at out_dir; return its summary.

    cache_dir keeps downloads and dataset caches between runs, so an interrupted url download
    resumes; without one they go to a temporary directory that is removed afterwards.
    """
    with tempfile.TemporaryDirectory(prefix="pipesql-download-") as tmp:
        cache = Path(cache_dir) if cache_dir else Path(tmp) / "cache"
        examples, databases = _read(params, cache, Path(tmp))
        summary = write_raw(out_dir, examples, databases)
    return {"source": params.source, **summary}


def _read(params: DataParams, cache: Path, tmp: Path) -> tuple[list[Example], dict[str, Path]]:
    if params.source == "synthetic":
        from pipesql.sources.synthetic import generate_synthetic

        return generate_synthetic(params.synthetic, params.seed, tmp / "synthetic")
    if params.source == "spider":
        from pipesql.sources.spider import read_spider

        return read_spider(Path(params.path))  # type: ignore[arg-type]
    if params.source == "bird":
        from pipesql.sources.bird import read_bird

        return read_bird(Path(params.path))  # type: ignore[arg-type]
    if params.source == "url":
        from pipesql.sources.url import fetch_url_dataset

        return fetch_url_dataset(params.url, cache / "url")
    from pipesql.sources.hf import read_hf

    return read_hf(params.hf, cache_dir=cache / "hf")
