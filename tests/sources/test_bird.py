from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipesql.io import DataError
from pipesql.sources.bird import read_bird
from pipesql.sources.raw import read_examples, write_raw


def test_reads_both_splits_keeping_evidence_and_difficulty(tmp_path: Path, bird_release) -> None:
    root = bird_release(tmp_path / "bird")
    examples, databases = read_bird(root)

    assert [e.id for e in examples] == ["bird-train-00000", "bird-dev-00000", "bird-dev-00007"]
    train, honour, average = examples
    assert (train.split, train.difficulty, train.evidence) == ("train", None, "")
    assert honour.evidence == "honour refers to gpa > 3.5"
    assert (honour.split, honour.difficulty, average.difficulty) == ("dev", "simple", "challenging")
    assert honour.gold_sql == "SELECT count(*) FROM student WHERE gpa > 3.5"
    assert databases == {
        "shop": root / "train_databases/shop/shop.sqlite",
        "school": root / "dev_databases/school/school.sqlite",
    }


def test_dev_only_release_and_raw_round_trip(tmp_path: Path, bird_release) -> None:
    root = bird_release(tmp_path / "bird")
    (root / "train.json").unlink()
    shutil.rmtree(root / "train_databases")
    examples, databases = read_bird(root)
    write_raw(tmp_path / "raw", examples, databases)

    assert [e for _, e in read_examples(tmp_path / "raw")] == examples
    assert (tmp_path / "raw/database/school/school.sqlite").is_file()


def test_missing_database_names_file_and_entry(tmp_path: Path, bird_release) -> None:
    root = bird_release(tmp_path / "bird")
    shutil.rmtree(root / "dev_databases")
    with pytest.raises(DataError, match=r"dev\.json\[0\]: database 'school' not found; "
                                        r"expected .*dev_databases/school/school\.sqlite"):
        read_bird(root)


def test_entry_without_sql_names_key(tmp_path: Path, bird_release) -> None:
    root = bird_release(tmp_path / "bird")
    entries = json.loads((root / "dev.json").read_text())
    del entries[1]["SQL"]
    (root / "dev.json").write_text(json.dumps(entries))
    with pytest.raises(DataError, match=r"dev\.json\[1\]: 'SQL' must be a non-empty string"):
        read_bird(root)


def test_no_split_file_names_directory_and_expected_files(tmp_path: Path) -> None:
    expected = r"empty: no BIRD split file; expected one of train\.json, dev\.json"
    with pytest.raises(DataError, match=expected):
        read_bird(tmp_path / "empty")
