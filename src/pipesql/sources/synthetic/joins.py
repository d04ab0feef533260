"""Templates that join tables along foreign keys: parents, link tables and self-references.

Gold SQL here is portable standard SQL: a parent's label shown per group is grouped too
(`GROUP BY T1.fk, T2.name`), never left bare as SQLite allows and Spark rejects
(MISSING_AGGREGATION); the key determines the label, so the groups are the same.
"""

from __future__ import annotations

import random

from pipesql.sources.synthetic.common import (
    Pair,
    condition,
    count_bound,
    edges,
    filterable,
    label,
    label_of,
    link_tables,
    lit,
    parent_keys,
    pick,
    pk,
    say,
    sortable,
    which,
)
from pipesql.sources.synthetic.data import Database
from pipesql.sources.synthetic.english import article, plural


def join_project(db: Database, rng: random.Random) -> Pair:
    e = pick(rng, edges(db, child_label=True))
    c, p = label(e.child), label(e.parent)
    q = rng.choice([
        f"Show the {c.phrase} of each {e.child.singular} together with the {p.phrase} of "
        f"{e.child.their} {e.fk.role}.",
        f"List every {e.child.singular}'s {c.phrase} and the {p.phrase} of {e.child.their} "
        f"{e.fk.role}.",
        f"For each {e.child.singular}, give {e.child.their} {c.phrase} and {e.child.their} "
        f"{e.fk.role}'s {p.phrase}.",
    ])
    return Pair(q, f"SELECT T1.{c.name}, T2.{p.name} FROM {e.join()}")


def join_filter_parent(db: Database, rng: random.Random) -> Pair:
    """Children of one named parent: the parent is drawn among those that have children."""
    e = pick(rng, edges(db, child_label=True))
    p = label(e.parent)
    value = label_of(db, e.parent, pick(rng, db.distinct(e.child.name, e.fk.name)))
    said = say(value, p)
    pred = rng.choice([e.fk.pred("eq", said), f"have {said} as their {e.fk.role}"])
    sql = f"SELECT T1.{label(e.child).name} FROM {e.join()} WHERE T2.{p.name} = {lit(value)}"
    return Pair(which(rng, e.child, pred), sql)


def join_filter_attribute(db: Database, rng: random.Random) -> Pair:
    e = pick(rng, [e for e in edges(db) if filterable(e.parent)])
    cond = condition(db, rng, e.parent, alias="T2")
    role = e.fk.role
    if e.child.label is None or rng.random() < 0.3:
        q = f"How many {e.child.plural} have {article(role)} that {cond.pred1}?"
        return Pair(q, f"SELECT count(*) FROM {e.join()} WHERE {cond.sql}")
    q = rng.choice([
        f"List the {plural(label(e.child).phrase)} of {e.child.plural} whose {role} {cond.pred1}.",
        f"Which {e.child.plural} have {article(role)} that {cond.pred1}?",
    ])
    return Pair(q, f"SELECT T1.{label(e.child).name} FROM {e.join()} WHERE {cond.sql}")


def join_group_count(db: Database, rng: random.Random) -> Pair:
    e = pick(rng, edges(db, unambiguous=True))
    p = label(e.parent)
    q = rng.choice([
        f"For each {e.parent.singular}, show {e.parent.their} {p.phrase} and the number of "
        f"{e.child.plural}.",
        f"How many {e.child.plural} does each {e.parent.singular} have? Give the {p.phrase} too.",
        f"List each {e.parent.singular}'s {p.phrase} with {e.parent.their} count of "
        f"{e.child.plural}.",
    ])
    return Pair(q, f"SELECT T2.{p.name}, count(*) FROM {e.join()} GROUP BY T1.{e.fk.name}, T2.{p.name}")


def join_having(db: Database, rng: random.Random) -> Pair:
    e = pick(rng, edges(db, unambiguous=True))
    p = label(e.parent)
    k = count_bound(db.counts(e.child.name, e.fk.name).values(), rng)
    q = rng.choice([
        f"Which {e.parent.plural} have at least {k} {e.child.plural}?",
        f"List the {plural(p.phrase)} of {e.parent.plural} with {k} or more {e.child.plural}.",
    ])
    sql = f"SELECT T2.{p.name} FROM {e.join()} GROUP BY T1.{e.fk.name}, T2.{p.name} HAVING count(*) >= {k}"
    return Pair(q, sql)


