"""Scores into the figures of metrics/eval.json and the rows of its plots.

Every rate is over all scored examples of its group (a gold_error example is no verdict and is
not among them), so a query that fails to parse counts against execution accuracy too: the rates
nest (valid >= lowered >= each execution accuracy).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from pipesql.evaluation.score import CATEGORIES, Score
from pipesql.sources.raw import DIFFICULTIES

RATES = ("valid_rate", "lowered_rate", "execution_accuracy", "execution_accuracy_spider",
         "execution_accuracy_bird", "exact_match")
ACCURACIES = ("execution_accuracy", "execution_accuracy_spider", "execution_accuracy_bird")
LEVELS = (*DIFFICULTIES, "simple", "moderate", "challenging")  # Spider's, then BIRD's


def rates(scores: Sequence[Score]) -> dict[str, Any]:
    """The rates of a group, with its size."""
    n = len(scores)

    def share(count: int) -> float:
        return round(count / n, 4) if n else 0.0

    return {
        "examples": n,
        "valid_rate": share(sum(s.is_valid for s in scores)),
        "lowered_rate": share(sum(s.is_lowered for s in scores)),
        "execution_accuracy": share(sum(s.is_correct for s in scores)),
        "execution_accuracy_spider": share(sum(s.spider for s in scores)),
        "execution_accuracy_bird": share(sum(s.bird for s in scores)),
        "exact_match": share(sum(s.exact_match for s in scores)),
    }


def rates_by(scores: Sequence[Score], keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """rates() per group; difficulty levels in their order, operator counts by number."""
    groups: dict[str, list[Score]] = {}
    for key, score in zip(keys, scores, strict=True):
        groups.setdefault(key, []).append(score)
    return {key: rates(groups[key]) for key in sorted(groups, key=_group_order)}


def errors(scores: Sequence[Score]) -> dict[str, int]:
    counts = Counter(s.status for s in scores)
    return {category: counts[category] for category in CATEGORIES}


def plot_rows(groups: dict[str, dict[str, Any]], x: str) -> list[dict[str, Any]]:
    """`[{x: group, <each accuracy>: rate, "examples": n}, ...]`: the file a dvc bar plot reads."""
    return [{x: key, **{y: figures[y] for y in ACCURACIES}, "examples": figures["examples"]}
            for key, figures in groups.items()]


def _group_order(key: str) -> tuple[int, int, str]:
    """Known levels first in their order, then numbers by value, then the rest by name."""
    if key in LEVELS:
        return (0, LEVELS.index(key), "")
    if key.isdigit():
        return (1, int(key), "")
    return (2, 0, key)
