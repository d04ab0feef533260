"""Splits: no leakage in each mode, deterministic from the seed, errors that name the fix."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from pipesql.io import DataError
from pipesql.params.tokenize import SplitParams
from pipesql.samples.splits import SPLITS, Pair, assign_splits, read_pairs

PATH = Path("data/golden/pairs.jsonl")


def pairs_of(n: int, n_dbs: int, seed: int = 0, splits: tuple[str, ...] = ("train",)) -> list[Pair]:
    """n pairs over n_dbs databases; about one question in five is asked again elsewhere."""
    rng = random.Random(seed)
    questions = [f"Question {i}?" for i in range(n)]
    rows = []
    for i in range(n):
        question = rng.choice(questions[:i]) if i and rng.random() < 0.2 else questions[i]
        if rng.random() < 0.5:
            question = f"  {question.upper()} "  # case and spacing do not make it new
        db = f"db{rng.randrange(n_dbs)}"
        rows.append({"id": f"q{i}", "db_id": db, "question": question, "pipe_sql": "FROM t",
                     "split": splits[int(db[2:]) % len(splits)]})
    return [Pair(i + 1, row) for i, row in enumerate(rows)]


def split_params(**overrides: object) -> SplitParams:
    return SplitParams.model_validate({"by": "database", **overrides})


def unit(pair: Pair, by: str) -> str:
    return pair.db_id if by == "database" else " ".join(pair.row["question"].casefold().split())


@pytest.mark.parametrize("by", ["database", "question"])
def test_no_unit_and_no_example_in_two_splits(by: str) -> None:
    pairs = pairs_of(600, 12)
    out = assign_splits(pairs, split_params(by=by), PATH)
    assert sorted(p.id for s in SPLITS for p in out[s]) == sorted(p.id for p in pairs)
    units = {s: {unit(p, by) for p in out[s]} for s in SPLITS}
    for a, b in [("train", "dev"), ("train", "test"), ("dev", "test")]:
        assert not units[a] & units[b], f"{by}: {a} and {b} share {units[a] & units[b]}"
    assert all(out[s] for s in SPLITS)


def test_database_ratios_count_databases() -> None:
    out = assign_splits(pairs_of(400, 10), split_params(), PATH)
    assert {s: len({p.db_id for p in out[s]}) for s in SPLITS} == {"train": 8, "dev": 1, "test": 1}


def test_split_is_deterministic_and_follows_the_seed() -> None:
    pairs = pairs_of(300, 10)
    ids = lambda out: {s: [p.id for p in out[s]] for s in SPLITS}  # noqa: E731
    first = ids(assign_splits(pairs, split_params(seed=3), PATH))
    assert first == ids(assign_splits(list(pairs), split_params(seed=3), PATH))
    assert first != ids(assign_splits(pairs, split_params(seed=4), PATH))
    assert all(out == sorted(out, key=lambda i: int(i[1:])) for out in first.values()), "file order"


def test_source_keeps_official_splits() -> None:
    pairs = pairs_of(300, 9, splits=("train", "dev", "test"))
    out = assign_splits(pairs, split_params(by="source"), PATH)
    for s in SPLITS:
        assert out[s] and all(p.row["split"] == s for p in out[s])


def test_source_without_test_reports_on_dev_and_carves_dev_from_train() -> None:
    """Spider and BIRD: official dev becomes test; dev is cut from train's databases."""
    pairs = pairs_of(500, 12, splits=("train", "train", "dev"))
    out = assign_splits(pairs, split_params(by="source"), PATH)
    assert out["test"] and all(p.row["split"] == "dev" for p in out["test"])
    assert out["dev"] and all(p.row["split"] == "train" for p in out["dev"])
    assert not {p.db_id for p in out["dev"]} & {p.db_id for p in out["train"]}
    assert len(out["train"]) + len(out["dev"]) == sum(p.row["split"] == "train" for p in pairs)


def test_source_keeps_each_sources_own_splits() -> None:
    """Several sources: one release's dev is its test set whether or not another has a test."""
    spider = pairs_of(200, 6, splits=("train", "dev"))
    synthetic = pairs_of(200, 6, seed=1, splits=("train", "dev", "test"))
    rows = [{**p.row, "source": "spider"} for p in spider] + [
        {**p.row, "id": f"s{p.id}", "source": "synthetic"} for p in synthetic
    ]
    out = assign_splits([Pair(i + 1, row) for i, row in enumerate(rows)], split_params(by="source"), PATH)
    by = {s: {(p.row["source"], p.row["split"]) for p in out[s]} for s in SPLITS}
    assert by == {
        "train": {("spider", "train"), ("synthetic", "train")},
        "dev": {("synthetic", "dev")},
        "test": {("spider", "dev"), ("synthetic", "test")},
    }
    assert sum(map(len, out.values())) == len(rows)


def test_source_needs_a_split_on_every_pair() -> None:
    pairs = pairs_of(10, 3)
    pairs[4].row["split"] = None
    message = r"pairs.jsonl:5: tokenize.split.by is 'source' .* use by: database"
    with pytest.raises(DataError, match=message):
        assign_splits(pairs, split_params(by="source"), PATH)


def test_too_few_databases_is_an_error_naming_the_param() -> None:
    message = r"tokenize.split: 2 databases are too few for train, dev, test \(ratios train 0.8"
    with pytest.raises(DataError, match=message):
        assign_splits(pairs_of(20, 2), split_params(), PATH)


def test_read_pairs_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    good = {"id": "a", "db_id": "d", "question": "q", "pipe_sql": "FROM t"}
    bad = {**good, "id": "b", "pipe_sql": ""}
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DataError, match=r"pairs.jsonl:2: missing pipe_sql"):
        read_pairs(path)
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(good) + "\n")
    with pytest.raises(DataError, match=r"pairs.jsonl:3: duplicate id 'a'"):
        read_pairs(path)
