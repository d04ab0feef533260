"""Same params and seed on CPU, twice: the same figures in metrics/train.json and the same curves.

Two fresh runs of the tiny model (nothing to resume: each has its own checkpoint directory),
compared to 4 decimal places; a third run with another seed shows the seed reaches the run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipesql.training.train import train

pytestmark = pytest.mark.slow

# What a rerun must reproduce; timings (train_seconds, tokens_per_s) never do.
FIGURES = (
    "steps", "epochs", "train_loss", "train_token_accuracy", "eval_loss_first", "eval_loss",
    "eval_token_accuracy", "tokens_trained", "trainable_parameters", "parameters",
    "train_samples", "train_tokens", "rollbacks",
)


def _run(params: Any, samples: Path, base: Path, root: Path) -> tuple[dict[str, Any], dict[str, list[str]]]:
    metrics = train(params, samples, base, root / "adapter", root / "checkpoints", root / "live")
    curves = {
        str(p.relative_to(root / "live")): p.read_text().splitlines()
        for p in sorted((root / "live").rglob("*.tsv"))
    }
    return metrics, curves


def _figures(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: round(metrics[k], 4) if isinstance(metrics[k], float) else metrics[k] for k in FIGURES}


def _rounded(curves: dict[str, list[str]]) -> dict[str, list[list[str]]]:
    """Each TSV row (step, value) with its numbers to 4 decimal places; the header as it is."""
    out = {}
    for name, rows in curves.items():
        out[name] = [rows[0].split("\t")] + [
            [f"{float(v):.4f}" for v in row.split("\t")] for row in rows[1:]
        ]
    return out


def test_same_seed_twice_gives_the_same_figures(
    tiny_params: Callable[..., Any], tiny_samples: Path, tiny_base: Path, tmp_path: Path
) -> None:
    params = tiny_params(max_steps=4)  # an eval at steps 0 and 4, a checkpoint at 4
    first, first_curves = _run(params, tiny_samples, tiny_base, tmp_path / "first")
    second, second_curves = _run(params, tiny_samples, tiny_base, tmp_path / "second")
    assert first["train_loss"] is not None and first["eval_loss"] is not None
    assert _figures(second) == _figures(first)
    assert first_curves and _rounded(second_curves) == _rounded(first_curves)  # step by step

    other, _ = _run(tiny_params(max_steps=4, seed=1), tiny_samples, tiny_base, tmp_path / "other")
    assert round(other["eval_loss"], 4) != round(first["eval_loss"], 4)  # the seed is used
