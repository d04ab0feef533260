"""The Trainer subclass: its CPU loss is TRL's, and its length grouping pads less and still shuffles."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from datasets import load_from_disk
from transformers import AutoTokenizer
from trl import SFTTrainer

from pipesql.params.train import TrainParams
from pipesql.training.config import sft_config
from pipesql.training.train import load_model
from pipesql.training.trainer import BATCHES_PER_GROUP, ShuffledLengthBatches, Trainer

Params = Callable[..., TrainParams]


def _batches(sampler: ShuffledLengthBatches) -> list[list[int]]:
    order = list(sampler)
    return [order[i : i + sampler.batch_size] for i in range(0, len(order), sampler.batch_size)]


def _padded(batches: list[list[int]], lengths: list[int]) -> int:
    return sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)


LENGTHS = [int(x) for x in torch.randint(20, 300, (2_000,), generator=torch.Generator().manual_seed(0))]


def test_every_index_once_per_epoch_in_a_new_order_each_epoch() -> None:
    sampler = ShuffledLengthBatches(LENGTHS, batch_size=8, seed=0)
    first = list(sampler)
    assert sorted(first) == list(range(len(LENGTHS)))
    assert list(sampler) == first, "the same epoch gives the same order"
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(second) == sorted(first) and second != first


def test_batches_pad_less_than_random_ones_and_are_not_visited_longest_first() -> None:
    sampler = ShuffledLengthBatches(LENGTHS, batch_size=8, seed=0)
    batches = _batches(sampler)
    shuffled = torch.randperm(len(LENGTHS), generator=torch.Generator().manual_seed(1)).tolist()
    random_batches = [shuffled[i : i + 8] for i in range(0, len(shuffled), 8)]
    real = sum(LENGTHS)
    assert _padded(batches, LENGTHS) - real < 0.1 * (_padded(random_batches, LENGTHS) - real)
    # transformers' grouping visits each group of batches longest first; here the longest batch
    # of the first group's worth of steps lands anywhere, and lengths go up as well as down
    longest = [max(LENGTHS[i] for i in batch) for batch in batches[:BATCHES_PER_GROUP]]
    rises = sum(b > a for a, b in zip(longest, longest[1:]))
    assert 0.3 < rises / (len(longest) - 1) < 0.7


@pytest.mark.parametrize("group_by_length", [False, True])
def test_the_trainer_uses_its_sampler_only_when_grouping(
    tiny_params: Params, tiny_samples: Path, tiny_base: Path, tmp_path: Path, group_by_length: bool
) -> None:
    params = tiny_params(group_by_length=group_by_length)
    trainer = _trainer(Trainer, params, tiny_samples, tiny_base, tmp_path)
    assert isinstance(trainer._get_train_sampler(), ShuffledLengthBatches) == group_by_length


def test_own_loss_and_metrics_match_trls_on_the_same_batch(
    tiny_params: Params, tiny_samples: Path, tiny_base: Path, tmp_path: Path
) -> None:
    """The CPU path (labelled positions only, chunked metrics) computes what TRL's fused head does."""
    params = tiny_params()
    results = {}
    for trl_loss in (True, False):
        torch.manual_seed(0)
        trainer = _trainer(Trainer, params, tiny_samples, tiny_base, tmp_path / str(trl_loss))
        assert not trainer.trl_loss  # on the CPU the trainer's own loss is the default
        trainer.trl_loss = trl_loss
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
        trainer.model.train()
        loss, outputs = trainer.compute_loss(trainer.model, dict(batch), return_outputs=True)
        loss.backward()
        grads = [p.grad.clone() for p in trainer.model.parameters() if p.requires_grad and p.grad is not None]
        metrics = {k: trainer._metrics["train"][k][-1] for k in ("mean_token_accuracy", "entropy")}
        results[trl_loss] = (batch["input_ids"], loss.item(), grads, metrics, outputs)
    (ids_trl, loss_trl, grads_trl, metrics_trl, _), (ids, loss, grads, metrics, outputs) = results[True], results[False]
    assert torch.equal(ids, ids_trl), "both saw the same batch"
    assert loss == pytest.approx(loss_trl, rel=1e-5)
    assert len(grads) == len(grads_trl) > 0
    assert all(torch.allclose(g, g_trl, rtol=1e-4, atol=1e-7) for g, g_trl in zip(grads, grads_trl, strict=True))
    assert metrics == pytest.approx(metrics_trl, rel=1e-5)
    kept = outputs.logits.shape[1]
    assert kept < batch["input_ids"].shape[1] - 1  # prompt positions never reach the output head


def test_metrics_are_chunked(
    tiny_params: Params, tiny_samples: Path, tiny_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entropy and accuracy add up over chunks of positions to what one softmax gives."""
    import pipesql.training.trainer as trainer_module

    figures = []
    for chunk in (1024, 3):
        monkeypatch.setattr(trainer_module, "METRIC_CHUNK", chunk)
        torch.manual_seed(0)
        trainer = _trainer(Trainer, tiny_params(), tiny_samples, tiny_base, tmp_path / str(chunk))
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
        with torch.no_grad():
            trainer.compute_loss(trainer.model, dict(batch))
        figures.append({k: trainer._metrics["train"][k][-1] for k in ("mean_token_accuracy", "entropy")})
    assert figures[1] == pytest.approx(figures[0], rel=1e-6)


def _trainer(cls: type[SFTTrainer], params: TrainParams, samples: Path, base: Path, out: Path) -> SFTTrainer:
    splits = load_from_disk(str(samples))
    return cls(
        model=load_model(base, params, "fp32", None),
        args=sft_config(params, out, "fp32", lr_scale=1.0, is_resuming=False),
        train_dataset=splits["train"].select_columns(["input_ids", "labels"]),
        eval_dataset=splits["dev"].select_columns(["input_ids", "labels"]),
        processing_class=AutoTokenizer.from_pretrained(base),
    )
