"""BIRD's official release read into Examples, with its evidence and difficulty kept as given.

    <path>/train.json   + <path>/train_databases/<db_id>/<db_id>.sqlite
    <path>/dev.json     + <path>/dev_databases/<db_id>/<db_id>.sqlite

Either pair or both. BIRD ships the database folders zipped (`dev_databases.zip`): unzip them
first, this reader does not open nested archives.
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from pipesql.io import DataError
from pipesql.sources.raw import Example
from pipesql.sources.spider import entry_text, find_database, load_entries, optional_text

# split file -> (split, its database folder)
SPLITS = {"train.json": ("train", "train_databases"), "dev.json": ("dev", "dev_databases")}


def read_bird(path: Path) -> tuple[list[Example], dict[str, Path]]:
    """Examples of train.json and/or dev.json; difficulty stays simple|moderate|challenging.

    Ids use dev's `question_id` where present (the key BIRD's evaluation reports by), else the
    entry's index: `bird-dev-00042`, `bird-train-00042`. Train entries carry no difficulty.
    """
    root = Path(path)
    files = [root / name for name in SPLITS if (root / name).is_file()]
    if not files:
        raise DataError(f"{root}: no BIRD split file; expected one of {', '.join(SPLITS)}")
    examples: list[Example] = []
    databases: dict[str, Path] = {}
    for json_path in files:
        split, db_dir = SPLITS[json_path.name]
        entries = load_entries(json_path)
        for index, entry in enumerate(tqdm(entries, desc=json_path.name, unit="ex")):
            where = f"{json_path}[{index}]"
            db_id = entry_text(entry, "db_id", where)
            if db_id not in databases:
                databases[db_id] = find_database(db_id, [root / db_dir], where)
            number = entry.get("question_id", index)
            if not isinstance(number, int) or isinstance(number, bool):
                raise DataError(f"{where}: 'question_id' must be an integer, got {number!r}")
            examples.append(
                Example(
                    id=f"bird-{split}-{number:05d}",
                    db_id=db_id,
                    question=entry_text(entry, "question", where),
                    gold_sql=entry_text(entry, "SQL", where),
                    evidence=optional_text(entry, "evidence", where),
                    difficulty=optional_text(entry, "difficulty", where),
                    split=split,
                )
            )
    return examples, databases
