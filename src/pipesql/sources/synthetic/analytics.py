"""Templates for CASE, window functions and CTEs."""

from __future__ import annotations

import random

from pipesql.sources.synthetic.common import (
    Pair,
    additive,
    condition,
    edges,
    filterable,
    label,
    lit,
    ordered_column,
    pick,
    pk,
    tables,
    threshold,
)
from pipesql.sources.synthetic.data import Database
from pipesql.sources.synthetic.english import plural, singular_verb


def case_label(db: Database, rng: random.Random) -> Pair:
    t = pick(rng, tables(db, "number"))
    col = pick(rng, t.of("number"))
    bound = threshold(db.distinct(t.name, col.name), "gt", rng)
    high, low = col.levels
    pred = col.pred("gt", str(bound))
    subject = f"they {pred}" if t.person else f"it {singular_verb(pred)}"
    lab = label(t)
    q = rng.choice([
        f"For every {t.singular}, give the {lab.phrase} and the label {high} if {subject}, "
        f"otherwise {low}.",
        f"Show each {t.singular}'s {lab.phrase} and mark it {high} when {subject} and {low} "
        f"otherwise.",
    ])
    case = f"CASE WHEN {col.name} > {lit(bound)} THEN {lit(high)} ELSE {lit(low)} END"
    sql = f"SELECT {lab.name}, {case} FROM {t.name}"
    return Pair(q, sql)


def window_rank(db: Database, rng: random.Random) -> Pair:
    t, col = ordered_column(db, rng)
    lab = label(t)
    keys = t.of("category")
    if keys and rng.random() < 0.5:
        key = pick(rng, keys)
        q = rng.choice([
            f"Rank the {t.plural} by {col.phrase} within each {key.phrase}, highest first, "
            f"showing the {lab.phrase}, {key.phrase} and rank.",
            f"For each {t.singular}, show the {lab.phrase}, {key.phrase} and {t.their} rank by "
            f"{col.phrase} among {t.plural} of the same {key.phrase}, highest first.",
        ])
        window = f"PARTITION BY {key.name} ORDER BY {col.name} DESC"
        rank = f"RANK() OVER ({window}) AS {col.name}_rank"
        sql = f"SELECT {lab.name}, {key.name}, {rank} FROM {t.name}"
        return Pair(q, sql)
    q = rng.choice([
        f"Rank all {t.plural} by {col.phrase} from highest to lowest, showing each {lab.phrase}, "
        f"{col.phrase} and rank.",
        f"Show each {t.singular}'s {lab.phrase} and {col.phrase} with {t.their} rank by "
        f"{col.phrase}, highest first.",
    ])
    rank = f"RANK() OVER (ORDER BY {col.name} DESC) AS {col.name}_rank"
    sql = f"SELECT {lab.name}, {col.name}, {rank} FROM {t.name}"
    return Pair(q, sql)


def window_partition_average(db: Database, rng: random.Random) -> Pair:
    t = pick(rng, [t for t in tables(db, "number") if t.of("category")])
    col, key = pick(rng, t.of("number")), pick(rng, t.of("category"))
    lab = label(t)
    q = rng.choice([
        f"For each {t.singular}, show the {lab.phrase}, {key.phrase} and {col.phrase}, and the "
        f"average {col.phrase} of {t.plural} with the same {key.phrase}.",
        f"List every {t.singular}'s {lab.phrase}, {key.phrase} and {col.phrase} next to the "
        f"average {col.phrase} for {t.their} {key.phrase}.",
    ])
    sql = (
        f"SELECT {lab.name}, {key.name}, {col.name}, avg({col.name}) OVER (PARTITION BY "
        f"{key.name}) "
        f"AS avg_{col.name} FROM {t.name}"
    )
    return Pair(q, sql)


def window_running_total(db: Database, rng: random.Random) -> Pair:
    t = pick(rng, [t for t in db.domain.tables if t.of("date") and additive(t)])
    day, col = pick(rng, t.of("date")), pick(rng, additive(t))
    q = rng.choice([
        f"Show the running total of {col.phrase} over {t.plural} by {day.phrase}, listing each "
        f"{day.phrase}, {col.phrase} and running total.",
        f"List the {day.phrase} and {col.phrase} of every {t.singular} in {day.phrase} order, "
        f"with the cumulative {col.phrase} so far.",
    ])
    sql = (
        f"SELECT {day.name}, {col.name}, sum({col.name}) OVER (ORDER BY {day.name}) AS "
        f"running_total "
        f"FROM {t.name} ORDER BY {day.name}"
    )
    return Pair(q, sql)


def cte_above_average_count(db: Database, rng: random.Random) -> Pair:
    e = pick(rng, edges(db, unambiguous=True))
    p = label(e.parent)
    q = rng.choice([
        f"Which {e.parent.plural} have more {e.child.plural} than the average {e.parent.singular} "
        f"with {e.child.plural}?",
        f"List the {plural(p.phrase)} of {e.parent.plural} whose number of {e.child.plural} is "
        f"above the average among {e.parent.plural} that have any.",
    ])
    sql = (
        f"WITH counts AS (SELECT {e.fk.name}, count(*) AS cnt FROM {e.child.name} GROUP BY "
        f"{e.fk.name}) "
        f"SELECT T1.{p.name} FROM {e.parent.name} AS T1 JOIN counts ON T1.{pk(e.parent)} = "
        f"counts.{e.fk.name} "
        f"WHERE counts.cnt > (SELECT avg(cnt) FROM counts)"
    )
    return Pair(q, sql)


def cte_top_per_group(db: Database, rng: random.Random) -> Pair:
    t, col = ordered_column(db, rng, need_category=True)
    key, lab = pick(rng, t.of("category")), label(t)
    k = rng.randint(2, 3)
    top = f"{k} {col.most} {t.plural}"
    if not col.most:
        top = f"{k} {t.plural} with the highest {col.phrase}"
    q = rng.choice([
        f"List the {top} in each {key.phrase}, with their {key.phrase}.",
        f"For every {key.phrase}, which {k} {t.plural} have the highest {col.phrase}? Show "
        f"{lab.phrase} and {key.phrase}.",
    ])
    sql = (
        f"WITH ranked AS (SELECT {lab.name}, {key.name}, RANK() OVER (PARTITION BY {key.name} "
        f"ORDER BY {col.name} DESC) AS rnk FROM {t.name}) "
        f"SELECT {lab.name}, {key.name} FROM ranked WHERE rnk <= {k}"
    )
    return Pair(q, sql)


def cte_filtered_groups(db: Database, rng: random.Random) -> Pair:
    t = pick(rng, [
        t for t in db.domain.tables
        if t.of("category") and len(filterable(t)) >= 2
    ])
    key = pick(rng, t.of("category"))
    cond = condition(db, rng, t, exclude=key.name)
    q = rng.choice([
        f"Among {t.plural} {t.who} {cond.pred}, how many are there for each {key.phrase}?",
        f"Considering only {t.plural} {t.who} {cond.pred}, count them per {key.phrase}.",
    ])
    sql = (
        f"WITH selected AS (SELECT * FROM {t.name} WHERE {cond.sql}) "
        f"SELECT {key.name}, count(*) FROM selected GROUP BY {key.name}"
    )
    return Pair(q, sql)
