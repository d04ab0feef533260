"""Scoring one prediction: every status, the three execution rules, exact match. No model needed.

The strict comparison is golden_pairs' own (`results_match` with `is_ordered` of the gold SQL);
these cases pin what eval makes of it and of the Spider and BIRD rules on real queries: where
DISTINCT is removed, where column order or duplicates stop counting, the test-suite databases.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pipesql.evaluation.score import (
    CORRECT,
    GoldError,
    check_pipe_sql,
    gold_for,
    normal_form,
    score_prediction,
)

# (title, gold SQL, gold pipe SQL, prediction, status)
EXECUTION_CASES = [
    ("same rows", "SELECT k FROM t WHERE v = 1", "FROM t |> WHERE v = 1 |> SELECT k",
     "from t |> where v = 1 |> select k", CORRECT),
    ("order ignored without an outer ORDER BY", "SELECT k FROM t", "FROM t |> SELECT k",
     "FROM t |> ORDER BY f DESC |> SELECT k", CORRECT),
    ("order counts under the gold's outer ORDER BY", "SELECT k FROM t ORDER BY f",
     "FROM t |> ORDER BY f |> SELECT k", "FROM t |> ORDER BY f DESC |> SELECT k", "mismatch"),
    ("the right order under the gold's ORDER BY", "SELECT k FROM t ORDER BY f DESC",
     "FROM t |> ORDER BY f DESC |> SELECT k", "FROM t |> ORDER BY v DESC, f DESC |> SELECT k", CORRECT),
    ("an ORDER BY inside a subquery orders nothing",
     "SELECT k FROM (SELECT k, f FROM t ORDER BY f)", "FROM t |> ORDER BY f |> SELECT k",
     "FROM t |> ORDER BY f DESC |> SELECT k", CORRECT),
    ("a duplicate row dropped", "SELECT k FROM t", "FROM t |> SELECT k",
     "FROM t |> SELECT k |> DISTINCT", "mismatch"),
    ("same rows, other multiplicities", "SELECT k FROM t", "FROM t |> SELECT k",
     "FROM t |> WHERE f < 0.15 |> SELECT k |> UNION ALL (FROM t |> WHERE v = 2 |> SELECT k),"
     " (FROM t |> WHERE v = 2 |> SELECT k)", "mismatch"),
    ("a float within the tolerance", "SELECT SUM(f) FROM t", "FROM t |> AGGREGATE SUM(f)",
     "FROM t |> LIMIT 1 |> SELECT 0.6", CORRECT),
    ("a float past the tolerance", "SELECT SUM(f) FROM t", "FROM t |> AGGREGATE SUM(f)",
     "FROM t |> LIMIT 1 |> SELECT 0.6001", "mismatch"),
    ("a column too many", "SELECT k FROM t", "FROM t |> SELECT k", "FROM t |> SELECT k, v", "mismatch"),
]

# (title, gold SQL, prediction, strict, Spider, BIRD): where the rules part on real queries
RULE_CASES = [
    ("same rows", "SELECT k FROM t WHERE v = 1", "FROM t |> WHERE v = 1 |> SELECT k", True, True, True),
    ("columns swapped", "SELECT k, v FROM t", "FROM t |> SELECT v, k", False, True, False),
    ("DISTINCT the gold has", "SELECT DISTINCT k FROM t", "FROM t |> SELECT k", False, True, True),
    ("DISTINCT the gold lacks", "SELECT k FROM t", "FROM t |> SELECT k |> DISTINCT", False, True, True),
    ("COUNT(DISTINCT) against COUNT", "SELECT COUNT(DISTINCT k) FROM t", "FROM t |> AGGREGATE COUNT(k)",
     False, True, False),
    ("order under a subquery's ORDER BY", "SELECT k FROM (SELECT k, f FROM t ORDER BY f)",
     "FROM t |> ORDER BY f DESC |> SELECT k", True, False, True),
    ("float noise", "SELECT SUM(f) FROM t", "FROM t |> LIMIT 1 |> SELECT 0.6", True, False, False),
    ("nothing, one column against two", "SELECT k FROM t WHERE v = 9", "FROM t |> WHERE v = 9 |> SELECT k, v",
     False, True, True),
    ("does not run", "SELECT k FROM t", "FROM nope |> SELECT k", False, False, False),
    ("does not parse", "SELECT k FROM t", "SELECT k FROM t", False, False, False),
    ("does not lower", "SELECT k FROM t", "FROM t |> WHERE", False, False, False),
]

# (title, prediction, status, error fragment)
FAILURE_CASES = [
    ("empty", "", "parse", "empty query"),
    ("standard SQL", "SELECT k FROM t", "parse", "not FROM"),
    ("not an operator", "FROM t |> FROB k", "parse", "not a pipe operator"),
    ("a second FROM", "FROM t |> FROM t", "parse", "only the first may be FROM"),
    ("no condition", "FROM t |> WHERE", "lowering", "cannot parse pipe SQL"),
    ("no such table", "FROM nope |> SELECT k", "execution", "no such table"),
    ("no such column", "FROM t |> SELECT nope", "execution", "no such column"),
    ("runaway recursion", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r)"
     " FROM r |> AGGREGATE COUNT(*) AS c", "timeout", "timed out"),
]

# (title, a, b, exact match)
EXACT_CASES = [
    ("case, spacing, line breaks", "FROM t |> WHERE v = 1 |> SELECT k", "from T\n|> where V=1\n|>  select K", True),
    ("quoted names", 'FROM t |> SELECT "k"', "FROM t |> SELECT k", True),
    ("AS before an alias", "FROM t |> AGGREGATE COUNT(*) AS n", "FROM t |> AGGREGATE COUNT(*) n", True),
    ("<> and !=", "FROM t |> WHERE v <> 1", "FROM t |> WHERE v != 1", True),
    ("another alias", "FROM t |> AGGREGATE COUNT(*) AS n", "FROM t |> AGGREGATE COUNT(*) AS m", False),
    ("column order", "FROM t |> SELECT k, v", "FROM t |> SELECT v, k", False),
    ("another literal", "FROM t |> WHERE k = 'x'", "FROM t |> WHERE k = 'X'", False),
]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("score") / "t.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE t (k TEXT, v INT, f REAL);"
            "INSERT INTO t VALUES ('x', 1, 0.1), ('x', 1, 0.2), ('y', 2, 0.3);"
        )
    conn.close()
    return path


def _score(db: Path, gold_sql: str, gold_pipe: str, prediction: str, timeout_s: float = 2.0):
    gold = gold_for(gold_pipe, gold_sql, db, timeout_s=timeout_s, max_rows=1000)
    return score_prediction(prediction, gold, db, timeout_s=timeout_s, max_rows=1000, float_tol=1e-6)


@pytest.mark.parametrize(("gold_sql", "gold_pipe", "prediction", "status"),
                         [c[1:] for c in EXECUTION_CASES], ids=[c[0] for c in EXECUTION_CASES])
def test_execution_comparison(db: Path, gold_sql: str, gold_pipe: str, prediction: str, status: str) -> None:
    score = _score(db, gold_sql, gold_pipe, prediction)
    assert score.status == status, score.error
    assert score.is_valid and score.is_lowered
    assert score.is_correct == (status == CORRECT)


@pytest.mark.parametrize(("gold_sql", "prediction", "strict", "spider", "bird"),
                         [c[1:] for c in RULE_CASES], ids=[c[0] for c in RULE_CASES])
def test_the_three_rules_on_queries(db: Path, gold_sql: str, prediction: str, strict: bool, spider: bool,
                                    bird: bool) -> None:
    score = _score(db, gold_sql, "FROM t |> SELECT k", prediction)
    assert (score.is_correct, score.spider, score.bird) == (strict, spider, bird), score.error


def test_the_test_suite_must_agree_on_every_database(db: Path, tmp_path: Path) -> None:
    """Right on the eval database, wrong on a test-suite one: wrong under the Spider rule only."""
    other = tmp_path / "t_1.sqlite"
    with sqlite3.connect(other) as conn:
        conn.executescript("CREATE TABLE t (k TEXT, v INT, f REAL); INSERT INTO t VALUES ('z', 3, 0.5);")
    conn.close()
    gold_sql, same = "SELECT k FROM t WHERE v < 3", "FROM t |> WHERE v <= 2 |> SELECT k"
    alone = gold_for("FROM t |> SELECT k", gold_sql, db, timeout_s=1.0, max_rows=100)
    suite = gold_for("FROM t |> SELECT k", gold_sql, db, timeout_s=1.0, max_rows=100, test_suite=[other])
    wrong = "FROM t |> WHERE v < 3 OR v = 3 |> SELECT k"  # the same rows on t, not on t_1
    for gold, spider in ((alone, True), (suite, False)):
        score = score_prediction(wrong, gold, db, timeout_s=1.0, max_rows=100, float_tol=1e-6)
        assert (score.is_correct, score.spider, score.bird) == (True, spider, True)
    right = score_prediction(same, suite, db, timeout_s=1.0, max_rows=100, float_tol=1e-6)
    assert (right.is_correct, right.spider, right.bird) == (True, True, True)


@pytest.mark.parametrize(("prediction", "status", "fragment"),
                         [c[1:] for c in FAILURE_CASES], ids=[c[0] for c in FAILURE_CASES])
def test_each_failure_has_its_category(db: Path, prediction: str, status: str, fragment: str) -> None:
    score = _score(db, "SELECT k FROM t", "FROM t |> SELECT k", prediction, timeout_s=0.3)
    assert (score.status, score.is_correct, score.exact_match) == (status, False, False)
    assert fragment in score.error
    assert "\x1b" not in score.error  # sqlglot's terminal highlighting is stripped for the jsonl
    assert score.is_valid == (status != "parse")
    assert score.is_lowered == (status not in ("parse", "lowering"))


@pytest.mark.parametrize(("a", "b", "same"), [c[1:] for c in EXACT_CASES], ids=[c[0] for c in EXACT_CASES])
def test_exact_match_normalises_through_sqlglot(a: str, b: str, same: bool) -> None:
    assert (normal_form(a) == normal_form(b)) == same


def test_exact_match_is_scored_beside_execution(db: Path) -> None:
    same = _score(db, "SELECT k FROM t", "FROM t |> SELECT k", "from t |> select K")
    lucky = _score(db, "SELECT k FROM t", "FROM t |> SELECT k", "FROM t |> ORDER BY v |> SELECT k")
    assert (same.status, same.exact_match) == (CORRECT, True)
    assert (lucky.status, lucky.exact_match) == (CORRECT, False)


def test_a_gold_that_does_not_run_is_a_gold_error(db: Path, tmp_path: Path) -> None:
    with pytest.raises(GoldError, match="fails on .*t.sqlite: no such table: nope"):
        gold_for("FROM nope |> SELECT k", "SELECT k FROM nope", db, timeout_s=1.0, max_rows=10)
    with pytest.raises(GoldError, match=r"more than 2 rows on .*t.sqlite \(eval.max_rows\)"):
        gold_for("FROM t |> SELECT k", "SELECT k FROM t", db, timeout_s=1.0, max_rows=2)
    with pytest.raises(GoldError, match="does not parse or lower"):
        gold_for("FROM t |> WHERE", "SELECT k FROM t", db, timeout_s=1.0, max_rows=10)
    with pytest.raises(GoldError, match="timed out"):
        gold_for("FROM t |> SELECT k", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r)"
                 " SELECT COUNT(*) FROM r", db, timeout_s=0.2, max_rows=10)
    empty = tmp_path / "t_empty.sqlite"
    sqlite3.connect(empty).close()
    with pytest.raises(GoldError, match="t_empty.sqlite: no such table: t"):  # on a test-suite database
        gold_for("FROM t |> SELECT k", "SELECT k FROM t", db, timeout_s=1.0, max_rows=10, test_suite=[empty])


def test_check_pipe_sql_returns_the_operators() -> None:
    assert check_pipe_sql("FROM t\n|> WHERE s = '|>'\n|> SELECT a") == ["FROM t", "WHERE s = '|>'", "SELECT a"]


def test_scoring_imports_no_torch() -> None:
    """Scores and metrics are plain SQL work: reading predictions must not need torch."""
    code = "import sys, pipesql.evaluation.score, pipesql.evaluation.metrics; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
