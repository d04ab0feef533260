"""A seeded sample of n rows that covers every database: what eval.max_examples and train's dev cap draw.

Spider and BIRD files are grouped by database, so their first n rows cover a handful of
databases. `stratified_sample` spreads n over the strata instead (database first, then
difficulty within a database), each taking a share of n proportional to its size with at least
one row while n allows, and picks the rows of a stratum at random from a seeded generator. The
same rows, seed and n give the same indices on every run and machine. Plain Python, no imports
beyond the standard library: eval and training both call it.
"""

from __future__ import annotations

import random
from fractions import Fraction
from collections.abc import Hashable, Sequence


def stratified_sample(strata: Sequence[tuple[Hashable, Hashable]], n: int, seed: int) -> list[int]:
    """Indices (ascending, so file order) of n rows; `strata[i]` is row i's (database, difficulty).

    All rows when n covers them. Every database gives at least one row when n >= their number;
    below that, n databases are drawn and give one row each.
    """
    if n >= len(strata):
        return list(range(len(strata)))
    rng = random.Random(seed)
    by_db: dict[Hashable, dict[Hashable, list[int]]] = {}
    for i, (db, level) in enumerate(strata):
        by_db.setdefault(db, {}).setdefault(level, []).append(i)
    chosen: list[int] = []
    db_sizes = {db: sum(map(len, levels.values())) for db, levels in by_db.items()}
    for db, k in allocate(db_sizes, n, rng).items():
        levels = by_db[db]
        for level, m in allocate({lv: len(rows) for lv, rows in levels.items()}, k, rng).items():
            chosen += rng.sample(levels[level], m)
    return sorted(chosen)


def allocate(sizes: dict[Hashable, int], n: int, rng: random.Random) -> dict[Hashable, int]:
    """How many of n each stratum gives: one each while n allows, the rest in proportion to size.

    Largest remainders settle the rounding, ties in a seeded random order; no stratum is asked
    for more rows than it has. With n below the number of strata, n of them give one row each.
    Strata are visited in sorted order of their repr, so the result does not depend on how the
    caller's dict was built.
    """
    keys = sorted(sizes, key=repr)
    if n >= sum(sizes.values()):
        return {key: sizes[key] for key in keys}
    if n <= len(keys):
        return {key: 1 for key in sorted(rng.sample(keys, n), key=repr)}
    rest = n - len(keys)
    spare = {key: sizes[key] - 1 for key in keys}
    total = sum(spare.values())
    quotas = {key: Fraction(rest * spare[key], total) for key in keys}  # exact: a quota never exceeds spare
    counts = {key: 1 + int(quotas[key]) for key in keys}
    tiebreak = {key: rng.random() for key in keys}
    short = n - sum(counts.values())
    for key in sorted(keys, key=lambda k: (-(quotas[k] - int(quotas[k])), tiebreak[k]))[:short]:
        counts[key] += 1
    return counts
