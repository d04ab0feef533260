"""Templates over one table: projections, filters, aggregates, ordering and grouping."""

from __future__ import annotations

import random

from pipesql.sources.synthetic.common import (
    NotApplicable,
    Pair,
    condition,
    count_bound,
    filterable,
    label,
    lit,
    nullable_columns,
    ordered_column,
    pick,
    say,
    tables,
    which,
)
from pipesql.sources.synthetic.data import Database
from pipesql.sources.synthetic.english import article, join_words, plural


def project_label(db: Database, rng: random.Random) -> Pair:
    t = pick(rng, tables(db))
    names = plural(label(t).phrase)
    q = rng.choice([
        f"List the {names} of all {t.plural}.",
        f"What are the {names} of the {t.plural}?",
        f"Show the {label(t).phrase} of every {t.singular}.",
        f"Give me each {t.singular}'s {label(t).phrase}.",
    ])
    return Pair(q, f"SELECT {label(t).name} FROM {t.name}")


def project_columns(db: Database, rng: random.Random) -> Pair:
    t = pick(rng, tables(db, "category", "number", "date", "note"))
    others = t.of("category", "number", "date", "note")
    cols = [label(t), *rng.sample(others, min(len(others), rng.randint(1, 2)))]
    words = join_words([c.phrase for c in cols])
    q = rng.choice([
        f"Show the {words} of every {t.singular}.",
        f"List each {t.singular}'s {words}.",
        f"What are the {words} of all {t.plural}?",
    ])
    return Pair(q, f"SELECT {', '.join(c.name for c in cols)} FROM {t.name}")


def count_all(db: Database, rng: random.Random) -> Pair:
    t = pick(rng, db.domain.tables)
    q = rng.choice([
        f"How many {t.plural} are there?",
        f"Count the {t.plural}.",
        f"What is the total number of {t.plural}?",
        f"How many {t.plural} are recorded?",
    ])
    return Pair(q, f"SELECT count(*) FROM {t.name}")


def lookup(db: Database, rng: random.Random) -> Pair:
    t = pick(rng, tables(db, "category", "number", "date", "note"))
    others = t.of("category", "number", "date", "note")
    cols = rng.sample(others, min(len(others), rng.randint(1, 2)))
    value = pick(rng, db.distinct(t.name, label(t).name))
    subject = say(value, label(t)) if t.person else f"the {t.singular} {say(value, label(t))}"
    words = join_words([c.phrase for c in cols])
    verb = "is" if len(cols) == 1 else "are"
    q = rng.choice([
        f"What {verb} the {words} of {subject}?",
        f"Find the {words} of {subject}.",
        f"Tell me the {words} of {subject}.",
    ])
    where = f"{label(t).name} = {lit(value)}"
    return Pair(q, f"SELECT {', '.join(c.name for c in cols)} FROM {t.name} WHERE {where}")


def filter_rows(db: Database, rng: random.Random) -> Pair:
    t = pick(rng, tables(db, "category", "number", "date"))
    cond = condition(db, rng, t)
    return Pair(which(rng, t, cond.pred), f"SELECT {label(t).name} FROM {t.name} WHERE {cond.sql}")


def count_filter(db: Database, rng: random.Random) -> Pair:
    t = pick(rng, [t for t in db.domain.tables if filterable(t)])
    cond = condition(db, rng, t)
    q = rng.choice([
        f"How many {t.plural} {cond.pred}?",
        f"Count the {t.plural} {t.who} {cond.pred}.",
        f"What is the number of {t.plural} {t.who} {cond.pred}?",
    ])
    return Pair(q, f"SELECT count(*) FROM {t.name} WHERE {cond.sql}")


def filter_and(db: Database, rng: random.Random) -> Pair:
    """Both conditions hold for one drawn row, so the answer is never empty."""
    t = pick(rng, [t for t in tables(db) if len(filterable(t)) >= 2])
    index = rng.randrange(len(db.rows[t.name]))
    first = condition(db, rng, t, index=index)
    second = condition(db, rng, t, index=index, exclude=first.column)
    return Pair(
        which(rng, t, f"{first.pred} and {second.pred}"),
        f"SELECT {label(t).name} FROM {t.name} WHERE {first.sql} AND {second.sql}",
    )


