"""Templates with a query inside a query: IN, NOT IN, EXISTS, scalar and derived-table
subqueries, and UNION, INTERSECT and EXCEPT."""

from __future__ import annotations

import random

from pipesql.sources.synthetic.common import (
    NotApplicable,
    Pair,
    additive,
    condition,
    edges,
    filterable,
    label,
    lit,
    pick,
    pk,
    tables,
    which,
)
from pipesql.sources.synthetic.data import Database
from pipesql.sources.synthetic.english import article, plural, singular_verb


def nested_in(db: Database, rng: random.Random) -> Pair:
    e = pick(rng, [e for e in edges(db, unambiguous=True) if filterable(e.child)])
    cond = condition(db, rng, e.child)
    p = label(e.parent)
    q = rng.choice([
        f"Which {e.parent.plural} have at least one {e.child.singular} that {cond.pred1}?",
        f"List the {plural(p.phrase)} of {e.parent.plural} with some {e.child.singular} that "
        f"{cond.pred1}.",
    ])
    sql = (
        f"SELECT {p.name} FROM {e.parent.name} WHERE {pk(e.parent)} IN "
        f"(SELECT {e.fk.name} FROM {e.child.name} WHERE {cond.sql})"
    )
    return Pair(q, sql)


def nested_not_in(db: Database, rng: random.Random) -> Pair:
    """Only over NOT NULL keys: `x NOT IN (.., NULL)` is never true, a classic empty answer."""
    e = pick(rng, edges(db, required=True, unambiguous=True))
    p = label(e.parent)
    link = e.child.link
    phrasings = [
        f"Which {e.parent.plural} have no {e.child.plural}?",
        f"List the {plural(p.phrase)} of {e.parent.plural} without any {e.child.singular}.",
    ]
    if link and link.left == e.fk.name:
        other = db.domain.table(e.child.column(link.right).ref)
        phrasings.append(f"Which {e.parent.plural} never {link.verb} any {other.singular}?")
    sql = (
        f"SELECT {p.name} FROM {e.parent.name} WHERE {pk(e.parent)} NOT IN "
        f"(SELECT {e.fk.name} FROM {e.child.name})"
    )
    return Pair(rng.choice(phrasings), sql)


def exists(db: Database, rng: random.Random) -> Pair:
    e = pick(rng, [e for e in edges(db, unambiguous=True) if filterable(e.child)])
    cond = condition(db, rng, e.child, alias="T2")
    p = label(e.parent)
    negate = rng.random() < 0.4
    child = article(e.child.singular)
    q = (
        f"For which {e.parent.plural} is there no {e.child.singular} that {cond.pred1}?"
        if negate
        else rng.choice([
            f"For which {e.parent.plural} is there {child} that {cond.pred1}?",
            f"Find the {plural(p.phrase)} of {e.parent.plural} for which some {e.child.singular} "
            f"{cond.pred1}.",
        ])
    )
    sql = (
        f"SELECT T1.{p.name} FROM {e.parent.name} AS T1 WHERE {'NOT ' if negate else ''}EXISTS "
        f"(SELECT * FROM {e.child.name} AS T2 WHERE T2.{e.fk.name} = T1.{pk(e.parent)} AND "
        f"{cond.sql})"
    )
    return Pair(q, sql)


def scalar_average(db: Database, rng: random.Random) -> Pair:
    t = pick(rng, tables(db, "number"))
    col = pick(rng, t.of("number"))
    op, symbol = rng.choice([("gt", ">"), ("lt", "<")])
    average = f"the average {col.phrase}"
    pred = col.pred(op, average, plain=not col.is_comparative)
    average_sql = f"(SELECT avg({col.name}) FROM {t.name})"
    sql = f"SELECT {label(t).name} FROM {t.name} WHERE {col.name} {symbol} {average_sql}"
    return Pair(which(rng, t, pred), sql)


