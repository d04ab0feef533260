"""One predicted pipe query against its gold: does it parse, lower, run, and return the gold's rows?

Checked in this order, the first failure being the verdict (the error categories of eval.json):

    parse      not pipe SQL: empty, an operator that names no pipe operator, or not FROM first
    lowering   our lowering (the one golden pairs were validated under) cannot read it
    execution  SQLite rejects the lowered query
    timeout    it ran past eval.timeout_s
    mismatch   it ran, and its rows are not the gold's
    correct    the rows are the gold's, compared as golden_pairs compares them

Exact match is judged on its own (see `normal_form`). Nothing here imports torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import sqlglot
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

from pipesql.sql.compare import is_ordered, results_match
from pipesql.sql.execute import ExecutionError, QueryResult, execute_safely
from pipesql.sql.lower import LoweringError, lower_to_sqlite
from pipesql.sql.pipe import operator_name, split_operators

CATEGORIES = ("parse", "lowering", "execution", "timeout", "mismatch")
CORRECT = "correct"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # sqlglot underlines the error's place for a terminal


@dataclass(frozen=True)
class Gold:
    """What a prediction is scored against, built once per example before anything is generated."""

    result: QueryResult
    ordered: bool      # the gold SQL's outermost query orders its rows, so order is compared
    normal_form: str   # of the gold pipe SQL, for exact match


@dataclass(frozen=True)
class Score:
    status: str                 # CORRECT or one of CATEGORIES
    error: str | None
    lowered: str | None         # the prediction as SQLite, when it lowered
    exact_match: bool

    @property
    def is_valid(self) -> bool:
        return self.status != "parse"

    @property
    def is_lowered(self) -> bool:
        return self.lowered is not None

    @property
    def is_correct(self) -> bool:
        return self.status == CORRECT


def gold_for(pipe_sql: str, gold_sql: str, db_path: Path, timeout_s: float, max_rows: int) -> Gold:
    """Run the gold SQL; raises ExecutionError (or LoweringError for the gold pipe SQL).

    The gold SQL, not the gold pipe SQL, is the reference: golden pairs proved them equal, and
    the gold SQL's ORDER BY decides whether row order counts, as it did there.
    """
    result = execute_safely(db_path, gold_sql, timeout_s=timeout_s, max_rows=max_rows)
    if result.truncated:
        raise ExecutionError(f"the result has more than {max_rows} rows", "exec_error")
    return Gold(result, is_ordered(gold_sql), normal_form(pipe_sql))


def score_prediction(
    prediction: str, gold: Gold, db_path: Path, *, timeout_s: float, max_rows: int, float_tol: float
) -> Score:
    """The verdict on one prediction; never raises: every failure is a category."""
    try:
        check_pipe_sql(prediction)
    except ValueError as e:
        return Score("parse", str(e), None, False)
    try:
        lowered = lower_to_sqlite(prediction)
        exact = _normal_form_of_lowered(lowered) == gold.normal_form
    except LoweringError as e:
        return Score("lowering", _ANSI.sub("", str(e)), None, False)
    except Exception as e:  # sqlglot failing on its own output must not stop the stage
        return Score("lowering", f"{type(e).__name__}: {e}", None, False)
    try:
        result = execute_safely(db_path, lowered, timeout_s=timeout_s, max_rows=max_rows)
    except ExecutionError as e:
        category = "timeout" if e.category == "timeout" else "execution"
        return Score(category, str(e), lowered, exact)
    if not results_match(gold.result, result, ordered=gold.ordered, float_tol=float_tol):
        cut = " (cut at eval.max_rows)" if result.truncated else ""
        error = f"gold {len(gold.result.rows)} rows, predicted {len(result.rows)} rows{cut}: they differ"
        return Score("mismatch", error, lowered, exact)
    return Score(CORRECT, None, lowered, exact)


def check_pipe_sql(pipe_sql: str) -> list[str]:
    """The query's operators; ValueError unless it is FROM and then pipe operators only."""
    if not pipe_sql.strip():
        raise ValueError("empty query")
    ops = split_operators(pipe_sql)
    names = [operator_name(op) for op in ops]
    if names[0] != "FROM":
        raise ValueError(f"the query starts with {names[0]}, not FROM")
    if "FROM" in names[1:]:
        raise ValueError(f"FROM as operator {names.index('FROM', 1) + 1}: only the first may be FROM")
    return ops


def normal_form(pipe_sql: str) -> str:
    """The text exact match compares: the query lowered to SQLite, parsed and printed back.

    Two queries match exactly when these texts are equal. Lowering, parsing and printing erase
    what cannot change the answer: keyword and function-name case, spacing and line breaks,
    optional `AS` before an alias, redundant parentheses, `!=` against `<>`, and the case and
    quoting of identifiers (SQLite compares names case-insensitively: they are lowered and all
    quoted). What can change the answer still counts: operators, their order, column order,
    aliases, literals. A string compare of the pipe text alone would count a lower-case
    `select` as a miss; a compare of results would count a lucky query as a hit.
    Raises LoweringError when the query does not lower.
    """
    return _normal_form_of_lowered(lower_to_sqlite(pipe_sql))


def _normal_form_of_lowered(sql: str) -> str:
    tree = normalize_identifiers(sqlglot.parse_one(sql, read="sqlite"), dialect="sqlite")
    return tree.sql(dialect="sqlite", identify=True)