def filter_or(db: Database, rng: random.Random) -> Pair:
    t = pick(rng, tables(db, "category", "number", "date"))
    first, second = condition(db, rng, t), condition(db, rng, t)
    if first.sql == second.sql:
        raise NotApplicable
    return Pair(
        which(rng, t, f"{first.pred} or {second.pred}"),
        f"SELECT {label(t).name} FROM {t.name} WHERE {first.sql} OR {second.sql}",
    )


def filter_like(db: Database, rng: random.Random) -> Pair:
    t = pick(rng, tables(db))
    lab = label(t)
    words = str(pick(rng, db.distinct(t.name, lab.name))).split()
    if rng.random() < 0.5:  # a prefix of the whole value, so of its first word
        part = words[0][: rng.randint(2, 3)]
        pattern, pred = f"{part}%", rng.choice([
            f"have {article(lab.phrase)} starting with {part}",
            f"have {article(lab.phrase)} that begins with {part}",
        ])
    else:
        word = pick(rng, [w for w in words if w.isalpha() and len(w) >= 4])
        start = rng.randint(0, len(word) - 3)
        part = word[start: start + 3].lower()
        pattern, pred = f"%{part}%", rng.choice([
            f'have "{part}" in their {lab.phrase}',
            f"have {article(lab.phrase)} containing {part}",
        ])
    sql = f"SELECT {lab.name} FROM {t.name} WHERE {lab.name} LIKE {lit(pattern)}"
    return Pair(which(rng, t, pred), sql)


def filter_between(db: Database, rng: random.Random) -> Pair:
    t = pick(rng, tables(db, "number", "date"))
    col = pick(rng, t.of("number", "date"))
    values = db.distinct(t.name, col.name)
    if len(values) < 3:
        raise NotApplicable
    low, high = sorted(rng.sample(values, 2))
    q = rng.choice([
        f"Which {t.plural} have {article(col.phrase)} between {low} and {high}?",
        f"List the {plural(label(t).phrase)} of {t.plural} whose {col.phrase} is between {low} "
        f"and {high}.",
        f"Find the {t.plural} with {article(col.phrase)} from {low} to {high}, giving their "
        f"{plural(label(t).phrase)}.",
    ])
    where = f"{col.name} BETWEEN {lit(low)} AND {lit(high)}"
    sql = f"SELECT {label(t).name} FROM {t.name} WHERE {where}"
    return Pair(q, sql)


def filter_in(db: Database, rng: random.Random) -> Pair:
    t = pick(rng, tables(db, "category"))
    col = pick(rng, t.of("category"))
    values = db.distinct(t.name, col.name)
    if len(values) < 3:
        raise NotApplicable
    chosen = sorted(rng.sample(values, rng.randint(2, 3)))
    pred = col.pred("eq", join_words([str(v) for v in chosen], "or"))
    listed = ", ".join(lit(v) for v in chosen)
    sql = f"SELECT {label(t).name} FROM {t.name} WHERE {col.name} IN ({listed})"
    return Pair(which(rng, t, pred), sql)


def filter_null(db: Database, rng: random.Random) -> Pair:
    t = pick(rng, [t for t in tables(db) if nullable_columns(t)])
    col = pick(rng, nullable_columns(t))
    is_null = rng.random() < 0.6
    pred = col.pred("is_null" if is_null else "not_null", "")
    where = f"{col.name} IS NULL" if is_null else f"{col.name} IS NOT NULL"
    if rng.random() < 0.3:
        return Pair(f"How many {t.plural} {pred}?", f"SELECT count(*) FROM {t.name} WHERE {where}")
    return Pair(which(rng, t, pred), f"SELECT {label(t).name} FROM {t.name} WHERE {where}")


def aggregate(db: Database, rng: random.Random) -> Pair:
    t = pick(rng, [t for t in db.domain.tables if t.of("number")])
    col = pick(rng, t.of("number"))
    fn = pick(rng, ["max", "min", "avg"] + (["sum"] if col.additive else []))
    word = {"max": "highest", "min": "lowest", "avg": "average", "sum": "total"}[fn]
    if t.of("category", "date") and rng.random() < 0.4:
        cond = condition(db, rng, t, exclude=col.name)
        q = rng.choice([
            f"What is the {word} {col.phrase} of {t.plural} {t.who} {cond.pred}?",
            f"Among {t.plural} {t.who} {cond.pred}, what is the {word} {col.phrase}?",
        ])
        return Pair(q, f"SELECT {fn}({col.name}) FROM {t.name} WHERE {cond.sql}")
    q = rng.choice([
        f"What is the {word} {col.phrase} of all {t.plural}?",
        f"Find the {word} {col.phrase} among {t.plural}.",
        f"What is the {word} {col.phrase} across the {t.plural}?",
    ])
    return Pair(q, f"SELECT {fn}({col.name}) FROM {t.name}")


