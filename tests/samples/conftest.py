"""A small hand-built project for the tokenize tests: five databases, pairs, a scratch tokenizer.

Pipe queries are written by hand (they hold a `|>` inside a string literal, a nested pipe
subquery and a set operator), so these tests need neither the synthetic source nor decompile.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipesql.params.tokenize import TokenizeParams
from pipesql.samples import build_samples
from pipesql.sources.raw import database_path
from project import merge_params

DATABASES = {
    "concert": """
        CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INT);
        CREATE TABLE concert (concert_id INTEGER PRIMARY KEY, title TEXT, year INT,
                              singer_id INT REFERENCES singer(singer_id));
        INSERT INTO singer VALUES (1, 'Anna O''Brien', 'France', 31),
                                  (2, 'Ben |> Kim', 'Japan', 45), (3, 'Chloe', 'France', 27);
        INSERT INTO concert VALUES (1, 'Spring', 2014, 1), (2, 'Summer', 2015, 1),
                                   (3, 'Fall', 2015, 2);
    """,
    "shop": """
        CREATE TABLE product (product_id INTEGER PRIMARY KEY, label TEXT, price REAL);
        CREATE TABLE orders (order_id INTEGER PRIMARY KEY, product_id INT REFERENCES product,
                             qty INT);
        INSERT INTO product VALUES (1, 'pen', 1.5), (2, 'ink', 7.25), (3, 'pad', 3.0);
        INSERT INTO orders VALUES (1, 1, 10), (2, 1, 5), (3, 3, 2);
    """,
    "school": """
        CREATE TABLE student (student_id INTEGER PRIMARY KEY, name TEXT, grade INT);
        CREATE TABLE course (course_id INTEGER PRIMARY KEY, title TEXT);
        CREATE TABLE enrolled (student_id INT, course_id INT, PRIMARY KEY (student_id, course_id));
        INSERT INTO student VALUES (1, 'Ada', 9), (2, 'Bo', 10), (3, 'Cy', 9);
        INSERT INTO course VALUES (1, 'Math'), (2, 'Art');
        INSERT INTO enrolled VALUES (1, 1), (1, 2), (2, 1);
    """,
    "zoo": """
        CREATE TABLE animal (animal_id INTEGER PRIMARY KEY, species TEXT, legs INT);
        INSERT INTO animal VALUES (1, 'cat', 4), (2, 'owl', 2), (3, 'ant', 6), (4, 'dog', 4);
    """,
    "library": """
        CREATE TABLE book (book_id INTEGER PRIMARY KEY, title TEXT, pages INT, "order" INT);
        INSERT INTO book VALUES (1, 'Dune', 412, 1), (2, 'Emma', 474, 2), (3, 'Ubik', 202, 3);
    """,
}

# (db_id, question, pipe SQL, official split); the same question on two databases is deliberate
PAIRS = [
    ("concert", "How many singers are there?", "FROM singer |> AGGREGATE COUNT(*) AS n", "train"),
    ("concert", "Singers named 'Ben |> Kim'?",
     "FROM singer |> WHERE name = 'Ben |> Kim' |> SELECT singer_id", "train"),
    ("concert", "Singers per country, most first.",
     "FROM singer |> AGGREGATE COUNT(*) AS n GROUP BY country |> ORDER BY n DESC, country",
     "train"),
    ("concert", "Titles of concerts by singers from France.",
     "FROM concert |> JOIN singer ON concert.singer_id = singer.singer_id"
     " |> WHERE singer.country = 'France' |> SELECT concert.title", "train"),
    ("shop", "Products never ordered.",
     "FROM product |> WHERE product_id NOT IN (FROM orders |> SELECT product_id) |> SELECT label",
     "train"),
    ("shop", "Total quantity per product label.",
     "FROM orders |> JOIN product USING (product_id)"
     " |> AGGREGATE SUM(qty) AS total GROUP BY label |> ORDER BY total DESC", "train"),
    ("shop", "How many rows are there?", "FROM product |> AGGREGATE COUNT(*) AS n", "dev"),
    ("school", "Students in grade 9 or enrolled in Art.",
     "FROM student |> WHERE grade = 9 |> SELECT name |> UNION DISTINCT (FROM student"
     " |> JOIN enrolled USING (student_id) |> WHERE course_id = 2 |> SELECT name)", "dev"),
    ("school", "Names of students, sorted.", "FROM student |> SELECT name |> ORDER BY name",
     "train"),
    ("zoo", "How many rows are there?", "FROM animal |> AGGREGATE COUNT(*) AS n", "dev"),
    ("zoo", "Species with four legs.",
     "FROM animal |> WHERE legs = 4 |> SELECT species |> ORDER BY species", "train"),
    ("library", "Longest book title.",
     "FROM book |> ORDER BY pages DESC |> LIMIT 1 |> SELECT title", "train"),
    ("library", "Books in order.", 'FROM book |> ORDER BY "order" |> SELECT title', "dev"),
]


def write_project(root: Path, pairs: list[tuple[str, str, str, str]] = PAIRS) -> tuple[Path, Path]:
    """raw/ (databases) and golden/pairs.jsonl under root; returns (golden_dir, raw_dir)."""
    raw, golden = root / "raw", root / "golden"
    for db_id, script in DATABASES.items():
        path = database_path(raw, db_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path) as conn:
            conn.executescript(script)
        conn.close()
    golden.mkdir(parents=True)
    rows = [pair_row(i, *pair) for i, pair in enumerate(pairs)]
    (golden / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return golden, raw


def pair_row(i: int, db_id: str, question: str, pipe_sql: str, split: str) -> dict[str, Any]:
    return {
        "id": f"ex-{i:03d}", "db_id": db_id, "question": question, "gold_sql": "-",
        "pipe_sql": pipe_sql, "split": split, "difficulty": ["easy", "hard"][i % 2],
        "reasoning": f"Think about {db_id} step by step.",
    }


def tokenize_params(**overrides: Any) -> TokenizeParams:
    base = {  # the product's step-per-operator protocol over held-out databases, not the CPU default
        "split": {"by": "database", "ratios": {"train": 0.6, "dev": 0.2, "test": 0.2}},
        "mode": "incremental", "tool_ratio": 0.1, "schema": {"format": "ddl", "example_values": 2}, "num_proc": 1,
    }
    return TokenizeParams.model_validate(merge_params(base, overrides))


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch tokenizer (no weights: tokenize reads only the tokenizer) trained on our texts."""
    from pipesql.basemodel.scratch import PIPE_SEED, train_tokenizer

    texts = [script for script in DATABASES.values()] + [p[1] + " " + p[2] for p in PAIRS]
    out = tmp_path_factory.mktemp("model") / "base"
    train_tokenizer(texts * 20 + list(PIPE_SEED) * 20, 700, 2048).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(golden_dir, raw_dir) of the hand-built project."""
    return write_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="session")
def make_params() -> Callable[..., TokenizeParams]:
    """TokenizeParams for these tests (one process, 60/20/20), with overrides merged in."""
    return tokenize_params


@pytest.fixture(scope="session")
def build(project: tuple[Path, Path], model_dir: Path) -> Callable[..., dict[str, Any]]:
    """build_samples on the project into out_dir, with param overrides; returns the metrics."""

    def run(out_dir: Path, **overrides: Any) -> dict[str, Any]:
        golden, raw = project
        return build_samples(golden, raw, model_dir, tokenize_params(**overrides), out_dir)

    return run
