"""Self-consistency: of N sampled candidates, answer with the one whose result most of them share.

As OmniSQL's evaluation votes: every candidate is run on the database, those that fail (do not
parse, lower or run) have no vote, nor has a result cut at max_rows (its rows are unknown), and
the rest are grouped by their result as a set of rows (row order and duplicates aside, as BIRD
compares). The largest group wins; between groups of
the same size, the one holding the most likely candidate (the highest summed log-probability of
its tokens), and within the winning group that candidate answers. When no candidate runs, the
most likely one answers (and is wrong by every rule). No torch here: the candidates come in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipesql.evaluation.score import Attempt


@dataclass(frozen=True)
class Vote:
    winner: int        # index of the candidate that answers
    votes: int         # candidates whose result is the winner's (0 when none ran)
    groups: int        # distinct results among the candidates that ran


def vote(attempts: Sequence[Attempt], logprobs: Sequence[float]) -> Vote:
    """The answering candidate of one question; `logprobs[i]` is candidate i's log-likelihood."""
    if not attempts or len(attempts) != len(logprobs):
        raise ValueError(f"{len(attempts)} candidates with {len(logprobs)} log-probabilities")
    by_result: dict[frozenset[tuple[object, ...]], list[int]] = {}
    for i, attempt in enumerate(attempts):
        if attempt.result is not None and not attempt.result.truncated:
            by_result.setdefault(frozenset(attempt.result.rows), []).append(i)
    if not by_result:
        return Vote(max(range(len(attempts)), key=lambda i: (logprobs[i], -i)), 0, 0)

    def best(group: list[int]) -> int:  # most likely first; the earlier sample on a tie
        return max(group, key=lambda i: (logprobs[i], -i))

    group = max(by_result.values(), key=lambda g: (len(g), logprobs[best(g)], -best(g)))
    return Vote(best(group), len(group), len(by_result))
