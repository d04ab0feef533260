"""What the question templates share: their records, and how they pick rows, columns and values.

Values come from the rows in memory (`data.Database`), never from running SQL, so a filter always
has rows to match; `NotApplicable` lets a template decline a database it has nothing to ask of.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pipesql.sources.synthetic.data import Database, Value
from pipesql.sources.synthetic.english import plural, singular_verb
from pipesql.sources.synthetic.schema import Column, Kind, Link, Table

T = TypeVar("T")


class NotApplicable(Exception):
    """The template has nothing to ask of this database (no self-reference, say): draw another."""


@dataclass(frozen=True)
class Pair:
    question: str
    sql: str


@dataclass(frozen=True)
class Cond:
    """A condition as SQL and as a plural predicate: `age > 30` / `are older than 30`."""

    sql: str
    pred: str
    column: str

    @property
    def pred1(self) -> str:
        return singular_verb(self.pred)


@dataclass(frozen=True)
class Edge:
    """A foreign key seen as a join: the child row `fk` points at its `role` in `parent`."""

    child: Table
    fk: Column
    parent: Table

    def join(self) -> str:
        return (
            f"{self.child.name} AS T1 JOIN {self.parent.name} AS T2 "
            f"ON T1.{self.fk.name} = T2.{pk(self.parent)}"
        )


Template = Callable[[Database, random.Random], Pair]


def pick(rng: random.Random, items: Sequence[T]) -> T:
    if not items:
        raise NotApplicable
    return rng.choice(items)


def tables(db: Database, *kinds: Kind) -> list[Table]:
    """Tables with a label and, when kinds are named, a column of one of them."""
    return [t for t in db.domain.tables if t.label and (not kinds or t.of(*kinds))]


def label_of(db: Database, t: Table, key: Value) -> Value:
    """The label of the row whose primary key is `key` (keys are 1..n in row order)."""
    return db.record(t.name, int(key) - 1)[label(t).name]  # type: ignore[arg-type]


def label(t: Table) -> Column:
    assert t.label is not None, f"{t.name} has no label column"
    return t.label


def pk(t: Table) -> str:
    assert t.pk is not None, f"{t.name} has no primary key"
    return t.pk.name


def nullable_columns(t: Table) -> list[Column]:
    return [c for c in t.columns if c.nullable and c.kind != "note"]


def edges(
    db: Database,
    child_label: bool = False,
    self_ref: bool = False,
    required: bool = False,
    unambiguous: bool = False,
) -> list[Edge]:
    """Foreign keys into labelled tables. `unambiguous` drops a key whose parent the child also
    reaches by another key: "the flights of an airport" would not say which of its two keys."""
    found = []
    for child in db.domain.tables:
        for fk in child.of("fk"):
            parent = db.domain.table(fk.ref)
            if (fk.ref == child.name) != self_ref or parent.label is None:
                continue
            if (child_label and child.label is None) or (required and fk.nullable):
                continue
            if unambiguous and sum(c.ref == fk.ref for c in child.of("fk")) > 1:
                continue
            found.append(Edge(child, fk, parent))
    return found


def parent_keys(db: Database, t: Table) -> list[Column]:
    keys = [c for c in t.of("fk") if c.ref != t.name and db.domain.table(c.ref).label]
    return keys if len(keys) >= 2 else []


def link_tables(db: Database, rng: random.Random) -> tuple[Table, Link, Table, Table]:
    """A link table, its link, and the tables on its left and right."""
    t = pick(rng, [t for t in db.domain.tables if t.link])
    assert t.link is not None
    left = db.domain.table(t.column(t.link.left).ref)
    right = db.domain.table(t.column(t.link.right).ref)
    return t, t.link, left, right


def filterable(t: Table) -> list[Column]:
    """Columns `condition` can filter on."""
    return t.of("category", "number", "date")


def additive(t: Table) -> list[Column]:
    """Numbers that add up to a meaningful total (salaries, not ages)."""
    return [c for c in t.of("number") if c.additive]


def sortable(t: Table) -> list[Column]:
    """NOT NULL numbers: SQLite sorts NULLs first, which would top an ascending list."""
    return [c for c in t.of("number") if not c.nullable]


def ordered_column(
    db: Database, rng: random.Random, need_category: bool = False
) -> tuple[Table, Column]:
    """A labelled table and a number to sort it by (see `sortable`)."""
    candidates = [
        (t, c) for t in tables(db) for c in sortable(t) if t.of("category") or not need_category
    ]
    return pick(rng, candidates)


def which(rng: random.Random, t: Table, pred: str) -> str:
    """A question asking for the labels of the rows of `t` that `pred`."""
    names = plural(label(t).phrase)
    return rng.choice([
        f"Which {t.plural} {pred}?",
        f"List the {names} of {t.plural} {t.who} {pred}.",
        f"Find the {names} of all {t.plural} {t.who} {pred}.",
        f"What are the {names} of the {t.plural} {t.who} {pred}?",
    ])


def condition(
    db: Database,
    rng: random.Random,
    t: Table,
    alias: str = "",
    index: int | None = None,
    exclude: str = "",
) -> Cond:
    """A condition on one column of `t` with a value from its rows; with `index`, one that row
    satisfies. `exclude` names a column not to filter on."""
    record = db.record(t.name, index) if index is not None else {}
    cols = [
        c for c in filterable(t)
        if c.name != exclude and db.distinct(t.name, c.name)
        and (index is None or record[c.name] is not None)
    ]
    col = pick(rng, cols)
    values = db.distinct(t.name, col.name)
    at = record.get(col.name)
    column_ref = ref(alias, col)
    if col.kind == "category":
        value = at if at is not None else rng.choice(values)
        return Cond(f"{column_ref} = {lit(value)}", col.pred("eq", str(value)), col.name)
    if col.kind == "date" and rng.random() < 0.3:
        year = str(at if at is not None else rng.choice(values))[:4]
        return Cond(f"{column_ref} LIKE {lit(year + '%')}", col.pred("year", year), col.name)
    op = pick(rng, [op for op in ("gt", "lt") if beyond(values, op, at)])
    bound = threshold(values, op, rng, at)
    symbol = ">" if op == "gt" else "<"
    return Cond(f"{column_ref} {symbol} {lit(bound)}", col.pred(op, str(bound)), col.name)


def beyond(values: list[Value], op: str, at: Value) -> list[Value]:
    """Candidate bounds that leave some row (the row `at`, when given) strictly beyond them."""
    if at is None:
        return values[:-1] if op == "gt" else values[1:]
    return [v for v in values if (v < at if op == "gt" else v > at)]  # type: ignore[operator]


def threshold(values: list[Value], op: str, rng: random.Random, at: Value = None) -> Value:
    return pick(rng, beyond(values, op, at))


def count_bound(sizes: Iterable[int], rng: random.Random) -> int:
    """A HAVING count(*) >= k bound that some group reaches; at least 2, or it says nothing."""
    reachable = sorted({n for n in sizes if n >= 2})
    return pick(rng, reachable[: max(1, len(reachable) * 2 // 3)])


def ref(alias: str, col: Column) -> str:
    return f"{alias}.{col.name}" if alias else col.name


def lit(value: Value) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def say(value: Value, col: Column) -> str:
    return f'"{value}"' if col.quoted else str(value)