def scalar_group_max(db: Database, rng: random.Random) -> Pair:
    """Beat every member of one group: the group is drawn among those not holding the maximum."""
    t = pick(rng, [t for t in tables(db, "number") if t.of("category")])
    col, key = pick(rng, t.of("number")), pick(rng, t.of("category"))
    groups = db.grouped(t.name, key.name, col.name)
    top = max(db.distinct(t.name, col.name), default=None)
    value = pick(rng, [k for k, vs in groups.items() if max(vs) != top])
    member = f"{t.singular} {t.who} {singular_verb(key.pred('eq', str(value)))}"
    q = rng.choice([
        f"Which {t.plural} have a higher {col.phrase} than every {member}?",
        f"List the {plural(label(t).phrase)} of {t.plural} whose {col.phrase} exceeds that of "
        f"every {member}.",
    ])
    sql = (
        f"SELECT {label(t).name} FROM {t.name} WHERE {col.name} > "
        f"(SELECT max({col.name}) FROM {t.name} WHERE {key.name} = {lit(value)})"
    )
    return Pair(q, sql)


def derived_average_count(db: Database, rng: random.Random) -> Pair:
    e = pick(rng, edges(db, unambiguous=True))
    q = rng.choice([
        f"On average, how many {e.child.plural} does {article(e.parent.singular)} have?",
        f"What is the average number of {e.child.plural} per {e.parent.singular}, counting those "
        f"with at least one?",
    ])
    sql = f"SELECT avg(cnt) FROM (SELECT count(*) AS cnt FROM {e.child.name} GROUP BY {e.fk.name})"
    return Pair(q, sql)


def derived_join(db: Database, rng: random.Random) -> Pair:
    e = pick(rng, edges(db, unambiguous=True))
    p = label(e.parent)
    q = rng.choice([
        f"List each {e.parent.singular}'s {p.phrase} with {e.parent.their} number of "
        f"{e.child.plural}, from most to fewest.",
        f"Show the {plural(p.phrase)} of {e.parent.plural} and how many {e.child.plural} each "
        f"has, largest count first.",
    ])
    sql = (
        f"SELECT T1.{p.name}, T2.cnt FROM {e.parent.name} AS T1 JOIN "
        f"(SELECT {e.fk.name}, count(*) AS cnt FROM {e.child.name} GROUP BY {e.fk.name}) AS T2 "
        f"ON T1.{pk(e.parent)} = T2.{e.fk.name} ORDER BY T2.cnt DESC"
    )
    return Pair(q, sql)


def derived_group_total(db: Database, rng: random.Random) -> Pair:
    t = pick(rng, [t for t in db.domain.tables if t.of("category") and additive(t)])
    key, col = pick(rng, t.of("category")), pick(rng, additive(t))
    q = rng.choice([
        f"What is the largest total {col.phrase} of any {key.phrase}, summing over its {t.plural}?",
        f"Across {key.phrase} groups of {t.plural}, what is the highest total {col.phrase}?",
    ])
    totals = f"SELECT {key.name}, sum({col.name}) AS total FROM {t.name} GROUP BY {key.name}"
    sql = f"SELECT max(total) FROM ({totals})"
    return Pair(q, sql)


# ---------------------------------------------------------------- set operations


def union(db: Database, rng: random.Random) -> Pair:
    t = pick(rng, tables(db, "category", "number", "date"))
    first, second = condition(db, rng, t), condition(db, rng, t)
    if first.sql == second.sql:
        raise NotApplicable
    names = plural(label(t).phrase)
    q = rng.choice([
        f"Give the {names} of {t.plural} {t.who} {first.pred}, together with those of {t.plural} "
        f"{t.who} {second.pred}.",
        f"Combine the {names} of {t.plural} {t.who} {first.pred} with the {names} of those "
        f"{t.who} {second.pred}.",
    ])
    lab = label(t).name
    sql = (
        f"SELECT {lab} FROM {t.name} WHERE {first.sql} "
        f"UNION SELECT {lab} FROM {t.name} WHERE {second.sql}"
    )
    return Pair(q, sql)


def union_join(db: Database, rng: random.Random) -> Pair:
    e = pick(rng, [
        e for e in edges(db, unambiguous=True) if filterable(e.parent) and filterable(e.child)
    ])
    own, via = condition(db, rng, e.parent), condition(db, rng, e.child, alias="T1")
    p = label(e.parent)
    child = article(e.child.singular)
    q = f"Which {e.parent.plural} either {own.pred} or have {child} that {via.pred1}?"
    sql = (
        f"SELECT {p.name} FROM {e.parent.name} WHERE {own.sql} "
        f"UNION SELECT T2.{p.name} FROM {e.join()} WHERE {via.sql}"
    )
    return Pair(q, sql)