def join_top(db: Database, rng: random.Random) -> Pair:
    e = pick(rng, edges(db, unambiguous=True))
    p = label(e.parent)
    q = rng.choice([
        f"Which {e.parent.singular} has the most {e.child.plural}?",
        f"What is the {p.phrase} of the {e.parent.singular} with the largest number of "
        f"{e.child.plural}?",
    ])
    sql = (
        f"SELECT T2.{p.name} FROM {e.join()} GROUP BY T1.{e.fk.name}, T2.{p.name} "
        "ORDER BY count(*) DESC LIMIT 1"
    )
    return Pair(q, sql)


def join_superlative(db: Database, rng: random.Random) -> Pair:
    """The top child of one named parent: a join with WHERE, ORDER BY and LIMIT."""
    e = pick(rng, [e for e in edges(db, child_label=True) if sortable(e.child)])
    col, lab, p = pick(rng, sortable(e.child)), label(e.child), label(e.parent)
    value = label_of(db, e.parent, pick(rng, db.distinct(e.child.name, e.fk.name)))
    pred = e.fk.pred("eq", say(value, p))
    high = rng.random() < 0.6
    extreme = "highest" if high else "lowest"
    q = rng.choice([
        f"Among {e.child.plural} {e.child.who} {pred}, which one has the {extreme} {col.phrase}?",
        f"What is the {lab.phrase} of the {e.child.singular} with the {extreme} {col.phrase} "
        f"among those {e.child.who} {pred}?",
    ])
    sql = (
        f"SELECT T1.{lab.name} FROM {e.join()} WHERE T2.{p.name} = {lit(value)} "
        f"ORDER BY T1.{col.name} {'DESC' if high else 'ASC'} LIMIT 1"
    )
    return Pair(q, sql)


def join_aggregate(db: Database, rng: random.Random) -> Pair:
    e = pick(rng, [e for e in edges(db, unambiguous=True) if e.child.of("number")])
    col, p = pick(rng, e.child.of("number")), label(e.parent)
    fn = pick(rng, ["avg", "max"] + (["sum"] if col.additive else []))
    word = {"max": "highest", "avg": "average", "sum": "total"}[fn]
    q = rng.choice([
        f"For each {e.parent.singular}, what is the {word} {col.phrase} of {e.parent.their} "
        f"{e.child.plural}? Show the {p.phrase}.",
        f"Show each {e.parent.singular}'s {p.phrase} and the {word} {col.phrase} of "
        f"{e.parent.their} {e.child.plural}.",
    ])
    sql = f"SELECT T2.{p.name}, {fn}(T1.{col.name}) FROM {e.join()} GROUP BY T1.{e.fk.name}, T2.{p.name}"
    return Pair(q, sql)


def join_two_parents(db: Database, rng: random.Random) -> Pair:
    """A row with two keys (a flight's airports, a performance's singer and concert): 3 tables,
    and the same table twice when both keys point at one table."""
    t = pick(rng, [t for t in db.domain.tables if parent_keys(db, t)])
    first, second = rng.sample(parent_keys(db, t), 2)
    p1, p2 = db.domain.table(first.ref), db.domain.table(second.ref)
    l1, l2 = label(p1), label(p2)
    q = rng.choice([
        f"For every {t.singular}, show the {l1.phrase} of its {first.role} and the {l2.phrase} of "
        f"its {second.role}.",
        f"List the {first.role} {l1.phrase} and the {second.role} {l2.phrase} of each "
        f"{t.singular}.",
    ])
    sql = (
        f"SELECT T2.{l1.name}, T3.{l2.name} FROM {t.name} AS T1 "
        f"JOIN {p1.name} AS T2 ON T1.{first.name} = T2.{pk(p1)} "
        f"JOIN {p2.name} AS T3 ON T1.{second.name} = T3.{pk(p2)}"
    )
    return Pair(q, sql)


