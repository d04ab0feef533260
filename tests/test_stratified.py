"""stratified_sample: every database drawn from, shares in proportion, the same ids every run."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from pipesql.stratified import allocate, stratified_sample

# a Spider-shaped file: 40 databases of 5 to 60 questions each, grouped by database, three levels
SIZES = [5 + (7 * d) % 56 for d in range(40)]
STRATA = [(f"db{d}", ("easy", "medium", "hard")[q % 3]) for d, size in enumerate(SIZES) for q in range(size)]


def test_fifty_of_a_spider_shaped_file_draw_from_every_database() -> None:
    chosen = stratified_sample(STRATA, 50, seed=0)
    assert len(chosen) == 50 == len(set(chosen)) and chosen == sorted(chosen)
    assert {STRATA[i][0] for i in chosen} == {db for db, _ in STRATA}
    assert [STRATA[i] for i in range(50)] != [STRATA[i] for i in chosen]  # not the first 50


def test_shares_follow_database_size_and_levels_within_one() -> None:
    chosen = stratified_sample(STRATA, 400, seed=1)
    per_db = Counter(STRATA[i][0] for i in chosen)
    for d, size in enumerate(SIZES):  # one each, the other 360 in proportion to size - 1
        expected = 1 + 360 * (size - 1) / (sum(SIZES) - 40)
        assert abs(per_db[f"db{d}"] - expected) < 1
    big = max(range(40), key=lambda d: SIZES[d])
    levels = Counter(STRATA[i][1] for i in chosen if STRATA[i][0] == f"db{big}")
    assert max(levels.values()) - min(levels.values()) <= 1


def test_the_same_seed_draws_the_same_ids() -> None:
    assert stratified_sample(STRATA, 50, seed=3) == stratified_sample(list(STRATA), 50, seed=3)
    assert stratified_sample(STRATA, 50, seed=3) != stratified_sample(STRATA, 50, seed=4)


def test_fewer_rows_than_databases_one_each_from_a_random_few() -> None:
    chosen = stratified_sample(STRATA, 7, seed=0)
    assert len({STRATA[i][0] for i in chosen}) == 7


def test_n_at_or_past_the_size_is_everything() -> None:
    assert stratified_sample(STRATA[:10], 10, seed=0) == list(range(10))
    assert stratified_sample(STRATA[:10], 99, seed=0) == list(range(10))


@pytest.mark.parametrize("n", [3, 4, 10, 17, 29])
def test_allocate_never_asks_a_stratum_for_more_than_it_has(n: int) -> None:
    sizes = {"a": 1, "b": 2, "c": 7, "d": 20}
    counts = allocate(sizes, n, random.Random(0))
    assert sum(counts.values()) == min(n, 30)
    assert all(0 < counts[k] <= sizes[k] for k in counts)
