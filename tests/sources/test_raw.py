"""The canonical raw layout: contract checks on write, file:line errors on read."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pipesql.io import DataError
from pipesql.sources.raw import Example, database_ids, database_path, read_examples, write_raw


def _db(path: Path) -> Path:
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE t (a INTEGER)")
    return path


def test_round_trip_and_summary(tmp_path: Path) -> None:
    dbs = {"shop": _db(tmp_path / "shop.sqlite")}
    examples = [
        Example("e1", "shop", "How many?", "SELECT count(*) FROM t", difficulty="easy", split="train"),
        Example("e2", "shop", "All?", "SELECT a FROM t", difficulty="easy", split="dev", evidence="x"),
    ]
    summary = write_raw(tmp_path / "raw", examples, dbs)
    assert summary == {
        "databases": 1,
        "examples": 2,
        "examples_by_split": {"dev": 1, "train": 1},
        "examples_by_difficulty": {"easy": 2},
    }
    assert database_path(tmp_path / "raw", "shop").exists()
    assert [ex for _, ex in read_examples(tmp_path / "raw")] == examples


def test_contract_violations_write_nothing(tmp_path: Path) -> None:
    dbs = {"shop": _db(tmp_path / "shop.sqlite")}
    with pytest.raises(DataError, match="duplicate example id 'e1'"):
        write_raw(tmp_path / "raw", [Example("e1", "shop", "q", "s"), Example("e1", "shop", "q", "s")], dbs)
    with pytest.raises(DataError, match="example 'e2': database 'zoo' not found"):
        write_raw(tmp_path / "raw", [Example("e2", "zoo", "q", "s")], dbs)
    assert not (tmp_path / "raw").exists()


def test_read_names_line_of_bad_record(tmp_path: Path) -> None:
    (tmp_path / "examples.jsonl").write_text(
        '{"id": "a", "db_id": "d", "question": "q", "gold_sql": "s"}\n{"id": "b", "db_id": "d", "colour": 1}\n'
    )
    with pytest.raises(DataError, match=r"examples.jsonl:2: missing \['gold_sql', 'question'\]; unknown \['colour'\]"):
        list(read_examples(tmp_path))


def test_namespaced_db_ids_are_a_spider_layout_per_source(tmp_path: Path) -> None:
    dbs = {"spider/shop": _db(tmp_path / "a.sqlite"), "bird/shop": _db(tmp_path / "b.sqlite"),
           "plain": _db(tmp_path / "c.sqlite")}
    examples = (Example(f"e{i}", db, "q", "s", source=db.split("/")[0]) for i, db in enumerate(dbs))
    summary = write_raw(tmp_path / "raw", examples, dbs)  # a generator: consumed as a stream
    assert summary["examples_by_source"] == {"bird": 1, "plain": 1, "spider": 1}
    assert database_path(tmp_path / "raw", "bird/shop") == tmp_path / "raw/database/bird/shop/shop.sqlite"
    assert database_ids(tmp_path / "raw") == ["bird/shop", "plain", "spider/shop"]
    assert all(database_path(tmp_path / "raw", db).is_file() for db in database_ids(tmp_path / "raw"))
