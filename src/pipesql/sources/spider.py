"""Spider's official release read into Examples, its official splits kept.

    <path>/train_spider.json, train_others.json, dev.json, test.json   whichever are present
    <path>/database/<db_id>/<db_id>.sqlite
    <path>/test_database/<db_id>/<db_id>.sqlite                        releases since 2024

BIRD's release follows the same pattern under other names, so bird.py and hf.py reuse the
entry helpers below.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipesql.io import DataError
from pipesql.sources.raw import Example

SPLITS = {
    "train_spider.json": "train",
    "train_others.json": "train",
    "dev.json": "dev",
    "test.json": "test",
}
# test_database/ repeats database/ and adds the test databases; searching database/ first maps
# a db_id that train and test share to one file.
DATABASE_DIRS = ("database", "test_database")


def read_spider(path: Path) -> tuple[list[Example], dict[str, Path]]:
    """Examples of every split file present, ids stable across runs (`spider-dev-00042`).

    Only the databases some example uses are returned. Spider has no difficulty field: it is
    graded from the gold SQL with Spider's hardness rules; a query the grader cannot parse keeps
    None, which the download metrics count as "none" instead of the download stopping.
    """
    from pipesql.sql.difficulty import grade_difficulty  # sqlglot loads only when Spider is read

    root = Path(path)
    files = [root / name for name in SPLITS if (root / name).is_file()]
    if not files:
        raise DataError(f"{root}: no Spider split file; expected one of {', '.join(SPLITS)}")
    db_dirs = [root / name for name in DATABASE_DIRS]
    examples: list[Example] = []
    databases: dict[str, Path] = {}
    for json_path in files:
        entries = load_entries(json_path)
        for index, entry in enumerate(tqdm(entries, desc=json_path.name, unit="ex")):
            where = f"{json_path}[{index}]"
            db_id = entry_text(entry, "db_id", where)
            gold_sql = entry_text(entry, "query", where)
            if db_id not in databases:
                databases[db_id] = find_database(db_id, db_dirs, where)
            try:
                difficulty: str | None = grade_difficulty(gold_sql)
            except ValueError:
                difficulty = None
            examples.append(
                Example(
                    id=f"spider-{json_path.stem}-{index:05d}",
                    db_id=db_id,
                    question=entry_text(entry, "question", where),
                    gold_sql=gold_sql,
                    difficulty=difficulty,
                    split=SPLITS[json_path.name],
                )
            )
    return examples, databases


def load_entries(json_path: Path) -> list[dict[str, Any]]:
    """The release file's top-level array of objects; a syntax error names file, line and column."""
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{json_path}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}") from None
    if not isinstance(data, list):
        kind = type(data).__name__
        raise DataError(f"{json_path}: expected a JSON array of examples, got {kind}")
    for index, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise DataError(f"{json_path}[{index}]: expected an object, got {type(entry).__name__}")
    return data


def entry_text(entry: dict[str, Any], key: str, where: str) -> str:
    """A required text field, stripped; `where` (file[index] or row) prefixes the error."""
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: {key!r} must be a non-empty string, got {value!r}")
    return value.strip()


def optional_text(entry: dict[str, Any], key: str, where: str) -> str | None:
    """An optional text field: None when absent, an error when present but not a string."""
    value = entry.get(key)
    if value is not None and not isinstance(value, str):
        raise DataError(f"{where}: {key!r} must be a string, got {value!r}")
    return value


def find_database(db_id: str, db_dirs: Sequence[Path], where: str) -> Path:
    """`<dir>/<db_id>/<db_id>.sqlite` from the first dir that has it.

    A db_id must be a plain name: it becomes a directory of the raw layout, and a `..` in
    downloaded data must not place a database outside it.
    """
    if Path(db_id).name != db_id or db_id in (".", ".."):
        raise DataError(f"{where}: db_id {db_id!r} is not a plain directory name")
    candidates = [Path(d) / db_id / f"{db_id}.sqlite" for d in db_dirs]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = " or ".join(str(c) for c in candidates)
    raise DataError(f"{where}: database {db_id!r} not found; expected {tried}")
