"""One predicted pipe query against its gold: does it parse, lower, run, and return the gold's rows?

Checked in this order, the first failure being the verdict (the error categories of eval.json):

    parse      not pipe SQL: empty, an operator that names no pipe operator, or not FROM first
    lowering   our lowering (the one golden pairs were validated under) cannot read it
    execution  SQLite rejects the lowered query
    timeout    it ran past eval.timeout_s
    mismatch   it ran, and its rows are not the gold's
    correct    the rows are the gold's, compared as golden_pairs compares them (the strict rule)

Beside that status, each score carries the Spider test-suite and BIRD verdicts (`sql.compare`),
each False whenever the query did not run. The Spider verdict runs both queries once more with
DISTINCT removed (only where there was one to remove) and, with a test suite, on each of its
databases. A gold that does not run is no verdict on the model: `gold_for` raises GoldError and
eval records the example as `gold_error`. Exact match is judged on its own (see `normal_form`).
Nothing here imports torch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlglot
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

from pipesql.sql.compare import (
    bird_results_match,
    is_ordered,
    remove_distinct,
    results_match,
    spider_orders,
    spider_results_match,
)
from pipesql.sql.execute import ExecutionError, QueryResult, execute_safely
from pipesql.sql.lower import LoweringError, lower_to_sqlite
from pipesql.sql.pipe import operator_name, split_operators

CATEGORIES = ("parse", "lowering", "execution", "timeout", "mismatch")
CORRECT = "correct"
GOLD_ERROR = "gold_error"  # the example's status when its gold could not be run: no verdict
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # sqlglot underlines the error's place for a terminal


class GoldError(Exception):
    """The gold could not be run: an error, a timeout, a result cut at max_rows, no lowering."""


@dataclass(frozen=True)
class Gold:
    """What a prediction is scored against, built once per example before anything is generated."""

    result: QueryResult
    ordered: bool      # the gold SQL's outermost query orders its rows, so order is compared
    normal_form: str   # of the gold pipe SQL, for exact match
    # The Spider rule's: the gold SQL without DISTINCT, its result on the eval database and on
    # each test-suite database (in that order), and whether it mentions ORDER BY.
    spider_sql: str
    spider_results: tuple[tuple[Path, QueryResult], ...]
    spider_ordered: bool


@dataclass(frozen=True)
class Attempt:
    """A prediction run on the eval database: its result, or the category it failed in."""

    status: str | None          # None: it ran; else parse, lowering, execution or timeout
    error: str | None
    lowered: str | None         # the prediction as SQLite, when it lowered
    result: QueryResult | None  # when it ran


@dataclass(frozen=True)
class Score:
    status: str                 # CORRECT or one of CATEGORIES: the strict rule
    error: str | None
    lowered: str | None         # the prediction as SQLite, when it lowered
    exact_match: bool
    spider: bool = False        # correct under the Spider test-suite rule
    bird: bool = False          # correct under BIRD's rule

    @property
    def is_valid(self) -> bool:
        return self.status != "parse"

    @property
    def is_lowered(self) -> bool:
        return self.lowered is not None

    @property
    def is_correct(self) -> bool:
        return self.status == CORRECT


def gold_for(
    pipe_sql: str, gold_sql: str, db_path: Path, timeout_s: float, max_rows: int,
    test_suite: Sequence[Path] = (),
) -> Gold:
    """Run the gold SQL on the eval database (and the Spider rule's on `test_suite`); GoldError if it fails.

    The gold SQL, not the gold pipe SQL, is the reference: golden pairs proved them equal, and
    the gold SQL's ORDER BY decides whether row order counts, as it did there.
    """
    try:
        tree = sqlglot.parse_one(gold_sql, read="sqlite")
        spider_sql = remove_distinct(tree).sql(dialect="sqlite")
        form = normal_form(pipe_sql)
    except (sqlglot.ParseError, LoweringError) as e:
        raise GoldError(f"does not parse or lower: {_ANSI.sub('', str(e))}") from None
    result = _run_gold(db_path, gold_sql, timeout_s, max_rows)
    spider = [(db_path, result if spider_sql == tree.sql(dialect="sqlite") else
               _run_gold(db_path, spider_sql, timeout_s, max_rows))]
    spider += [(path, _run_gold(path, spider_sql, timeout_s, max_rows)) for path in test_suite]
    return Gold(result, is_ordered(tree), form, spider_sql, tuple(spider), spider_orders(tree))


def _run_gold(db_path: Path, sql: str, timeout_s: float, max_rows: int) -> QueryResult:
    try:
        result = execute_safely(db_path, sql, timeout_s=timeout_s, max_rows=max_rows)
    except ExecutionError as e:
        raise GoldError(f"fails on {db_path}: {e}") from None
    if result.truncated:
        raise GoldError(f"has more than {max_rows} rows on {db_path} (eval.max_rows)")
    return result


def score_prediction(
    prediction: str, gold: Gold, db_path: Path, *, timeout_s: float, max_rows: int, float_tol: float
) -> Score:
    """The verdict on one prediction; never raises: every failure is a category."""
    attempt = run_prediction(prediction, db_path, timeout_s=timeout_s, max_rows=max_rows)
    return judge(attempt, gold, timeout_s=timeout_s, max_rows=max_rows, float_tol=float_tol)


def run_prediction(prediction: str, db_path: Path, *, timeout_s: float, max_rows: int) -> Attempt:
    """Check, lower and run a prediction on its database; never raises."""
    try:
        check_pipe_sql(prediction)
    except ValueError as e:
        return Attempt("parse", str(e), None, None)
    try:
        lowered = lower_to_sqlite(prediction)
    except LoweringError as e:
        return Attempt("lowering", _ANSI.sub("", str(e)), None, None)
    except Exception as e:  # sqlglot failing on its own output must not stop the stage
        return Attempt("lowering", f"{type(e).__name__}: {e}", None, None)
    try:
        result = execute_safely(db_path, lowered, timeout_s=timeout_s, max_rows=max_rows)
    except ExecutionError as e:
        return Attempt("timeout" if e.category == "timeout" else "execution", str(e), lowered, None)
    return Attempt(None, None, lowered, result)


def judge(attempt: Attempt, gold: Gold, *, timeout_s: float, max_rows: int, float_tol: float) -> Score:
    """An attempt's verdicts under the three rules, and its exact match; never raises."""
    exact = attempt.lowered is not None and _same_normal_form(attempt.lowered, gold.normal_form)
    if attempt.status is not None or attempt.result is None:  # it did not run: wrong by every rule
        return Score(attempt.status or "execution", attempt.error, attempt.lowered, exact)
    result = attempt.result
    spider = _spider_verdict(attempt.lowered or "", result, gold, timeout_s, max_rows)
    bird = bird_results_match(gold.result, result)
    if not results_match(gold.result, result, ordered=gold.ordered, float_tol=float_tol):
        cut = " (cut at eval.max_rows)" if result.truncated else ""
        error = f"gold {len(gold.result.rows)} rows, predicted {len(result.rows)} rows{cut}: they differ"
        return Score("mismatch", error, attempt.lowered, exact, spider, bird)
    return Score(CORRECT, None, attempt.lowered, exact, spider, bird)


def _spider_verdict(lowered: str, result: QueryResult, gold: Gold, timeout_s: float, max_rows: int) -> bool:
    """The Spider rule on every database of the gold's: the prediction without DISTINCT, run on each."""
    try:
        tree = sqlglot.parse_one(lowered, read="sqlite")
        sql = remove_distinct(tree).sql(dialect="sqlite")
        same_sql = sql == tree.sql(dialect="sqlite")
    except Exception:  # sqlglot failing on its own output is a wrong answer, not a stopped stage
        return False
    for i, (path, gold_result) in enumerate(gold.spider_results):
        if i == 0 and same_sql:
            pred = result  # the eval database, and nothing was removed: the result is at hand
        else:
            try:
                pred = execute_safely(path, sql, timeout_s=timeout_s, max_rows=max_rows)
            except ExecutionError:
                return False
        if not spider_results_match(gold_result, pred, ordered=gold.spider_ordered):
            return False
    return True


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


def _same_normal_form(lowered: str, gold_form: str) -> bool:
    try:
        return _normal_form_of_lowered(lowered) == gold_form
    except Exception:  # as in run_prediction: sqlglot failing on its own output is no match
        return False


def _normal_form_of_lowered(sql: str) -> str:
    tree = normalize_identifiers(sqlglot.parse_one(sql, read="sqlite"), dialect="sqlite")
    return tree.sql(dialect="sqlite", identify=True)
