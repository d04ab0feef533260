"""Teacher-forced figures on the test samples: loss, perplexity and token accuracy.

Measured as training measures them (the model reads the gold tokens; only the assistant's tokens,
labels != -100, count), so they sit beside train's eval loss; but on the test split, whose
databases training never saw when tokenize splits by database. Logits are computed only where a
label is: a 150k-token vocabulary over every prompt token would take gigabytes per batch, while
the answers are a few dozen tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import PreTrainedModel

IGNORE = -100


@dataclass(frozen=True)
class LabelledSample:
    input_ids: list[int]
    labels: list[int]   # IGNORE outside the assistant's reply, as tokenize writes them
    kind: str           # incremental | full | tool


@torch.inference_mode()
def teacher_forced(
    model: PreTrainedModel, samples: Sequence[LabelledSample], batch_size: int, pad_id: int, progress: bool = True
) -> dict[str, Any]:
    """Token-weighted loss, its perplexity and the share of labels the argmax predicts, overall
    and by sample kind."""
    device = next(model.parameters()).device
    sums: dict[str, list[float]] = {}  # kind -> [loss sum, correct, tokens, samples]
    order = sorted(range(len(samples)), key=lambda i: -len(samples[i].input_ids))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc="teacher forced", unit="batch", disable=not progress):
        rows = [samples[i] for i in batch]
        width = max(len(s.input_ids) for s in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, s in enumerate(rows):  # right padding: positions need no adjusting
            ids[r, : len(s.input_ids)] = torch.tensor(s.input_ids)
            labels[r, : len(s.labels)] = torch.tensor(s.labels)
            mask[r, : len(s.input_ids)] = 1
        # position t predicts token t + 1: keep the positions whose next token is labelled
        keep = torch.zeros_like(mask, dtype=torch.bool)
        keep[:, :-1] = labels[:, 1:] != IGNORE
        targets = labels[:, 1:][keep[:, :-1]].to(device)
        logits = model(
            input_ids=ids.to(device), attention_mask=mask.to(device), logits_to_keep=keep.to(device)
        ).logits.float()  # (labelled tokens, vocab), rows in order
        losses = F.cross_entropy(logits, targets, reduction="none").cpu()
        hits = (logits.argmax(-1) == targets).cpu()
        per_row = keep.sum(1).tolist()
        for s, row_losses, row_hits in zip(rows, losses.split(per_row), hits.split(per_row), strict=True):
            total = sums.setdefault(s.kind, [0.0, 0.0, 0.0, 0.0])
            total[0] += float(row_losses.sum())
            total[1] += float(row_hits.sum())
            total[2] += len(row_losses)
            total[3] += 1
    overall = [sum(t[k] for t in sums.values()) for k in range(4)]
    return _figures(overall) | {"by_kind": {kind: _figures(sums[kind]) for kind in sorted(sums)}}


def _figures(total: list[float]) -> dict[str, Any]:
    """None where nothing was labelled: JSON has no NaN, and dvc reads eval.json."""
    loss_sum, correct, tokens, samples = total
    loss = loss_sum / tokens if tokens else None
    return {
        "loss": None if loss is None else round(loss, 4),
        "perplexity": None if loss is None else round(math.exp(min(loss, _MAX_EXP)), 4),
        "token_accuracy": round(correct / tokens, 4) if tokens else None,
        "samples": int(samples),
        "tokens": int(tokens),
    }


_MAX_EXP = 700.0  # math.exp overflows past ~709: a diverged model's perplexity is capped, not a crash
