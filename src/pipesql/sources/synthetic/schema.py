"""Declarative schemas: for every column, how to fill it with data and how a question names it.

The question templates (`templates.py`) work on any domain through these descriptions, so a new
domain is data only. Predicates are plural verb phrases with a `{v}` slot ("are older than {v}"):
they follow "singers who ..." and "How many singers ...?", and `english.singular_verb` agrees them
with one subject. A `gt`/`lt` phrase ending in "than {v}" also reads with a noun in the slot
("earn more than their manager"), which lets the self-join and subquery templates reuse it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipesql.sources.synthetic.english import article, plural

Kind = Literal["pk", "label", "category", "number", "date", "note", "fk"]


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    phrase: str = ""                     # how a question names it: "net worth"
    pool: tuple[tuple[str, ...], ...] = ()  # label/category/note: one word drawn per part
    low: float = 0                       # number: inclusive range, in steps of `step`
    high: float = 0
    step: float = 1                      # a fractional step makes a REAL column
    dates: tuple[str, str] = ("", "")    # date: inclusive ISO range
    after: str = ""                      # date: 1-60 days after this column of the same row
    nullable: float = 0.0                # fraction of NULLs
    ref: str = ""                        # fk: the referenced table
    role: str = ""                       # fk: the parent as seen from this row: "manager"
    quoted: bool = False                 # label: questions quote values ("the concert "X"")
    additive: bool = False               # number: a total (sum) makes sense
    most: str = ""                       # number: superlatives, "oldest" / "youngest"
    least: str = ""
    levels: tuple[str, str] = ("High", "Low")  # number: CASE labels above / below a threshold
    eq: str = ""
    gt: str = ""
    lt: str = ""
    year: str = ""                       # date: "were hired in {v}"
    is_null: str = ""
    not_null: str = ""

    @property
    def sql_type(self) -> str:
        if self.kind in ("pk", "fk") or (self.kind == "number" and float(self.step).is_integer()):
            return "INTEGER"
        return "REAL" if self.kind == "number" else "TEXT"

    @property
    def is_comparative(self) -> bool:
        """Its gt/lt phrases read with a noun in the slot: see the module docstring."""
        return self.gt.endswith("than {v}") and self.lt.endswith("than {v}")

    def pred(self, op: str, value: str, plain: bool = False) -> str:
        """The plural predicate for `op` (eq, gt, lt, year, is_null, not_null) on `value`;
        `plain` skips the custom phrase for the generic one ("have a salary above {v}")."""
        custom = "" if plain else getattr(self, op)
        return (custom or self._default(op)).format(v=value)

    def _default(self, op: str) -> str:
        later, earlier = ("after", "before") if self.kind == "date" else ("above", "below")
        return {
            "eq": f"have the {self.phrase} {{v}}",
            "gt": f"have {article(self.phrase)} {later} {{v}}",
            "lt": f"have {article(self.phrase)} {earlier} {{v}}",
            "year": f"have {article(self.phrase)} in {{v}}",
            "is_null": f"have no recorded {self.phrase}",
            "not_null": f"have a recorded {self.phrase}",
        }[op]


@dataclass(frozen=True)
class Link:
    """A table relating two others: `left` rows `verb` `right` rows ("singers performed in")."""

    left: str   # fk column names
    right: str
    verb: str   # past tense, reads after the left plural and at the end of a clause


@dataclass(frozen=True)
class Table:
    name: str
    singular: str
    columns: tuple[Column, ...]
    person: bool = False        # "who"/"their" rather than "that"/"its"
    link: Link | None = None

    @property
    def plural(self) -> str:
        return plural(self.singular)

    @property
    def who(self) -> str:
        return "who" if self.person else "that"

    @property
    def their(self) -> str:
        return "their" if self.person else "its"

    @property
    def pk(self) -> Column | None:
        return next((c for c in self.columns if c.kind == "pk"), None)

    @property
    def label(self) -> Column | None:
        return next((c for c in self.columns if c.kind == "label"), None)

    def of(self, *kinds: Kind) -> list[Column]:
        return [c for c in self.columns if c.kind in kinds]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    def create_sql(self) -> str:
        """CREATE TABLE with types, keys and NOT NULL, in Spider's style."""
        lines = [f"  {c.name} {c.sql_type}{_constraint(c)}" for c in self.columns]
        if self.pk is None and self.link:
            lines.append(f"  PRIMARY KEY ({self.link.left}, {self.link.right})")
        for c in self.of("fk"):
            ref_pk = f"{c.ref}_id"
            lines.append(f"  FOREIGN KEY ({c.name}) REFERENCES {c.ref}({ref_pk})")
        return f"CREATE TABLE {self.name} (\n" + ",\n".join(lines) + "\n)"


@dataclass(frozen=True)
class Domain:
    name: str                    # the db_id of its first database
    tables: tuple[Table, ...]    # parents before children: rows are generated in this order

    def __post_init__(self) -> None:
        """Catch a mistyped schema at import: keys follow `<table>_id`, parents come first."""
        seen: set[str] = set()
        for t in self.tables:
            if t.pk is not None and t.pk.name != f"{t.name}_id":
                raise ValueError(f"{self.name}.{t.name}: primary key must be {t.name}_id")
            for c in t.of("fk"):
                if c.ref not in seen | {t.name}:
                    raise ValueError(f"{self.name}.{t.name}.{c.name}: {c.ref!r} must come first")
            seen.add(t.name)

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)


def _constraint(c: Column) -> str:
    if c.kind == "pk":
        return " PRIMARY KEY"
    if c.kind in ("label", "fk") and not c.nullable:
        return " NOT NULL"
    return ""
