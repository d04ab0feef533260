"""merge: the merged model is base + adapter (proved on logits), and a bad adapter never ships.

The adapter trains the tied embeddings in full (modules_to_save), as the scratch model's does:
the case where a merge that kept the tie would silently lose the output layer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from evaluation.tinyrun import TinyProject, build_base, one_thread
from pipesql.basemodel.scratch import train_tokenizer
from pipesql.io import DataError
from pipesql.merge import RECORD_FILE, MergeCheckError, merge_adapter
from pipesql.models import check_adapter, load_model
from pipesql.params.download import ScratchModelParams
from pipesql.params.merge import MergeParams
from pipesql.prompts.contract import read_contract

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture
def adapter(random_lora: Path) -> Path:
    return random_lora


@pytest.fixture
def copy_of(adapter: Path, tmp_path: Path):
    def copy() -> Path:
        return Path(shutil.copytree(adapter, tmp_path / "adapter"))
    return copy


def test_the_merged_model_is_base_plus_adapter(project: TinyProject, adapter: Path, tmp_path: Path) -> None:
    out = tmp_path / "merged"
    metrics = merge_adapter(project.base, adapter, project.samples, out, MergeParams())
    assert metrics["max_abs_logit_diff"] < 1e-4
    assert (metrics["dtype"], metrics["prompts"], metrics["compared_positions"]) == ("fp32", 4, 4 * 64)
    assert metrics["modules_to_save"] == ["embed_tokens", "lm_head"]
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
            "chat_template.jinja", RECORD_FILE} <= names
    assert not any(name.startswith("adapter") for name in names)
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is False  # both trained

    # independently of the stage's own proof: the merged directory answers as base + adapter does
    ids = torch.tensor([AutoTokenizer.from_pretrained(out).encode("FROM singer |> SELECT name")])
    peft_model, _ = load_model(project.base, adapter, "fp32")
    merged = AutoModelForCausalLM.from_pretrained(out)
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, peft_model(input_ids=ids).logits, atol=1e-4)


def test_a_bf16_merge_stays_within_its_tolerance(project: TinyProject, adapter: Path, tmp_path: Path) -> None:
    # The random adapter on a random base has near-ties everywhere, which bf16 rounding flips:
    # its next tokens agree at ~92% of positions, so the agreement floor is lowered here.
    params = MergeParams(dtype="bf16", min_argmax_agreement=0.8)
    metrics = merge_adapter(project.base, adapter, project.samples, tmp_path / "merged", params)
    assert 0 < metrics["max_abs_logit_diff"] <= metrics["tolerance"] == MergeParams().tolerance.bf16
    assert 0.8 <= metrics["argmax_agreement"] < 1.0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert model.dtype == torch.bfloat16


def test_a_cast_that_changes_next_tokens_fails_even_within_the_logit_tolerance(
    project: TinyProject, adapter: Path, tmp_path: Path
) -> None:
    """The bf16 logits stay within a whole logit, yet the next token moves at some positions:
    the argmax check sees what the tolerance cannot, and nothing ships."""
    params = MergeParams(dtype="bf16", min_argmax_agreement=1.0)
    with pytest.raises(MergeCheckError, match=r"predicts base \+ adapter's next token at .*% of 256 positions"):
        merge_adapter(project.base, adapter, project.samples, tmp_path / "merged", params)
    assert not (tmp_path / "merged").exists()


def test_an_fp32_merge_carries_the_prompt_contract_and_agrees_everywhere(
    project: TinyProject, adapter: Path, tmp_path: Path
) -> None:
    metrics = merge_adapter(project.base, adapter, project.samples, tmp_path / "merged", MergeParams())
    assert metrics["argmax_agreement"] == 1.0
    assert read_contract(tmp_path / "merged") == read_contract(project.samples)


def test_a_corrupted_adapter_fails_the_check_and_ships_nothing(
    project: TinyProject, copy_of, tmp_path: Path
) -> None:
    corrupt = copy_of()
    weights = load_file(corrupt / "adapter_model.safetensors")
    key = next(k for k in weights if "lora_B" in k)
    weights[key][0, 0] = float("nan")
    save_file(weights, corrupt / "adapter_model.safetensors")
    out = tmp_path / "merged"
    out.mkdir()
    (out / "previous.txt").write_text("the last good merge")
    with pytest.raises(MergeCheckError, match=r"differ from base \+ adapter by nan .* the adapter is corrupt"):
        merge_adapter(project.base, corrupt, project.samples, out, MergeParams())
    assert [p.name for p in out.iterdir()] == ["previous.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "merged"]  # no temporary left


def test_a_check_too_strict_for_the_dtype_fails(project: TinyProject, adapter: Path, tmp_path: Path) -> None:
    params = MergeParams(dtype="bf16", tolerance={"bf16": 1e-6})
    with pytest.raises(MergeCheckError, match=r"merge.tolerance.bf16 is 1e-06.*compare with dtype fp32 first"):
        merge_adapter(project.base, adapter, project.samples, tmp_path / "merged", params)
    assert not (tmp_path / "merged").exists()


def test_the_adapter_directory_is_checked_first(project: TinyProject, copy_of, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope: adapter_config.json not found; run 'dvc repro train' first"):
        check_adapter(tmp_path / "nope", project.base)
    damaged = copy_of()
    data = (damaged / "adapter_model.safetensors").read_bytes()
    (damaged / "adapter_model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"adapter_model.safetensors: cannot read the adapter weights"):
        check_adapter(damaged, project.base)


def test_an_adapter_for_another_base_is_refused(project: TinyProject, adapter: Path, tmp_path: Path) -> None:
    other = tmp_path / "other_base"
    build_base(other, ScratchModelParams(
        vocab_size=600, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
    ))
    vocab = json.loads((other / "config.json").read_text())["vocab_size"]  # what the corpus allowed, <= 600
    with pytest.raises(DataError, match=r"does not match the base model in .*other_base: lm_head.weight is"
                                        rf" \[{vocab}, 64\], the base's is \[{vocab}, 32\]; .*down_proj.lora_A.weight"
                                        r" \[16, 128\] does not fit .*down_proj \(64 -> 32\); and 27 more"):
        merge_adapter(other, adapter, project.samples, tmp_path / "merged", MergeParams())


def test_an_adapter_with_another_tokenizer_is_refused(project: TinyProject, copy_of) -> None:
    retrained = copy_of()
    train_tokenizer(["other words entirely"] * 50, 600, 1024).save_pretrained(retrained)
    with pytest.raises(DataError, match=r"its tokenizer's vocabulary differs from the base's"):
        check_adapter(retrained, project.base)


def test_a_quantized_base_is_refused(project: TinyProject, adapter: Path, tmp_path: Path) -> None:
    base = Path(shutil.copytree(project.base, tmp_path / "base"))
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps(config | {"quantization_config": {"load_in_4bit": True}}))
    with pytest.raises(DataError, match=r"stored quantized; merging needs its unquantized weights"):
        merge_adapter(base, adapter, project.samples, tmp_path / "merged", MergeParams())


def test_the_merge_stage_writes_its_metrics(project: TinyProject, adapter: Path, tmp_path: Path) -> None:
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "stages.merge", str(project.base), str(adapter), str(project.samples), "merged"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics" / "merge.json").read_text())
    assert metrics["max_abs_logit_diff"] < metrics["tolerance"] == 1e-3
    assert "largest logit difference" in proc.stdout
    assert (tmp_path / "merged" / "model.safetensors").is_file()
