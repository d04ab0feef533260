"""The canonical raw layout every source writes and every later stage reads.

    data/raw/examples.jsonl                      one Example a line
    data/raw/database/<db_id>/<db_id>.sqlite     Spider's own layout
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
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

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def database_path(raw_dir: Path, db_id: str) -> Path:
    return Path(raw_dir) / DATABASE_DIR / db_id / f"{db_id}.sqlite"


def write_raw(
    out_dir: Path, examples: Iterable[Example], databases: Mapping[str, Path]
) -> dict[str, Any]:
    """Write the canonical layout atomically and return the summary for metrics/download.json.

    Checks the contract on the way: ids unique, every example's database present.
    Databases no example uses are still copied (a source may ship them for schema-only use).
    """
    examples = list(examples)
    seen: set[str] = set()
    for ex in examples:
        if ex.id in seen:
            raise DataError(f"duplicate example id {ex.id!r}")
        seen.add(ex.id)
        if ex.db_id not in databases:
            raise DataError(f"example {ex.id!r}: database {ex.db_id!r} not found")
    with atomic_path(Path(out_dir)) as tmp:
        tmp.mkdir(parents=True)
        for db_id, src in sorted(databases.items()):
            dst = database_path(tmp, db_id)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        write_jsonl(tmp / EXAMPLES_FILE, (ex.to_json() for ex in examples))
    return summarize(examples, databases)


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


def summarize(examples: list[Example], databases: Mapping[str, Path]) -> dict[str, Any]:
    return {
        "databases": len(databases),
        "examples": len(examples),
        "examples_by_split": dict(sorted(Counter(e.split or "none" for e in examples).items())),
        "examples_by_difficulty": dict(
            sorted(Counter(e.difficulty or "none" for e in examples).items())
        ),
    }