def aggregate_many(db: Database, rng: random.Random) -> Pair:
    t = pick(rng, [t for t in db.domain.tables if t.of("number")])
    col = pick(rng, t.of("number"))
    fns = rng.choice([("max", "min"), ("avg", "max"), ("max", "min", "avg"), ("min", "avg")])
    words = join_words([{"max": "maximum", "min": "minimum", "avg": "average"}[f] for f in fns])
    q = rng.choice([
        f"What are the {words} {col.phrase} of all {t.plural}?",
        f"Show the {words} {col.phrase} across {t.plural}.",
    ])
    return Pair(q, f"SELECT {', '.join(f'{f}({col.name})' for f in fns)} FROM {t.name}")


def distinct_values(db: Database, rng: random.Random) -> Pair:
    t = pick(rng, [t for t in db.domain.tables if t.of("category")])
    col = pick(rng, t.of("category"))
    many = plural(col.phrase)
    q = rng.choice([
        f"What are the different {many} of the {t.plural}?",
        f"List the distinct {many} that {t.plural} have.",
        f"Show every {col.phrase} that appears among the {t.plural}, without repeats.",
    ])
    return Pair(q, f"SELECT DISTINCT {col.name} FROM {t.name}")


def count_distinct(db: Database, rng: random.Random) -> Pair:
    t = pick(rng, [t for t in db.domain.tables if t.of("category", "fk")])
    col = pick(rng, t.of("category", "fk"))
    many = plural(col.phrase)
    q = rng.choice([
        f"How many different {many} do the {t.plural} have?",
        f"Count the distinct {many} among {t.plural}.",
        f"How many distinct {many} are there across all {t.plural}?",
    ])
    return Pair(q, f"SELECT count(DISTINCT {col.name}) FROM {t.name}")


def top_k(db: Database, rng: random.Random) -> Pair:
    t, col = ordered_column(db, rng)
    k = rng.randint(2, 5)
    high = rng.random() < 0.6
    names = plural(label(t).phrase)
    adjective = col.most if high else col.least
    extreme = "highest" if high else "lowest"
    q = rng.choice([
        f"Which {k} {t.plural} have the {extreme} {col.phrase}?",
        f"List the {names} of the {k} {t.plural} with the {extreme} {col.phrase}.",
    ] + ([f"Which {k} {t.plural} are the {adjective}?"] if adjective else []))
    order = "DESC" if high else "ASC"
    return Pair(q, f"SELECT {label(t).name} FROM {t.name} ORDER BY {col.name} {order} LIMIT {k}")


def superlative(db: Database, rng: random.Random) -> Pair:
    t, col = ordered_column(db, rng)
    high = rng.random() < 0.6
    adjective = col.most if high else col.least
    extreme = "highest" if high else "lowest"
    who = "Who" if t.person else "Which"
    q = rng.choice([
        f"Which {t.singular} has the {extreme} {col.phrase}?",
        f"What is the {label(t).phrase} of the {t.singular} with the {extreme} {col.phrase}?",
    ] + ([f"{who} is the {adjective} {t.singular}?"] if adjective else []))
    order = "DESC" if high else "ASC"
    return Pair(q, f"SELECT {label(t).name} FROM {t.name} ORDER BY {col.name} {order} LIMIT 1")


