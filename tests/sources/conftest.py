"""Tiny Spider and BIRD releases in their official layouts, built fresh in each test's tmp dir."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Builder = Callable[[Path], Path]


def make_sqlite(path: Path, script: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as con:
        con.executescript(script)
    con.close()
    return path


def write_json(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1), encoding="utf-8")
    return path


SINGERS = """
CREATE TABLE singer (id INTEGER, name TEXT, age INTEGER);
INSERT INTO singer VALUES (1, 'Ann', 30), (2, 'Bo', 41);
"""
PETS = "CREATE TABLE pet (id INTEGER, kind TEXT); INSERT INTO pet VALUES (1, 'cat'), (2, 'dog');"
FLIGHTS = "CREATE TABLE flight (id INTEGER, origin TEXT); INSERT INTO flight VALUES (1, 'AMS');"

# split file -> (db_id, question, query); the stray spaces check that text is stripped
SPIDER_ENTRIES = {
    "train_spider.json": [
        ("concert", "How many singers are there?", "SELECT count(*) FROM singer"),
        ("pets", " List pet kinds. ", "SELECT kind FROM pet ORDER BY kind"),
    ],
    "train_others.json": [("pets", "Count dogs.", "SELECT count(*) FROM pet WHERE kind = 'dog'")],
    "dev.json": [("concert", "Singers older than 35?", "SELECT name FROM singer WHERE age > 35")],
    "test.json": [("flights", "Where do flights leave from?", "SELECT origin FROM flight")],
}


def build_spider_release(root: Path) -> Path:
    """Every split file, database/ for train/dev and test_database/ for test (2024 layout)."""
    make_sqlite(root / "database/concert/concert.sqlite", SINGERS)
    make_sqlite(root / "database/pets/pets.sqlite", PETS)
    make_sqlite(root / "test_database/flights/flights.sqlite", FLIGHTS)
    for name, entries in SPIDER_ENTRIES.items():
        write_json(root / name, [{"db_id": d, "question": q, "query": s} for d, q, s in entries])
    return root


def build_bird_release(root: Path) -> Path:
    """train.json (no question_id, no difficulty, as released) and dev.json with both."""
    make_sqlite(root / "train_databases/shop/shop.sqlite", "CREATE TABLE item (id, price);")
    make_sqlite(root / "dev_databases/school/school.sqlite", "CREATE TABLE student (id, gpa);")
    write_json(root / "train.json", [
        {"db_id": "shop", "question": "Most expensive item?", "evidence": "",
         "SQL": "SELECT id FROM item ORDER BY price DESC LIMIT 1"},
    ])
    write_json(root / "dev.json", [
        {"question_id": 0, "db_id": "school", "question": "How many honour students?",
         "evidence": "honour refers to gpa > 3.5",
         "SQL": "SELECT count(*) FROM student WHERE gpa > 3.5", "difficulty": "simple"},
        {"question_id": 7, "db_id": "school", "question": "Average gpa?", "evidence": "",
         "SQL": "SELECT avg(gpa) FROM student", "difficulty": "challenging"},
    ])
    return root


def synsql_entry(db_id: str, question: str, sql: str, **extra: object) -> dict[str, object]:
    return {"db_id": db_id, "question": question, "sql": sql, "cot": f"Think about {question}",
            "external_knowledge": "", "sql_complexity": "Simple", "question_style": "Formal",
            **extra}


SYNSQL_DATA = [
    synsql_entry("zoo", "How many animals?", "SELECT count(*) FROM animal",
          external_knowledge="animals are rows of animal", sql_complexity="Moderate"),
    synsql_entry("bad\nname", "Broken db_id?", "SELECT 1"),             # its tables.json entry is broken
    synsql_entry("ghost", "No file?", "SELECT 1"),                      # its database file is missing
    synsql_entry("farm", "Farm names?", "SELECT name FROM farm", cot=None),
    synsql_entry("zoo", "", "SELECT 1"),                                # no question
    synsql_entry("nowhere", "Unknown db?", "SELECT 1"),                 # not in tables.json
    synsql_entry("farm", "Farm count?", "SELECT count(*) FROM farm", sql_complexity="Highly Complex"),
]


def build_synsql_release(root: Path) -> Path:
    """SynSQL-2.5M's layout with what its release is known to break: a db_id with a newline in
    tables.json, a database without its file, and entries that need them."""
    make_sqlite(root / "databases/zoo/zoo.sqlite", "CREATE TABLE animal (id, name, age);")
    make_sqlite(root / "databases/farm/farm.sqlite", "CREATE TABLE farm (id, name);")
    tables = [{"db_id": d, "table_names_original": ["t"], "column_names_original": [[-1, "*"]]}
              for d in ("zoo", "bad\nname", "ghost", "farm")]
    write_json(root / "tables.json", tables)
    write_json(root / "data.json", SYNSQL_DATA)
    return root


@pytest.fixture
def spider_release() -> Builder:
    return build_spider_release


@pytest.fixture
def bird_release() -> Builder:
    return build_bird_release


@pytest.fixture
def synsql_release() -> Builder:
    return build_synsql_release
