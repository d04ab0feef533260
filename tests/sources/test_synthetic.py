"""The synthetic benchmark: reproducible files, realistic schemas, and gold SQL that runs, covers
what real benchmarks hold, and copies its values from the question."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from pipesql.params.download import SyntheticDataParams
from pipesql.sources.raw import DIFFICULTIES, Example
from pipesql.sources.synthetic import generate_synthetic
from pipesql.sources.synthetic.domains import DOMAINS
from pipesql.sql.difficulty import grade_difficulty

Generated = tuple[list[Example], dict[str, Path]]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    """The default sizes: what the default pipeline trains on."""
    return generate_synthetic(SyntheticDataParams(), 0, tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="module")
def trees(generated: Generated) -> list[exp.Expression]:
    return [sqlglot.parse_one(e.gold_sql, read="sqlite") for e in generated[0]]


def _generate(tmp_path: Path, seed: int, **sizes: int) -> Generated:
    params = SyntheticDataParams(**{"n_databases": 8, "n_examples": 300, **sizes})
    return generate_synthetic(params, seed, tmp_path / f"seed{seed}")


def _hashes(paths: dict[str, Path]) -> dict[str, str]:
    return {db: hashlib.sha256(p.read_bytes()).hexdigest() for db, p in paths.items()}


# ---------------------------------------------------------------- determinism and layout


def test_same_seed_gives_same_examples_and_identical_files(tmp_path: Path) -> None:
    first_examples, first_paths = _generate(tmp_path / "a", 7)
    second_examples, second_paths = _generate(tmp_path / "b", 7)
    assert first_examples == second_examples
    assert _hashes(first_paths) == _hashes(second_paths)


def test_other_seed_differs(tmp_path: Path) -> None:
    examples, paths = _generate(tmp_path, 7)
    other_examples, other_paths = _generate(tmp_path, 8)
    assert [e.question for e in examples] != [e.question for e in other_examples]
    assert set(_hashes(paths).values()).isdisjoint(_hashes(other_paths).values())


def test_databases_beyond_the_domains_cycle_with_new_rows(tmp_path: Path) -> None:
    examples, paths = _generate(tmp_path, 0, n_databases=len(DOMAINS) + 2)
    assert {"concert_singer_2", "company_2"} <= set(paths)
    hashes = _hashes(paths)
    assert hashes["concert_singer"] != hashes["concert_singer_2"]
    assert {e.db_id for e in examples} == set(paths)


def test_layout_ids_and_fields(generated: Generated) -> None:
    examples, paths = generated
    assert len(examples) == SyntheticDataParams().n_examples
    assert len(paths) == SyntheticDataParams().n_databases
    assert all(p.name == f"{db}.sqlite" and p.parent.name == db for db, p in paths.items())
    assert [e.id for e in examples] == [f"synthetic-{i:06d}" for i in range(1, len(examples) + 1)]
    assert all(e.split is None and e.difficulty in DIFFICULTIES for e in examples)


# ---------------------------------------------------------------- schemas and data


def _query(paths: dict[str, Path], sql: str) -> list[tuple[object, ...]]:
    rows = []
    for path in paths.values():
        with sqlite3.connect(path) as con:
            for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
                rows += [(path.stem, table, *r) for r in con.execute(sql.format(table=table))]
        con.close()
    return rows


def test_schemas_have_keys_including_a_self_reference(generated: Generated) -> None:
    _, paths = generated
    keys = _query(paths, "SELECT name FROM pragma_table_info('{table}') WHERE pk > 0")
    foreign = _query(paths, "SELECT \"table\" FROM pragma_foreign_key_list('{table}')")
    tables = {(db, t) for db, t, *_ in _query(paths, "SELECT 1")}
    assert {(db, t) for db, t, _ in keys} == tables  # every table has a primary key
    assert len({db for db, _, _ in foreign}) == len(paths)
    assert any(table == parent for _, table, parent in foreign)


def test_data_holds_nulls_duplicates_dates_quotes_and_types(generated: Generated) -> None:
    _, paths = generated
    columns = _query(paths, "SELECT name, type FROM pragma_table_info('{table}')")
    assert {kind for *_, kind in columns} == {"INTEGER", "REAL", "TEXT"}
    values: list[object] = []
    nulls = duplicated = 0
    for db, table, name, _ in columns:
        with sqlite3.connect(paths[db]) as con:
            column = [v for (v,) in con.execute(f"SELECT {name} FROM {table}")]
        con.close()
        nulls += column.count(None)
        duplicated += name == "name" and len(set(column)) < len(column)
        values += column
    text = [v for v in values if isinstance(v, str)]
    assert nulls > 0 and duplicated > 0
    assert any("'" in v for v in text) and any('"' in v for v in text)
    assert any(re.fullmatch(r"\d{4}-\d{2}-\d{2}", v) for v in text)


# ---------------------------------------------------------------- gold SQL


def test_gold_sql_runs_and_most_queries_return_rows(generated: Generated) -> None:
    examples, paths = generated
    connections = {db: sqlite3.connect(p) for db, p in paths.items()}
    try:
        answered = sum(bool(connections[e.db_id].execute(e.gold_sql).fetchall()) for e in examples)
    finally:
        for con in connections.values():
            con.close()
    assert answered >= 0.8 * len(examples)


def test_gold_sql_groups_every_column_it_shows(trees: list[exp.Expression]) -> None:
    """Portable: no column outside GROUP BY and aggregates (SQLite's bare column, which Spark
    rejects as MISSING_AGGREGATION), so the pipe SQL means what standard SQL means."""
    bare = [tree.sql() for tree in trees if any(_bare_columns(s) for s in tree.find_all(exp.Select))]
    assert bare == []


def _bare_columns(select: exp.Select) -> list[str]:
    group = select.args.get("group")
    aggregated = group or any(
        a.find_ancestor(exp.Select) is select and not a.find_ancestor(exp.Window)
        for a in select.find_all(exp.AggFunc)
    )
    if not aggregated:
        return []
    keys = {k.sql().lower() for k in (group.expressions if group else [])}
    aliases = {p.alias.lower() for p in select.expressions if p.alias}
    clauses = [*select.expressions, select.args.get("having"), select.args.get("order")]
    return [
        c.sql()
        for clause in filter(None, clauses)
        for c in clause.find_all(exp.Column)
        if c.find_ancestor(exp.Select) is select
        and not c.find_ancestor(exp.AggFunc)
        and c.sql().lower() not in keys
        and c.name.lower() not in aliases
    ]


def test_difficulty_is_the_graded_level_and_every_level_occurs(generated: Generated) -> None:
    examples, _ = generated
    assert all(e.difficulty == grade_difficulty(e.gold_sql) for e in examples)
    assert set(Counter(e.difficulty for e in examples)) == set(DIFFICULTIES)


def test_every_literal_appears_in_the_question(
    generated: Generated, trees: list[exp.Expression]
) -> None:
    """So a model can copy values; the LIMIT 1 of a superlative ("the oldest") is the exception."""
    missing = []
    for example, tree in zip(generated[0], trees, strict=True):
        for literal in tree.find_all(exp.Literal):
            value = literal.this.strip("%") if literal.is_string else literal.this
            if isinstance(literal.parent, exp.Limit) and value == "1":
                continue
            if value not in example.question:
                missing.append((value, example.question, example.gold_sql))
    assert not missing, missing[:5]


def test_questions_read_as_english(generated: Generated) -> None:
    questions = [e.question for e in generated[0]]
    assert not [q for q in questions if "_" in q or re.search(r"\b(SELECT|WHERE|JOIN)\b", q)]
    assert len({q.split()[0] for q in questions}) >= 10  # varied openings, not one frame


def _is_self_join(tree: exp.Expression) -> bool:
    names = [t.name for t in tree.find_all(exp.Table)]
    return len(names) != len(set(names)) and any(tree.find_all(exp.Join))


def _compares_with_subquery(tree: exp.Expression) -> bool:
    comparisons = (exp.GT, exp.LT, exp.EQ, exp.GTE, exp.LTE)
    return any(isinstance(s.parent, comparisons) for s in tree.find_all(exp.Subquery))


def _derived_table(tree: exp.Expression) -> bool:
    return any(isinstance(s.parent, (exp.From, exp.Join)) for s in tree.find_all(exp.Subquery))


CONSTRUCTS: dict[str, Callable[[exp.Expression], bool]] = {
    "and": lambda t: any(t.find_all(exp.And)),
    "or": lambda t: any(t.find_all(exp.Or)),
    "like": lambda t: any(t.find_all(exp.Like)),
    "between": lambda t: any(t.find_all(exp.Between)),
    "in list": lambda t: any(i.args.get("expressions") for i in t.find_all(exp.In)),
    "is null": lambda t: any(isinstance(i.expression, exp.Null) for i in t.find_all(exp.Is)),
    "join": lambda t: any(t.find_all(exp.Join)),
    "three tables": lambda t: len(list(t.find_all(exp.Join))) >= 2,
    "self-join": _is_self_join,
    "group by": lambda t: any(t.find_all(exp.Group)),
    "having": lambda t: any(t.find_all(exp.Having)),
    "order by + limit": lambda t: bool(t.find(exp.Order) and t.find(exp.Limit)),
    "distinct": lambda t: any(isinstance(s.args.get("distinct"), exp.Distinct)
                              for s in t.find_all(exp.Select)),
    "count distinct": lambda t: any(isinstance(c.this, exp.Distinct)
                                    for c in t.find_all(exp.Count)),
    "in subquery": lambda t: any(i.args.get("query") for i in t.find_all(exp.In)),
    "not in subquery": lambda t: any(isinstance(n.this, exp.In) and n.this.args.get("query")
                                     for n in t.find_all(exp.Not)),
    "exists": lambda t: any(t.find_all(exp.Exists)),
    "scalar subquery": _compares_with_subquery,
    "derived table": _derived_table,
    "union": lambda t: any(t.find_all(exp.Union)),
    "intersect": lambda t: any(t.find_all(exp.Intersect)),
    "except": lambda t: any(t.find_all(exp.Except)),
    "case": lambda t: any(t.find_all(exp.Case)),
    "window": lambda t: any(t.find_all(exp.Window)),
    "cte": lambda t: any(t.find_all(exp.With)),
}


@pytest.mark.parametrize("construct", list(CONSTRUCTS))
def test_construct_appears(construct: str, trees: list[exp.Expression]) -> None:
    assert any(CONSTRUCTS[construct](tree) for tree in trees)