def order_all(db: Database, rng: random.Random) -> Pair:
    t = pick(rng, tables(db, "number", "date"))
    col = pick(rng, t.of("number", "date"))
    lab = label(t)
    if rng.random() < 0.25:
        q = (
            f"List the {plural(lab.phrase)} and {plural(col.phrase)} of all {t.plural} "
            f"in alphabetical order of {lab.phrase}."
        )
        return Pair(q, f"SELECT {lab.name}, {col.name} FROM {t.name} ORDER BY {lab.name}")
    high = rng.random() < 0.5
    direction = "from highest to lowest" if high else "from lowest to highest"
    if col.kind == "date":
        direction = "from latest to earliest" if high else "from earliest to latest"
    q = rng.choice([
        f"List the {lab.phrase} and {col.phrase} of every {t.singular}, ordered by {col.phrase} "
        f"{direction}.",
        f"Show all {t.plural} with their {col.phrase}, sorted by {col.phrase} {direction}.",
    ])
    order = " DESC" if high else ""
    return Pair(q, f"SELECT {lab.name}, {col.name} FROM {t.name} ORDER BY {col.name}{order}")


def group_count(db: Database, rng: random.Random) -> Pair:
    t = pick(rng, [t for t in db.domain.tables if t.of("category")])
    col = pick(rng, t.of("category"))
    q = rng.choice([
        f"How many {t.plural} are there for each {col.phrase}?",
        f"Show each {col.phrase} and the number of {t.plural} with it.",
        f"Count the {t.plural} per {col.phrase}.",
    ])
    return Pair(q, f"SELECT {col.name}, count(*) FROM {t.name} GROUP BY {col.name}")


def group_aggregate(db: Database, rng: random.Random) -> Pair:
    t = pick(rng, [t for t in db.domain.tables if t.of("category") and t.of("number")])
    key, col = pick(rng, t.of("category")), pick(rng, t.of("number"))
    fn = pick(rng, ["max", "min", "avg"] + (["sum"] if col.additive else []))
    word = {"max": "highest", "min": "lowest", "avg": "average", "sum": "total"}[fn]
    q = rng.choice([
        f"What is the {word} {col.phrase} of {t.plural} for each {key.phrase}?",
        f"For each {key.phrase}, show the {key.phrase} and the {word} {col.phrase} of its "
        f"{t.plural}.",
    ])
    return Pair(q, f"SELECT {key.name}, {fn}({col.name}) FROM {t.name} GROUP BY {key.name}")


def group_having(db: Database, rng: random.Random) -> Pair:
    t = pick(rng, [t for t in db.domain.tables if t.of("category")])
    key = pick(rng, t.of("category"))
    many = plural(key.phrase)
    numbers = t.of("number")
    if numbers and rng.random() < 0.4:
        col = pick(rng, numbers)
        group = pick(rng, list(db.grouped(t.name, key.name, col.name).values()))
        average = sum(group) / len(group)  # type: ignore[arg-type]
        bound = int(average) - 1 if float(col.step).is_integer() else round(average - 0.5, 1)
        q = rng.choice([
            f"Which {many} have an average {col.phrase} above {bound}?",
            f"For which {many} is the average {col.phrase} of {t.plural} above {bound}?",
        ])
        having = f"HAVING avg({col.name}) > {bound}"
        sql = f"SELECT {key.name} FROM {t.name} GROUP BY {key.name} {having}"
        return Pair(q, sql)
    k = count_bound(db.counts(t.name, key.name).values(), rng)
    q = rng.choice([
        f"Which {many} have at least {k} {t.plural}?",
        f"List the {many} shared by {k} or more {t.plural}.",
    ])
    return Pair(q, f"SELECT {key.name} FROM {t.name} GROUP BY {key.name} HAVING count(*) >= {k}")


def group_top(db: Database, rng: random.Random) -> Pair:
    t = pick(rng, [t for t in db.domain.tables if t.of("category")])
    key = pick(rng, t.of("category"))
    q = rng.choice([
        f"Which {key.phrase} has the most {t.plural}?",
        f"What is the most common {key.phrase} among {t.plural}?",
    ])
    sql = f"SELECT {key.name} FROM {t.name} GROUP BY {key.name} ORDER BY count(*) DESC LIMIT 1"
    return Pair(q, sql)


def group_two_keys(db: Database, rng: random.Random) -> Pair:
    t = pick(rng, [t for t in db.domain.tables if len(t.of("category")) >= 2])
    a, b = rng.sample(t.of("category"), 2)
    q = rng.choice([
        f"How many {t.plural} are there for each combination of {a.phrase} and {b.phrase}?",
        f"Count the {t.plural} for every {a.phrase} and {b.phrase} pair.",
    ])
    return Pair(q, f"SELECT {a.name}, {b.name}, count(*) FROM {t.name} GROUP BY {a.name}, {b.name}")