def link_filter(db: Database, rng: random.Random) -> Pair:
    """Left rows related through a link table to some right row(s): a 3-table join."""
    t, link, left, right = link_tables(db, rng)
    lab, rlab = label(left), label(right)
    names = plural(lab.phrase)
    if filterable(right) and rng.random() < 0.4:
        cond = condition(db, rng, right, alias="T3")
        other = f"{article(right.singular)} that {cond.pred1}"
        q = rng.choice([
            f"Which {left.plural} {link.verb} {other}?",
            f"List the distinct {names} of {left.plural} {left.who} {link.verb} {other}.",
        ])
        select, where = f"SELECT DISTINCT T1.{lab.name}", cond.sql
    else:
        value = label_of(db, right, pick(rng, db.distinct(t.name, link.right)))
        other = f"the {right.singular} {say(value, rlab)}"
        q = rng.choice([
            f"Which {left.plural} {link.verb} {other}?",
            f"List the {names} of {left.plural} {left.who} {link.verb} {other}.",
        ])
        select, where = f"SELECT T1.{lab.name}", f"T3.{rlab.name} = {lit(value)}"
    sql = (
        f"{select} FROM {left.name} AS T1 JOIN {t.name} AS T2 ON T1.{pk(left)} = T2.{link.left} "
        f"JOIN {right.name} AS T3 ON T2.{link.right} = T3.{pk(right)} WHERE {where}"
    )
    return Pair(q, sql)


def link_count(db: Database, rng: random.Random) -> Pair:
    """How many right rows one left row relates to; DISTINCT where the pair may repeat."""
    t, link, left, right = link_tables(db, rng)
    lab = label(left)
    value = label_of(db, left, pick(rng, db.distinct(t.name, link.left)))
    subject = say(value, lab) if left.person else f"the {left.singular} {say(value, lab)}"
    counted = "count(*)" if t.pk is None else f"count(DISTINCT T2.{link.right})"
    q = rng.choice([
        f"Count the {right.plural} that {subject} {link.verb}.",
        f"Give the number of {right.plural} {subject} {link.verb}.",
    ])
    sql = (
        f"SELECT {counted} FROM {left.name} AS T1 JOIN {t.name} AS T2 "
        f"ON T1.{pk(left)} = T2.{link.left} WHERE T1.{lab.name} = {lit(value)}"
    )
    return Pair(q, sql)


def self_join(db: Database, rng: random.Random) -> Pair:
    e = pick(rng, edges(db, child_label=True, self_ref=True))
    lab, t, role = label(e.child), e.child, e.fk.role
    join = f"{t.name} AS T1 JOIN {t.name} AS T2 ON T1.{e.fk.name} = T2.{pk(t)}"
    compared = [c for c in t.of("number") if c.is_comparative]
    kind = rng.choice(["pairs", "named"] + (["compare"] if compared else []))
    if kind == "pairs":
        q = rng.choice([
            f"Show the {lab.phrase} of each {t.singular} together with the {lab.phrase} of "
            f"{t.their} {role}.",
            f"List every {t.singular} and {t.their} {role}, by {lab.phrase}.",
        ])
        return Pair(q, f"SELECT T1.{lab.name}, T2.{lab.name} FROM {join}")
    if kind == "named":
        value = label_of(db, t, pick(rng, db.distinct(t.name, e.fk.name)))
        said = say(value, lab)
        pred = rng.choice([e.fk.pred("eq", said), f"have {said} as their {role}"])
        sql = f"SELECT T1.{lab.name} FROM {join} WHERE T2.{lab.name} = {lit(value)}"
        return Pair(which(rng, t, pred), sql)
    col = pick(rng, compared)
    op, symbol = rng.choice([("gt", ">"), ("lt", "<")])
    pred = col.pred(op, f"their {role}")
    sql = f"SELECT T1.{lab.name} FROM {join} WHERE T1.{col.name} {symbol} T2.{col.name}"
    return Pair(which(rng, t, pred), sql)
