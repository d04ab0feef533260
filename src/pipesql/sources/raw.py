"""The canonical raw layout every source writes and every later stage reads.

    data/raw/examples.jsonl                      one Example a line
    data/raw/database/<db_id>/<db_id>.sqlite     Spider's own layout

With several sources (download.data.sources) every db_id is namespaced by its source,
`spider/concert_singer`, and each namespace is a Spider layout of its own:
`database/spider/concert_singer/concert_singer.sqlite`. The `/` keeps one directory per source
(16,000 SynSQL databases do not crowd Spider's), and it cannot occur in a release's own db_id
(find_database refuses one that is not a plain name), so a namespaced id never meets a plain one.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pipesql.io import DataError, atomic_path, read_jsonl, write_jsonl

EXAMPLES_FILE = "examples.jsonl"
DATABASE_DIR = "database"
DIFFICULTIES = ("easy", "medium", "hard", "extra")


@dataclass(frozen=True)
class Example:
    """One question with its gold SQL; optional fields are None where the source does not know."""

    id: str                       # unique across the whole dataset
    db_id: str
    question: str
    gold_sql: str
    evidence: str | None = None   # BIRD's external knowledge
    difficulty: str | None = None  # easy | medium | hard | extra (BIRD: simple | moderate | challenging)
    split: str | None = None      # the source's official split: train | dev | test
    reasoning: str | None = None  # chain-of-thought, where the source has it (SynSQL)
    source: str | None = None     # the source block's name, with several sources

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def database_path(raw_dir: Path, db_id: str) -> Path:
    """`database/<db_id>/<name>.sqlite`, name the db_id's last part (the db_id itself unless
    namespaced)."""
    return Path(raw_dir) / DATABASE_DIR / db_id / f"{PurePosixPath(db_id).name}.sqlite"


def database_ids(raw_dir: Path) -> list[str]:
    """Every db_id the layout holds, namespaced ones included, sorted: the directories with no
    directory inside (write_raw puts only the .sqlite file in one), so a database directory
    that lost its file is still listed, and named by whoever opens it."""
    root = Path(raw_dir) / DATABASE_DIR
    if not root.is_dir():
        return []
    return sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_dir() and not any(child.is_dir() for child in path.iterdir())
    )


def write_raw(
    out_dir: Path, examples: Iterable[Example], databases: Mapping[str, Path]
) -> dict[str, Any]:
    """Write the canonical layout atomically and return the summary for metrics/download.json.

    `examples` is consumed once, as a stream (a source of millions need not be a list), and
    checked on the way: ids unique, every example's database present; a violation leaves
    nothing at out_dir. Databases no example uses are still copied (a source may ship them for
    schema-only use).
    """
    summary = _Summary()
    with atomic_path(Path(out_dir)) as tmp:
        tmp.mkdir(parents=True)
        for db_id, src in sorted(databases.items()):
            dst = database_path(tmp, db_id)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        write_jsonl(tmp / EXAMPLES_FILE, (ex.to_json() for ex in _checked(examples, databases, summary)))
    return summary.as_dict(len(databases))


def read_examples(raw_dir: Path) -> Iterable[tuple[int, Example]]:
    """Yield (line number, Example) from examples.jsonl; a malformed line names file:line."""
    path = Path(raw_dir) / EXAMPLES_FILE
    fields = set(Example.__dataclass_fields__)
    for lineno, obj in read_jsonl(path):
        unknown = set(obj) - fields
        missing = {"id", "db_id", "question", "gold_sql"} - set(obj)
        if unknown or missing:
            raise DataError(
                f"{path}:{lineno}: "
                + "; ".join(
                    ([f"missing {sorted(missing)}"] if missing else [])
                    + ([f"unknown {sorted(unknown)}"] if unknown else [])
                )
            )
        yield lineno, Example(**obj)


def count_examples(raw_dir: Path) -> int:
    """Non-blank lines of examples.jsonl: the total for progress bars, read without parsing."""
    path = Path(raw_dir) / EXAMPLES_FILE
    if not path.exists():
        raise DataError(f"{path}: file not found; run 'dvc repro download' first")
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def _checked(
    examples: Iterable[Example], databases: Mapping[str, Path], summary: _Summary
) -> Iterator[Example]:
    seen: set[str] = set()
    for ex in examples:
        if ex.id in seen:
            raise DataError(f"duplicate example id {ex.id!r}")
        seen.add(ex.id)
        if ex.db_id not in databases:
            raise DataError(f"example {ex.id!r}: database {ex.db_id!r} not found")
        summary.add(ex)
        yield ex


class _Summary:
    """Counts kept while the examples stream past, so the summary needs no list of them."""

    def __init__(self) -> None:
        self.splits: Counter[str] = Counter()
        self.difficulties: Counter[str] = Counter()
        self.sources: Counter[str] = Counter()

    def add(self, ex: Example) -> None:
        self.splits[ex.split or "none"] += 1
        self.difficulties[ex.difficulty or "none"] += 1
        if ex.source:
            self.sources[ex.source] += 1

    def as_dict(self, n_databases: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "databases": n_databases,
            "examples": sum(self.splits.values()),
            "examples_by_split": dict(sorted(self.splits.items())),
            "examples_by_difficulty": dict(sorted(self.difficulties.items())),
        }
        if self.sources:
            out["examples_by_source"] = dict(sorted(self.sources.items()))
        return out
