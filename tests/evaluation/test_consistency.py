"""Self-consistency's vote: the largest group of equal results, ties to the most likely candidate."""

from __future__ import annotations

import pytest

from pipesql.evaluation.consistency import Vote, vote
from pipesql.evaluation.score import Attempt
from pipesql.sql.execute import QueryResult


def ran(*rows: tuple[object, ...], truncated: bool = False) -> Attempt:
    return Attempt(None, None, "SELECT 1", QueryResult(("c",), tuple(rows), truncated))


FAILED = Attempt("execution", "no such table: x", "SELECT x FROM x", None)
UNPARSED = Attempt("parse", "empty query", None, None)

# (title, attempts, logprobs, winner, votes, groups)
VOTE_CASES = [
    ("the majority wins over the likelier", [ran((1,)), ran((2,)), ran((1,))], [-3.0, -0.1, -2.0], 2, 2, 2),
    ("a result is a set of rows: order and duplicates aside",
     [ran((1,), (2,)), ran((2,), (1,), (1,)), ran((3,))], [-1.0, -2.0, -0.5], 0, 2, 2),
    ("groups of one size: the likeliest candidate's", [ran((1,)), ran((2,))], [-2.0, -1.0], 1, 1, 2),
    ("equal likelihood: the earlier sample", [ran((1,)), ran((2,))], [-1.0, -1.0], 0, 1, 2),
    ("failures have no vote", [FAILED, FAILED, ran((5,))], [-0.1, -0.1, -9.0], 2, 1, 1),
    ("a result cut at max_rows has no vote", [ran((1,), truncated=True)] * 2 + [ran((2,))], [0.0, 0.0, -1.0],
     2, 1, 1),
    ("nothing ran: the likeliest", [UNPARSED, FAILED], [-2.0, -1.0], 1, 0, 0),
]


@pytest.mark.parametrize(("attempts", "logprobs", "winner", "votes", "groups"),
                         [c[1:] for c in VOTE_CASES], ids=[c[0] for c in VOTE_CASES])
def test_vote(attempts: list[Attempt], logprobs: list[float], winner: int, votes: int, groups: int) -> None:
    assert vote(attempts, logprobs) == Vote(winner, votes, groups)


def test_each_candidate_needs_its_likelihood() -> None:
    with pytest.raises(ValueError, match="2 candidates with 1 log-probabilities"):
        vote([FAILED, FAILED], [0.0])
