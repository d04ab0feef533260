"""A tiny base model and tiny samples in the layouts the train stage reads, built once per session.

The model is a 2-layer, 32-wide Qwen2 with the scratch tokenizer; the samples follow the
tokenize stage's contract (input_ids, labels with -100 outside the assistant's reply, metadata),
made here with the same chat template, so the training tests never wait on that stage.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset, DatasetDict
from transformers import AutoTokenizer, Qwen2ForCausalLM

from pipesql.basemodel.scratch import qwen2_config, train_tokenizer
from pipesql.params.download import ScratchModelParams
from pipesql.params.tokenize import TokenizeParams
from pipesql.params.train import ALL_PROJECTIONS, TrainParams
from pipesql.prompts.contract import build_contract, write_contract
from project import merge_params

TABLES = ("singer", "concert", "stadium", "pet", "flight", "airport")
TINY_MODEL = ScratchModelParams(
    vocab_size=400,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
)
# A few optimizer steps on 48 samples; every run of the training tests starts from these.
TINY_TRAIN: dict[str, Any] = {
    "max_steps": 8,
    "batch_size": 4,
    "learning_rate": 1.0e-2,
    "warmup_fraction": 0.0,
    # LoRA on every projection, as a hub model trains (the offline default trains most in full)
    "lora": {"r": 8, "alpha": 16.0, "dropout": 0.0, "target_modules": list(ALL_PROJECTIONS), "modules_to_save": ["embed_tokens"]},
    "packing": False,
    "packed_length": 256,
    "logging_steps": 1,
    "eval_steps": 4,
    "save_steps": 4,
    "eval_max_samples": 8,
    "eval_batch_size": 8,
}


def tiny_params(**overrides: Any) -> TrainParams:
    """TINY_TRAIN with nested overrides (`guard={"window": 3}` keeps the other guard keys)."""
    return TrainParams.model_validate(merge_params(TINY_TRAIN, overrides))


@pytest.fixture(name="tiny_params", scope="session")
def tiny_params_fixture() -> Callable[..., TrainParams]:
    """tiny_params as a fixture: test modules cannot import this conftest by name."""
    return tiny_params


def _question(i: int) -> tuple[str, str]:
    table, n = TABLES[i % len(TABLES)], i % 7
    return f"Rows of {table} with id above {n}?", f"FROM {table}\n|> WHERE id > {n}\n|> SELECT *"


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "base"
    texts = [text for i in range(60) for text in _question(i)]
    tokenizer = train_tokenizer(texts, TINY_MODEL.vocab_size, TINY_MODEL.max_position_embeddings)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(qwen2_config(TINY_MODEL, tokenizer))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_samples(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    rows = []
    for i in range(64):
        question, answer = _question(i)
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        out = tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        labels = [t if m else -100 for t, m in zip(out["input_ids"], out["assistant_masks"], strict=True)]
        rows.append({
            "input_ids": out["input_ids"], "labels": labels, "example_id": f"q{i}",
            "db_id": TABLES[i % len(TABLES)], "kind": "full", "step": 0, "num_ops": 2,
            "difficulty": "easy",
        })
    out_dir = tmp_path_factory.mktemp("tiny") / "samples"
    DatasetDict(
        train=Dataset.from_list(rows[:48]), dev=Dataset.from_list(rows[48:56]), test=Dataset.from_list(rows[56:])
    ).save_to_disk(out_dir)
    write_contract(out_dir, build_contract(TokenizeParams(), tokenizer.chat_template))  # as tokenize does
    return out_dir
