from __future__ import annotations

import json
import shutil
import sqlite3
from itertools import islice
from pathlib import Path

import pytest

from pipesql.io import DataError
from pipesql.sources.raw import DIFFICULTIES, read_examples, write_raw
from pipesql.sources.spider import read_spider

SPIDER_TRAIN = Path(__file__).parents[3] / "shared" / "spider-train"  # gold.tsv + database/


def test_reads_every_split_file_with_stable_ids(tmp_path: Path, spider_release) -> None:
    root = spider_release(tmp_path / "spider")
    examples, databases = read_spider(root)

    assert [(e.id, e.split) for e in examples] == [
        ("spider-train_spider-00000", "train"),
        ("spider-train_spider-00001", "train"),
        ("spider-train_others-00000", "train"),
        ("spider-dev-00000", "dev"),
        ("spider-test-00000", "test"),
    ]
    pets = examples[1]
    assert (pets.db_id, pets.question) == ("pets", "List pet kinds.")
    assert pets.gold_sql == "SELECT kind FROM pet ORDER BY kind"
    assert all(e.difficulty in DIFFICULTIES and e.evidence is None for e in examples)
    assert databases == {
        "concert": root / "database/concert/concert.sqlite",
        "pets": root / "database/pets/pets.sqlite",
        "flights": root / "test_database/flights/flights.sqlite",
    }
    assert read_spider(root) == (examples, databases)


def test_partial_release_round_trips_through_raw_layout(tmp_path: Path, spider_release) -> None:
    root = spider_release(tmp_path / "spider")
    for name in ("train_spider.json", "train_others.json", "test.json"):
        (root / name).unlink()
    examples, databases = read_spider(root)
    write_raw(tmp_path / "raw", examples, databases)

    assert [e for _, e in read_examples(tmp_path / "raw")] == examples
    assert sorted(p.name for p in (tmp_path / "raw/database").iterdir()) == ["concert"]


def test_test_split_falls_back_to_database_dir(tmp_path: Path, spider_release) -> None:
    """Releases before 2024 ship test databases in database/."""
    root = spider_release(tmp_path / "spider")
    shutil.move(root / "test_database/flights", root / "database/flights")
    _, databases = read_spider(root)
    assert databases["flights"] == root / "database/flights/flights.sqlite"


def test_ungradeable_query_keeps_no_difficulty(tmp_path: Path, spider_release) -> None:
    root = spider_release(tmp_path / "spider")
    _rewrite(root / "dev.json", 0, query="SELEC name FROM singer WHERE")
    examples, _ = read_spider(root)
    assert examples[3].id == "spider-dev-00000" and examples[3].difficulty is None


def test_missing_database_names_file_entry_and_paths(tmp_path: Path, spider_release) -> None:
    root = spider_release(tmp_path / "spider")
    _rewrite(root / "train_others.json", 0, db_id="zoo")
    expected = (r"train_others\.json\[0\]: database 'zoo' not found; "
                r"expected .*/database/zoo/zoo\.sqlite or .*/test_database/zoo/zoo\.sqlite")
    with pytest.raises(DataError, match=expected):
        read_spider(root)


def test_db_id_escaping_the_layout_is_refused(tmp_path: Path, spider_release) -> None:
    root = spider_release(tmp_path / "spider")
    _rewrite(root / "dev.json", 0, db_id="../concert")
    with pytest.raises(DataError, match=r"dev\.json\[0\]: db_id '\.\./concert' is not a plain"):
        read_spider(root)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"db_id": "concert",\n  "question": }]', r"dev\.json:2:15: not valid JSON"),
        ('{"db_id": "concert"}', r"dev\.json: expected a JSON array of examples, got dict"),
        ('[{"db_id": "concert", "question": "q", "query": 3}]',
         r"dev\.json\[0\]: 'query' must be a non-empty string, got 3"),
        ('[["concert"]]', r"dev\.json\[0\]: expected an object, got list"),
    ],
    ids=["syntax", "not-array", "bad-field", "not-object"],
)
def test_malformed_file_names_location(
    tmp_path: Path, spider_release, content: str, message: str
) -> None:
    root = spider_release(tmp_path / "spider")
    (root / "dev.json").write_text(content)
    with pytest.raises(DataError, match=message):
        read_spider(root)


def test_no_split_file_names_directory_and_expected_files(tmp_path: Path) -> None:
    expected = (r"empty: no Spider split file; expected one of "
                r"train_spider\.json, train_others\.json, dev\.json, test\.json")
    with pytest.raises(DataError, match=expected):
        read_spider(tmp_path / "empty")


@pytest.mark.skipif(not SPIDER_TRAIN.is_dir(), reason=f"{SPIDER_TRAIN} not present")
def test_real_spider_queries_and_databases(tmp_path: Path) -> None:
    """The first queries of three real databases, in the release layout, run on their databases."""
    rows: list[tuple[str, str]] = []
    with (SPIDER_TRAIN / "gold.tsv").open(encoding="utf-8") as f:
        for line in islice(f, 200):
            sql, db_id = line.rstrip("\n").split("\t")
            has_db = (SPIDER_TRAIN / "database" / db_id).is_dir()  # the copy lacks a few
            if has_db and len({d for _, d in rows} | {db_id}) <= 3:
                rows.append((sql, db_id))
    root = tmp_path / "spider"
    (root / "database").mkdir(parents=True)
    for db_id in {d for _, d in rows}:
        (root / "database" / db_id).symlink_to(SPIDER_TRAIN / "database" / db_id)
    entries = [{"db_id": d, "question": f"q{i}", "query": q} for i, (q, d) in enumerate(rows)]
    (root / "train_spider.json").write_text(json.dumps(entries))

    examples, databases = read_spider(root)

    assert len(examples) == len(rows) and len(databases) == 3
    assert {e.difficulty for e in examples} <= set(DIFFICULTIES)
    for example in examples:
        with sqlite3.connect(f"file:{databases[example.db_id]}?mode=ro", uri=True) as con:
            con.execute(example.gold_sql).fetchall()
        con.close()


def _rewrite(json_path: Path, index: int, **fields: str) -> None:
    entries = json.loads(json_path.read_text())
    entries[index].update(fields)
    json_path.write_text(json.dumps(entries))
