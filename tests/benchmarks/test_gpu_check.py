"""benchmarks/gpu_check.py: `--tiny` runs every case's code path on the CPU, so the GPU check never rots."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from project import REPO_ROOT, run

CASES = ("bf16_lora", "qlora_4bit", "checkpointing", "packed", "deepspeed_zero2")


def test_the_full_size_is_qwen2_5_coder_1_5b() -> None:
    """1,543,714,304 parameters: the hub model card's count (tied embedding and head)."""
    from benchmarks.gpu_check import QWEN_1_5B, _parameters
    from transformers import Qwen2Config

    config = Qwen2Config(
        vocab_size=QWEN_1_5B.vocab, hidden_size=QWEN_1_5B.hidden, intermediate_size=QWEN_1_5B.intermediate,
        num_hidden_layers=QWEN_1_5B.layers, num_attention_heads=QWEN_1_5B.heads,
        num_key_value_heads=QWEN_1_5B.kv_heads, tie_word_embeddings=True,
    )
    assert _parameters(config) == 1_543_714_304


@pytest.mark.slow
def test_tiny_check_passes_every_case(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    proc = run([sys.executable, "-m", "benchmarks.gpu_check", "--tiny", "--json", str(out)], REPO_ROOT, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    summary = json.loads(out.read_text())
    assert summary["tiny"] and summary["failed"] == []
    results = summary["results"]
    for case in CASES:
        figures = results[case]
        assert figures["tokens_per_s"] > 0 and math.isfinite(figures["train_loss"]), (case, figures)
        assert figures["mfu_percent"] is None and figures["rollbacks"] == 0
    assert results["packed"]["packing"] and not results["bf16_lora"]["packing"]
    assert results["deepspeed_zero2"]["launch"] == "cpu"  # DeepSpeed needs CUDA; the stage path runs
    assert results["generation"]["queries"] == 8 and results["generation"]["queries_per_s"] > 0
    assert results["merge"]["max_abs_logit_diff"] <= results["merge"]["tolerance"]
