"""Seeded rows for a domain, kept in memory for the question templates, and their SQLite file.

Templates pick filter values from these rows instead of running queries, which keeps generation
fast and makes filters match real rows. Files are written in one transaction in a fixed order,
so the same rows give byte-identical files (DVC hashes them).
"""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import Any

from pipesql.sources.synthetic.schema import Column, Domain, Table

Value = int | float | str | None

DUPLICATE_LABEL_RATE = 0.03  # some entities share a name, as in real data


@dataclass
class Database:
    db_id: str
    domain: Domain
    rows: dict[str, list[tuple[Value, ...]]]
    _cache: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)

    def column(self, table: str, column: str) -> list[Value]:
        key = ("column", table, column)
        if key not in self._cache:
            index = [c.name for c in self.domain.table(table).columns].index(column)
            self._cache[key] = [row[index] for row in self.rows[table]]
        return self._cache[key]

    def distinct(self, table: str, column: str) -> list[Value]:
        """Sorted distinct non-NULL values: thresholds and IN lists are drawn from these."""
        key = ("distinct", table, column)
        if key not in self._cache:
            self._cache[key] = sorted({v for v in self.column(table, column) if v is not None})
        return self._cache[key]

    def counts(self, table: str, column: str) -> Counter[Value]:
        """Rows per non-NULL value of `column`: group sizes for HAVING thresholds."""
        key = ("counts", table, column)
        if key not in self._cache:
            self._cache[key] = Counter(v for v in self.column(table, column) if v is not None)
        return self._cache[key]

    def grouped(self, table: str, key: str, value: str) -> dict[Value, list[Value]]:
        """Non-NULL `value`s per non-NULL `key`, keys sorted: group statistics without SQL."""
        cache_key = ("grouped", table, key, value)
        if cache_key not in self._cache:
            groups: dict[Value, list[Value]] = {}
            for k, v in zip(self.column(table, key), self.column(table, value), strict=True):
                if k is not None and v is not None:
                    groups.setdefault(k, []).append(v)
            self._cache[cache_key] = dict(sorted(groups.items()))
        return self._cache[cache_key]

    def record(self, table: str, index: int) -> dict[str, Value]:
        names = [c.name for c in self.domain.table(table).columns]
        return dict(zip(names, self.rows[table][index], strict=True))


def populate(domain: Domain, db_id: str, rng: random.Random, n_rows: int) -> Database:
    """`n_rows` rows in every table; parents first, so foreign keys point at existing rows."""
    rows = {table.name: _table_rows(table, rng, n_rows) for table in domain.tables}
    return Database(db_id, domain, rows)


def write_sqlite(db: Database, path: Path) -> None:
    """Create the file anew (so no earlier page layout leaks in) and fill it in one transaction."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    try:
        with con:
            for table in db.domain.tables:
                con.execute(table.create_sql())
                marks = ", ".join("?" * len(table.columns))
                con.executemany(f"INSERT INTO {table.name} VALUES ({marks})", db.rows[table.name])
    finally:
        con.close()


def _table_rows(table: Table, rng: random.Random, n_rows: int) -> list[tuple[Value, ...]]:
    rows: list[tuple[Value, ...]] = []
    pairs: set[tuple[Value, Value]] = set()
    names = [c.name for c in table.columns]
    for i in range(n_rows):
        while True:
            row: dict[str, Value] = {}
            for col in table.columns:
                row[col.name] = _value(col, table, rng, i, n_rows, row, rows)
            if table.pk is not None or table.link is None:
                break
            pair = (row[table.link.left], row[table.link.right])
            if pair not in pairs:  # the composite primary key must stay unique
                pairs.add(pair)
                break
        rows.append(tuple(row[n] for n in names))
    return rows


def _value(
    col: Column,
    table: Table,
    rng: random.Random,
    i: int,
    n_rows: int,
    row: dict[str, Value],
    earlier: list[tuple[Value, ...]],
) -> Value:
    if col.kind == "pk":
        return i + 1
    if col.kind == "fk":
        return _foreign_key(col, table, rng, i, n_rows, row)
    if col.nullable and rng.random() < col.nullable:
        return None
    if col.kind == "label":
        if earlier and rng.random() < DUPLICATE_LABEL_RATE:
            return earlier[rng.randrange(len(earlier))][table.columns.index(col)]
        return " ".join(rng.choice(part) for part in col.pool)
    if col.kind == "category":
        return rng.choices(col.pool[0], cum_weights=_zipf(len(col.pool[0])))[0]
    if col.kind == "number":
        value = col.low + col.step * rng.randint(0, round((col.high - col.low) / col.step))
        return int(value) if float(col.step).is_integer() else round(value, 2)
    if col.kind == "date":
        return _date(col, rng, row)
    return rng.choice(col.pool[0])


def _foreign_key(
    col: Column, table: Table, rng: random.Random, i: int, n_rows: int, row: dict[str, Value]
) -> Value:
    """Self-references point at earlier rows only (a hierarchy, no cycles); a second key into
    the same table differs from the first (no flight lands where it took off)."""
    if col.ref == table.name:
        return None if i == 0 or rng.random() < col.nullable else rng.randint(1, i)
    if col.nullable and rng.random() < col.nullable:
        return None
    taken = {row[c.name] for c in table.of("fk") if c.ref == col.ref and c.name in row}
    while True:
        value = rng.randint(1, n_rows)
        if value not in taken or n_rows == 1:
            return value


def _date(col: Column, rng: random.Random, row: dict[str, Value]) -> str:
    if col.after and isinstance(row.get(col.after), str):
        start = dt.date.fromisoformat(str(row[col.after])) + dt.timedelta(days=1)
        return (start + dt.timedelta(days=rng.randint(0, 59))).isoformat()
    first, last = (dt.date.fromisoformat(d).toordinal() for d in col.dates)
    return dt.date.fromordinal(rng.randint(first, last)).isoformat()


def _zipf(n: int) -> list[float]:
    """Cumulative 1/k weights: categories differ in size, so GROUP BY and HAVING have contrast."""
    return list(accumulate(1 / k for k in range(1, n + 1)))
