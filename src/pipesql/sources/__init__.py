"""Data sources: each reads one benchmark layout and yields canonical Examples plus databases."""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipesql.io import DataError
from pipesql.sources.raw import Example, write_raw

if TYPE_CHECKING:  # the stages that read data/raw import this package, and need no download params
    from pipesql.params.download import DataParams, SourceBlock, SourceParams


@dataclass
class Read:
    """What a source yields. `skipped` counts what a release has broken, by reason; a streamed
    source fills it while `examples` is consumed."""

    examples: Iterable[Example]
    databases: dict[str, Path]
    skipped: Counter[str] = field(default_factory=Counter)


def fetch_data(params: DataParams, out_dir: Path, cache_dir: Path | None = None) -> dict[str, Any]:
    """Read the source (or every block of `params.sources`) and write the canonical raw layout at
    out_dir; return its summary.

    cache_dir keeps downloads and dataset caches between runs, so an interrupted url download
    resumes; without one they go to a temporary directory that is removed afterwards.
    """
    with tempfile.TemporaryDirectory(prefix="pipesql-download-") as tmp:
        cache = Path(cache_dir) if cache_dir else Path(tmp) / "cache"
        if not params.sources:
            read = _read(params, cache, Path(tmp))
            summary = write_raw(out_dir, read.examples, read.databases)
            return {"source": params.source, **summary, **_skipped({params.source: read.skipped})}
        reads = combine(params.sources, cache, Path(tmp))
        summary = write_raw(out_dir, reads.examples, reads.databases)
        sources = [block.namespace for block in params.sources]
        return {"sources": sources, **summary, **_skipped(reads.skipped_by_source)}


def _skipped(by_source: dict[str, Counter[str]]) -> dict[str, Any]:
    """`skipped: {source: {reason: n}}`, only where a source skipped something."""
    kept = {name: dict(sorted(c.items())) for name, c in by_source.items() if c}
    return {"skipped": kept} if kept else {}


@dataclass
class Combined:
    examples: Iterator[Example]
    databases: dict[str, Path]
    skipped_by_source: dict[str, Counter[str]]


def combine(blocks: Iterable[SourceBlock], cache: Path, tmp: Path) -> Combined:
    """Every block read, its db_ids and ids namespaced by its name, its examples streamed in order.

    Two blocks may share a name (BIRD's train and dev from two directories) as long as they
    write different databases; one written twice is an error naming both blocks and the db_id.
    Errors name the block (`download.data.sources[1] (bird)`), and come before anything is
    written or, for a streamed source, abort the write.
    """
    databases: dict[str, Path] = {}
    owner: dict[str, str] = {}
    streams: list[Iterator[Example]] = []
    skipped: dict[str, Counter[str]] = {}
    for index, block in enumerate(blocks):
        label = f"download.data.sources[{index}] ({block.namespace})"
        try:
            read = _read(block, cache / str(index), tmp / str(index))
        except DataError as e:
            raise DataError(f"{label}: {e}") from None
        for db_id, path in read.databases.items():
            key = f"{block.namespace}/{db_id}"
            if key in owner:
                raise DataError(
                    f"{label}: database {key!r} is also written by {owner[key]}; give one of"
                    " the two blocks another `name`"
                )
            owner[key] = label
            databases[key] = path
        skipped.setdefault(block.namespace, Counter())
        streams.append(_namespaced(read, block, label, skipped[block.namespace]))
    return Combined((ex for stream in streams for ex in stream), databases, skipped)


def _namespaced(read: Read, block: SourceBlock, label: str, skipped: Counter[str]) -> Iterator[Example]:
    ns = block.namespace
    try:
        for ex in read.examples:
            if block.splits is not None and ex.split not in block.splits:
                continue
            yield replace(ex, id=f"{ns}/{ex.id}", db_id=f"{ns}/{ex.db_id}", source=ns)
    except DataError as e:
        raise DataError(f"{label}: {e}") from None
    finally:
        skipped.update(read.skipped)


def _read(params: SourceParams, cache: Path, tmp: Path) -> Read:
    if params.source == "synthetic":
        from pipesql.sources.synthetic import generate_synthetic

        return Read(*generate_synthetic(params.synthetic, params.seed, tmp / "synthetic"))
    if params.source == "spider":
        from pipesql.sources.spider import read_spider

        return Read(*read_spider(Path(params.path)))  # type: ignore[arg-type]
    if params.source == "bird":
        from pipesql.sources.bird import read_bird

        return Read(*read_bird(Path(params.path)))  # type: ignore[arg-type]
    if params.source == "url":
        from pipesql.sources.url import fetch_url_dataset

        return Read(*fetch_url_dataset(params.url, cache / "url"))
    if params.source == "synsql":
        from pipesql.sources.synsql import read_synsql

        return read_synsql(params.synsql, params.path, cache / "synsql")
    from pipesql.sources.hf import read_hf

    return Read(*read_hf(params.hf, cache_dir=cache / "hf"))
