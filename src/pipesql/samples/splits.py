"""Golden pairs into train/dev/test: deterministic from a seed, with no unit in two splits.

The unit is what must not leak. `database`: a test database is never seen in training, as Spider
and BIRD evaluate. `question`: pairs asking the same question (case and spacing aside) stay
together. `source`: each source's own splits. Ratios are of units, so with `database` they count
databases, not pairs: the database is what the split keeps apart.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipesql.io import DataError, read_jsonl
from pipesql.params.tokenize import SplitParams

SPLITS = ("train", "dev", "test")
_REQUIRED = ("id", "db_id", "question", "pipe_sql")


@dataclass(frozen=True)
class Pair:
    """One row of pairs.jsonl, kept whole (test_pairs.jsonl repeats it as it is)."""

    lineno: int
    row: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.row["id"])

    @property
    def db_id(self) -> str:
        return str(self.row["db_id"])


def read_pairs(path: Path) -> list[Pair]:
    """Every pair, in file order; a row missing a field tokenize needs names file:line."""
    pairs = []
    seen: set[str] = set()
    for lineno, row in read_jsonl(path):
        missing = [key for key in _REQUIRED if not row.get(key)]
        if missing:
            raise DataError(f"{path}:{lineno}: missing {', '.join(missing)}")
        if row["id"] in seen:
            raise DataError(f"{path}:{lineno}: duplicate id {row['id']!r}")
        seen.add(row["id"])
        pairs.append(Pair(lineno, row))
    return pairs


def assign_splits(pairs: Sequence[Pair], params: SplitParams, path: Path) -> dict[str, list[Pair]]:
    """Pairs per split, each list in file order. `path` is only for naming it in errors."""
    if params.by == "source":
        return _by_source(pairs, params, path)
    unit_of = _UNITS[params.by]
    units = sorted({unit_of(p) for p in pairs})
    split_of = _cut(units, {name: getattr(params.ratios, name) for name in SPLITS}, params.seed,
                    f"{params.by}s")
    out: dict[str, list[Pair]] = {name: [] for name in SPLITS}
    for pair in pairs:
        out[split_of[unit_of(pair)]].append(pair)
    return out


def _question_key(pair: Pair) -> str:
    return " ".join(str(pair.row["question"]).casefold().split())


_UNITS: dict[str, Callable[[Pair], str]] = {
    "database": lambda p: p.db_id,
    "question": _question_key,
}


def _by_source(pairs: Sequence[Pair], params: SplitParams, path: Path) -> dict[str, list[Pair]]:
    """Each source's own splits (pairs from several sources carry `source`; one source's do not).
    A release without splits (synthetic, among several sources) is all train. A source without
    a test split (Spider and BIRD keep theirs hidden) has its dev split tested
    on, as their results are reported on dev. A split still missing from every source is cut
    from the train split by database, at the ratios of the splits being cut.
    """
    official: dict[str | None, dict[str, list[Pair]]] = {}
    for pair in pairs:
        split = pair.row.get("split") or ("train" if pair.row.get("source") else None)
        if split not in SPLITS:
            raise DataError(
                f"{path}:{pair.lineno}: tokenize.split.by is 'source' but the pair's split is"
                f" {split!r} (expected one of {', '.join(SPLITS)}); use by: database"
            )
        official.setdefault(pair.row.get("source"), {}).setdefault(split, []).append(pair)
    out: dict[str, list[Pair]] = {name: [] for name in SPLITS}
    for own in official.values():
        out["train"] += own.get("train", [])
        if "test" in own:
            out["test"] += own["test"]
            out["dev"] += own.get("dev", [])
        else:
            out["test"] += own.get("dev", [])
    carved = [name for name in ("dev", "test") if not out[name]]
    if carved:
        ratios = {name: getattr(params.ratios, name) for name in ("train", *carved)}
        total = sum(ratios.values())
        dbs = sorted({p.db_id for p in out["train"]})
        split_of = _cut(dbs, {k: v / total for k, v in ratios.items()}, params.seed, "databases")
        train, out["train"] = out["train"], []
        for pair in train:
            out[split_of[pair.db_id]].append(pair)
    return {name: sorted(out[name], key=lambda p: p.lineno) for name in SPLITS}


def _cut(units: list[str], ratios: dict[str, float], seed: int, what: str) -> dict[str, str]:
    """Shuffle the sorted units with the seed; test takes the first share, dev the next, train
    the rest. A split with a ratio above 0 gets at least one unit, and train must keep one.
    """
    order = list(units)
    random.Random(seed).shuffle(order)
    counts = {
        name: max(1, round(share * len(order)))
        for name, share in ratios.items()
        if name != "train" and share > 0
    }
    if sum(counts.values()) >= len(order):
        names = ", ".join(["train", *counts])
        shares = ", ".join(f"{name} {share:g}" for name, share in ratios.items())
        raise DataError(
            f"tokenize.split: {len(order)} {what} are too few for {names} (ratios {shares});"
            " use more data or another split.by"
        )
    split_of: dict[str, str] = {}
    start = 0
    for name in ("test", "dev"):
        for unit in order[start : start + counts.get(name, 0)]:
            split_of[unit] = name
        start += counts.get(name, 0)
    for unit in order[start:]:
        split_of[unit] = "train"
    return split_of
