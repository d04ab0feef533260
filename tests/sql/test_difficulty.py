"""Spider's difficulty levels on sqlglot's AST: a table of queries per level, invalid inputs, and a
corpus check over Spider's training queries when `../shared/spider-train` is present."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipesql.sql.difficulty import grade_difficulty

JOIN = "concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id"

# (title, sql, level); the comment after each title gives (component1, component2, others).
CASES = [
    ("count", "SELECT count(*) FROM singer", "easy"),  # (0, 0, 0)
    ("one filter", "SELECT name FROM singer WHERE age > 30", "easy"),  # (1, 0, 0)
    ("distinct", "SELECT DISTINCT country FROM singer", "easy"),  # (0, 0, 0)
    ("having", "SELECT country FROM singer GROUP BY country HAVING count(*) >= 2", "easy"),
    ("parenthesized", "(SELECT name FROM singer)", "easy"),
    ("two columns ordered", "SELECT name, age FROM singer ORDER BY age DESC", "medium"),  # 1,0,1
    ("two conditions", "SELECT name FROM singer WHERE age > 30 AND country = 'France'", "medium"),
    ("or counts in c1", "SELECT name FROM singer WHERE age > 30 OR country = 'France'", "medium"),
    ("like counts in c1", "SELECT name FROM singer WHERE name LIKE '%an%'", "medium"),  # 2,0,0
    ("not like too", "SELECT name FROM singer WHERE name NOT LIKE 'A%'", "medium"),
    ("join and filter", f"SELECT T1.title FROM {JOIN} WHERE T2.city = 'Boston'", "medium"),
    ("top 1", "SELECT name FROM singer ORDER BY age DESC LIMIT 1", "medium"),  # (2, 0, 0)
    ("two aggregates", "SELECT max(age), min(age) FROM singer", "medium"),  # (0, 0, 2)
    ("having aggregates are not counted, as in Spider", f"SELECT T2.name, count(*) FROM {JOIN} "
     "GROUP BY T1.stadium_id HAVING count(*) > 1", "medium"),  # (2, 0, 1)
    ("window is no aggregate",  # (2, 0, 1); counted as aggregates, others would be 2: extra
     "SELECT name, avg(age) OVER (PARTITION BY country), max(age) OVER () FROM singer "
     "ORDER BY age LIMIT 3", "medium"),
    ("scalar subquery", "SELECT name FROM singer WHERE age > (SELECT avg(age) FROM singer)",
     "hard"),  # (1, 1, 0)
    ("group top", "SELECT country FROM singer GROUP BY country ORDER BY count(*) DESC LIMIT 1",
     "hard"),  # (3, 0, 0)
    ("union", "SELECT name FROM singer WHERE age > 30 UNION SELECT name FROM singer "
     "WHERE country = 'France'", "hard"),  # (1, 1, 0)
    ("union's order by is not the left's", "SELECT name FROM singer UNION SELECT name "
     "FROM stadium ORDER BY name LIMIT 3", "hard"),  # (0, 1, 0)
    ("derived table is nested", "SELECT avg(cnt) FROM (SELECT count(*) AS cnt FROM concert "
     "GROUP BY stadium_id)", "hard"),  # (0, 1, 0)
    ("exists", "SELECT T1.name FROM stadium AS T1 WHERE EXISTS (SELECT * FROM concert AS T2 "
     "WHERE T2.stadium_id = T1.stadium_id)", "hard"),  # (1, 1, 0)
    ("many others", "SELECT country, genre, count(*), max(age) FROM singer WHERE age > 20 "
     "AND genre = 'Pop' GROUP BY country, genre", "hard"),  # (2, 0, 4)
    ("not in counts as an aggregate, as in Spider", "SELECT count(*) FROM singer WHERE "
     "singer_id NOT IN (SELECT singer_id FROM singer_in_concert)", "extra"),  # (1, 1, 1)
    ("join group top", f"SELECT T2.name FROM {JOIN} GROUP BY T1.stadium_id "
     "ORDER BY count(*) DESC LIMIT 1", "extra"),  # (4, 0, 0)
    ("nested and others", "SELECT name FROM singer WHERE age > 30 AND country IN "
     "(SELECT country FROM stadium)", "extra"),  # (1, 1, 1)
    ("intersect of joins", f"SELECT T2.name FROM {JOIN} WHERE T1.price > 9 INTERSECT "
     f"SELECT T2.name FROM {JOIN} WHERE T1.price < 5", "extra"),  # (2, 1, 0)
    ("cte and scalar subquery", "WITH c AS (SELECT stadium_id, count(*) AS n FROM concert "
     "GROUP BY stadium_id) SELECT n FROM c WHERE n > (SELECT avg(n) FROM c)", "extra"),  # 1,2,0
    ("cte on a set operation", "WITH c AS (SELECT 1 AS n) SELECT n FROM c UNION "
     "SELECT n FROM c", "extra"),  # (0, 2, 0)
]

INVALID = [
    ("not sql", "SELEC name FRM singer"),
    ("empty", ""),
    ("two statements", "SELECT 1; SELECT 2"),
    ("not a query", "INSERT INTO singer VALUES (1)"),
]


@pytest.mark.parametrize(("sql", "level"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_grade_difficulty(sql: str, level: str) -> None:
    assert grade_difficulty(sql) == level


@pytest.mark.parametrize("sql", [c[1] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_sql_raises_naming_it(sql: str) -> None:
    with pytest.raises(ValueError, match="cannot grade") as info:
        grade_difficulty(sql)
    assert repr(sql) in str(info.value)


SPIDER_TRAIN = Path(__file__).parents[3] / "shared" / "spider-train"  # beside the repository


@pytest.mark.skipif(not SPIDER_TRAIN.is_dir(), reason=f"{SPIDER_TRAIN} not present")
def test_grades_every_spider_training_query() -> None:
    """Real SQL nobody on the team wrote: every query grades, and every level occurs."""
    lines = (SPIDER_TRAIN / "gold.tsv").read_text(encoding="utf-8").splitlines()
    levels = {grade_difficulty(line.split("\t")[0]) for line in lines if line.strip()}
    assert levels == {"easy", "medium", "hard", "extra"}