def intersect(db: Database, rng: random.Random) -> Pair:
    """Groups holding both a high and a low value: thresholds come from one group's own rows."""
    t = pick(rng, [t for t in db.domain.tables if t.of("category") and t.of("number")])
    key, col = pick(rng, t.of("category")), pick(rng, t.of("number"))
    groups = {k: sorted(set(vs)) for k, vs in db.grouped(t.name, key.name, col.name).items()}
    value = pick(rng, [k for k, vs in groups.items() if len(vs) >= 2])
    low, high = groups[value][0], groups[value][-1]
    above, below = col.pred("gt", str(low)), col.pred("lt", str(high))
    many = plural(key.phrase)
    q = rng.choice([
        f"Which {many} have both {t.plural} {t.who} {above} and {t.plural} {t.who} {below}?",
        f"List the {many} shared by some {t.singular} {t.who} {singular_verb(above)} and some "
        f"{t.singular} {t.who} {singular_verb(below)}.",
    ])
    sql = (
        f"SELECT {key.name} FROM {t.name} WHERE {col.name} > {lit(low)} "
        f"INTERSECT SELECT {key.name} FROM {t.name} WHERE {col.name} < {lit(high)}"
    )
    return Pair(q, sql)


def intersect_join(db: Database, rng: random.Random) -> Pair:
    """Parents with children of two kinds: both kinds are read off one parent's children."""
    e = pick(rng, [e for e in edges(db, unambiguous=True) if e.child.of("category")])
    key = pick(rng, e.child.of("category"))
    kinds = {k: sorted(set(vs)) for k, vs in db.grouped(e.child.name, e.fk.name, key.name).items()}
    parent = pick(rng, [k for k, vs in kinds.items() if len(vs) >= 2])
    a, b = rng.sample(kinds[parent], 2)
    p = label(e.parent)
    pa, pb = singular_verb(key.pred("eq", str(a))), singular_verb(key.pred("eq", str(b)))
    child = article(e.child.singular)
    q = f"Which {e.parent.plural} have both {child} that {pa} and {child} that {pb}?"
    sql = (
        f"SELECT T2.{p.name} FROM {e.join()} WHERE T1.{key.name} = {lit(a)} "
        f"INTERSECT SELECT T2.{p.name} FROM {e.join()} WHERE T1.{key.name} = {lit(b)}"
    )
    return Pair(q, sql)


def except_group(db: Database, rng: random.Random) -> Pair:
    """Groups with no row above a bound: the bound is one group's maximum, so it qualifies."""
    t = pick(rng, [t for t in db.domain.tables if t.of("category") and t.of("number")])
    key, col = pick(rng, t.of("category")), pick(rng, t.of("number"))
    groups = db.grouped(t.name, key.name, col.name)
    bound = max(groups[pick(rng, list(groups))])
    pred = col.pred("gt", str(bound))
    q = rng.choice([
        f"Which {plural(key.phrase)} have no {t.plural} {t.who} {pred}?",
        f"List the {plural(key.phrase)} among {t.plural}, except those with some {t.singular} "
        f"{t.who} {singular_verb(pred)}.",
    ])
    sql = (
        f"SELECT {key.name} FROM {t.name} "
        f"EXCEPT SELECT {key.name} FROM {t.name} WHERE {col.name} > {lit(bound)}"
    )
    return Pair(q, sql)


def except_join(db: Database, rng: random.Random) -> Pair:
    e = pick(rng, [e for e in edges(db, unambiguous=True) if filterable(e.child)])
    cond = condition(db, rng, e.child, alias="T1")
    p = label(e.parent)
    q = rng.choice([
        f"Excluding {e.parent.plural} with {article(e.child.singular)} that {cond.pred1}, list "
        f"the {plural(p.phrase)} of the rest.",
        f"List the {plural(p.phrase)} of all {e.parent.plural} except those with "
        f"{article(e.child.singular)} that {cond.pred1}.",
    ])
    sql = (
        f"SELECT {p.name} FROM {e.parent.name} "
        f"EXCEPT SELECT T2.{p.name} FROM {e.join()} WHERE {cond.sql}"
    )
    return Pair(q, sql)
