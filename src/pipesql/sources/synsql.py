"""SynSQL-2.5M's release layout read into Examples, data.json streamed.

    <release>/data.json                              a JSON list: question, sql, db_id, cot,
                                                     external_knowledge, sql_complexity, question_style
    <release>/tables.json                            Spider's tables.json shape, one entry a database
    <release>/databases/<db_id>/<db_id>.sqlite

data.json is several GB, so it is read one entry at a time (json_array.py) and the Examples are
yielded, never listed. The chain-of-thought (`cot`) becomes `reasoning` (tokenize.reasoning),
`external_knowledge` the evidence and `sql_complexity` the difficulty, as given. The release is
known to hold broken entries (a db_id with a newline in tables.json, databases without their
file): those are skipped and counted by reason in metrics/download.json, not fatal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipesql.io import DataError
from pipesql.params.download import SynsqlDataParams
from pipesql.sources import Read
from pipesql.sources.json_array import iter_json_array
from pipesql.sources.raw import Example

DATA_FILE = "data.json"
TABLES_FILE = "tables.json"
DATABASE_DIR = "databases"
SPLIT = "train"  # the release has one split
# skip reasons, the keys of metrics/download.json's `skipped`
BAD_DB_ID = "tables.json: db_id not a plain name"
NO_DB_FILE = "tables.json: database file missing"
UNKNOWN_DB = "data.json: database skipped or not in tables.json"
EMPTY_FIELD = "data.json: question, sql or db_id empty"


def read_synsql(params: SynsqlDataParams, path: str | None, cache_dir: Path) -> Read:
    """The release at `path`, or the hub dataset `params.name` at `params.revision`.

    The databases are those of tables.json whose db_id is a plain name and whose file exists;
    an example of any other database is skipped. Ids are `synsql-<index in data.json>`, so they
    stay put when a broken entry before them is skipped.
    """
    root = Path(path) if path else fetch_release(params, cache_dir)
    data, tables = root / DATA_FILE, root / TABLES_FILE
    for file in (data, tables):
        if not file.is_file():
            raise DataError(f"{file}: file not found; expected SynSQL's layout ({DATA_FILE},"
                            f" {TABLES_FILE}, {DATABASE_DIR}/<db_id>/<db_id>.sqlite)")
    skipped: Counter[str] = Counter()
    databases = _databases(tables, root / DATABASE_DIR, skipped)
    return Read(_examples(data, databases, params.max_examples, skipped), databases, skipped)


def fetch_release(params: SynsqlDataParams, cache_dir: Path) -> Path:
    """The hub dataset's files at the pinned revision, through huggingface_hub (the download
    code under `datasets`, which the hf source uses): a release of files, not a table."""
    if not (params.name and params.revision):
        raise DataError("download.data.synsql: name and revision are both required for a hub dataset")
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(params.name, repo_type="dataset", revision=params.revision,
                                  cache_dir=str(cache_dir)))


def _databases(tables: Path, db_dir: Path, skipped: Counter[str]) -> dict[str, Path]:
    databases: dict[str, Path] = {}
    for entry in tqdm(iter_json_array(tables), desc=TABLES_FILE, unit="db"):
        db_id = entry.get("db_id") if isinstance(entry, dict) else None
        if not isinstance(db_id, str) or not _plain(db_id):
            skipped[BAD_DB_ID] += 1
            continue
        file = db_dir / db_id / f"{db_id}.sqlite"
        if not file.is_file():
            skipped[NO_DB_FILE] += 1
            continue
        databases[db_id] = file
    return databases


def _plain(db_id: str) -> bool:
    """A name that is one directory and one file name: no separator, no white space at all."""
    return bool(db_id) and db_id not in (".", "..") and not any(c in db_id for c in "/\\") and (
        "".join(db_id.split()) == db_id
    )


def _examples(
    data: Path, databases: dict[str, Path], limit: int | None, skipped: Counter[str]
) -> Iterator[Example]:
    kept = 0
    for index, entry in enumerate(tqdm(iter_json_array(data), desc=DATA_FILE, unit="ex")):
        if limit is not None and kept >= limit:
            break
        where = f"{data}[{index}]"
        if not isinstance(entry, dict):
            raise DataError(f"{where}: expected an object, got {type(entry).__name__}")
        question, sql, db_id = (_text(entry, key, where) for key in ("question", "sql", "db_id"))
        if not (question and sql and db_id):
            skipped[EMPTY_FIELD] += 1
            continue
        if db_id not in databases:
            skipped[UNKNOWN_DB] += 1
            continue
        kept += 1
        yield Example(
            id=f"synsql-{index:07d}",
            db_id=db_id,
            question=question,
            gold_sql=sql,
            evidence=_text(entry, "external_knowledge", where) or None,
            difficulty=_text(entry, "sql_complexity", where) or None,
            split=SPLIT,
            reasoning=_text(entry, "cot", where) or None,
        )


def _text(entry: dict[str, Any], key: str, where: str) -> str | None:
    """A field as stripped text (None when absent); a list or object there is an error."""
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        raise DataError(f"{where}: {key!r} must be text, got {type(value).__name__}")
    return str(value).strip()
