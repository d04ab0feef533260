"""The synthetic text-to-SQL benchmark: the pipeline's offline default data source.

Eight domains (`domains.py`) are filled with seeded rows (`data.py`) and asked questions through
templates (`templates.py`); each example is graded as Spider grades its queries. Nothing is
executed while generating: values are read off the rows in memory, which keeps 100k examples
within seconds.
"""

from __future__ import annotations

import random
from itertools import accumulate
from pathlib import Path

from sqlglot.tokens import Tokenizer, TokenType

from pipesql.params.download import SyntheticDataParams
from pipesql.sources.raw import Example
from pipesql.sources.synthetic.common import NotApplicable
from pipesql.sources.synthetic.data import Database, populate, write_sqlite
from pipesql.sources.synthetic.domains import DOMAINS
from pipesql.sources.synthetic.templates import TEMPLATES
from pipesql.sql.difficulty import grade_difficulty

__all__ = ["generate_synthetic"]

_CUM_WEIGHTS = list(accumulate(weight for _, weight in TEMPLATES))
_LITERALS = (TokenType.STRING, TokenType.NUMBER)
_TOKENIZER = Tokenizer()


def generate_synthetic(
    params: SyntheticDataParams, seed: int, db_dir: Path
) -> tuple[list[Example], dict[str, Path]]:
    """Write `<db_dir>/<db_id>/<db_id>.sqlite` per database; return the examples and those paths.

    Same params and seed give the same examples and byte-identical files. Domains cycle when
    `n_databases` exceeds them (`concert_singer_2`), each database with its own rows.
    """
    databases = [_database(i, params.rows_per_table, seed) for i in range(params.n_databases)]
    paths: dict[str, Path] = {}
    for db in databases:
        paths[db.db_id] = Path(db_dir) / db.db_id / f"{db.db_id}.sqlite"
        write_sqlite(db, paths[db.db_id])
    rng = random.Random(f"{seed}/questions")
    grades: dict[tuple[str, ...], str] = {}
    examples = [
        _example(i + 1, databases[i % len(databases)], rng, grades)
        for i in range(params.n_examples)
    ]
    return examples, paths


def _database(index: int, rows_per_table: int, seed: int) -> Database:
    domain = DOMAINS[index % len(DOMAINS)]
    cycle = index // len(DOMAINS)
    db_id = domain.name if cycle == 0 else f"{domain.name}_{cycle + 1}"
    # A string seed per database: adding databases leaves the earlier ones' rows unchanged.
    return populate(domain, db_id, random.Random(f"{seed}/{db_id}"), rows_per_table)


def _example(
    number: int, db: Database, rng: random.Random, grades: dict[tuple[str, ...], str]
) -> Example:
    while True:
        template = rng.choices(TEMPLATES, cum_weights=_CUM_WEIGHTS)[0][0]
        try:
            pair = template(db, rng)
        except NotApplicable:
            continue
        return Example(
            id=f"synthetic-{number:06d}",
            db_id=db.db_id,
            question=pair.question,
            gold_sql=pair.sql,
            difficulty=_grade(pair.sql, grades),
        )


def _grade(sql: str, grades: dict[tuple[str, ...], str]) -> str:
    """Grade once per query shape: a literal's value never changes the level, and parsing every
    query would dominate generation time. The shape is sqlglot's tokens with literals masked."""
    shape = tuple(
        t.token_type.name if t.token_type in _LITERALS else t.text
        for t in _TOKENIZER.tokenize(sql)
    )
    if shape not in grades:
        grades[shape] = grade_difficulty(sql)
    return grades[shape]

