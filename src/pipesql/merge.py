"""The adapter merged into its base, and the proof that the merged model computes what they did.

    merge_adapter(base_dir, adapter_dir, samples_dir, out_dir, params) -> metrics

The merge runs in fp32 on the unquantized base, a QLoRA adapter included: merging into a 4-bit
base would round the merged weights to 4 bits and lose much of what the adapter learnt (peft
#2321). Its logits are checked against base + adapter (unmerged, fp32) on the first test samples
within merge.tolerance.fp32, before the cast; the result is then cast once, to merge.dtype, and
the proof reloads the written directory as a user would: its logits must be within that dtype's
tolerance and predict the same next token at merge.min_argmax_agreement of the positions (a
whole-logit bf16 tolerance alone cannot see a half-lost adapter). Only then does the directory,
with the adapter's prompt contract, replace out_dir, so a corrupted adapter never ships.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from datasets import load_from_disk
from transformers import AutoModelForCausalLM, PreTrainedModel

from pipesql.io import DataError, atomic_path, write_json
from pipesql.models import TORCH_DTYPES, check_adapter, default_device, load_model
from pipesql.params.base import to_dict
from pipesql.params.merge import MergeParams
from pipesql.prompts.contract import copy_contract

RECORD_FILE = "pipesql_merge.json"   # beside the merged weights: where they came from, the proof
TRAIN_RECORD = "pipesql_train.json"  # the train stage's resolved config, beside the adapter
# Logits are compared at each prompt's last positions: every position runs through every weight,
# so a few suffice, and a 150k vocabulary at every position would take gigabytes per prompt.
COMPARED_POSITIONS = 64


class MergeCheckError(DataError):
    """The merged model's logits are not base + adapter's; the message gives the difference."""


def merge_adapter(
    base_dir: Path, adapter_dir: Path, samples_dir: Path, out_dir: Path, params: MergeParams
) -> dict[str, Any]:
    """Write the merged model (safetensors, tokenizer, chat template) to out_dir; return metrics."""
    base_dir, adapter_dir = Path(base_dir), Path(adapter_dir)
    adapter_config = check_adapter(adapter_dir, base_dir)
    _check_unquantized(base_dir)
    prompts = check_prompts(Path(samples_dir), params)
    device = default_device()

    model, tokenizer = load_model(base_dir, adapter_dir, "fp32", device)
    reference = _logits(model, prompts, device)
    merged = model.merge_and_unload()  # PEFT unties input and output embeddings when either changed
    # Tightly in fp32 first, where only the merge can differ; after the cast a whole-logit
    # tolerance cannot tell rounding from a half-lost adapter, so the next tokens must agree too.
    _check("fp32 merge", _diffs(_logits(merged, prompts, device), reference), params.tolerance.fp32,
           "merge.tolerance.fp32", adapter_dir, prompts)
    merged.to(TORCH_DTYPES[params.dtype])
    tolerance = getattr(params.tolerance, params.dtype)
    with atomic_path(Path(out_dir)) as tmp:
        merged.save_pretrained(tmp)  # safetensors, config, generation config
        tokenizer.save_pretrained(tmp)  # tokenizer and its chat template
        copy_contract(adapter_dir, tmp)  # how its prompts were built travels with it
        del merged, model
        reloaded = AutoModelForCausalLM.from_pretrained(tmp, dtype=TORCH_DTYPES[params.dtype]).to(device).eval()
        logits = _logits(reloaded, prompts, device)
        diffs = _diffs(logits, reference)
        largest = _check(f"merged model ({params.dtype})", diffs, tolerance,
                         f"merge.tolerance.{params.dtype}", adapter_dir, prompts)
        agreement = _argmax_agreement(logits, reference)
        if agreement < params.min_argmax_agreement:
            raise MergeCheckError(
                f"{adapter_dir}: the merged model ({params.dtype}) predicts base + adapter's next"
                f" token at {agreement:.1%} of {sum(d.shape[0] for d in diffs)} positions"
                f" (merge.min_argmax_agreement is {params.min_argmax_agreement:g}): the cast lost"
                " what the adapter learnt; keep merge.dtype fp32"
            )
        metrics = {
            "dtype": params.dtype,
            "max_abs_logit_diff": largest,
            "argmax_agreement": agreement,
            "mean_abs_logit_diff": float(torch.cat([d.flatten() for d in diffs]).mean()),
            "tolerance": tolerance,
            "prompts": len(prompts),
            "compared_positions": sum(d.shape[0] for d in diffs),
            "lora_r": adapter_config.get("r"),
            "modules_to_save": adapter_config.get("modules_to_save") or [],
            "trained_quantization": _trained_quantization(adapter_dir),
            "parameters": sum(p.numel() for p in reloaded.parameters()),
        }
        write_json(tmp / RECORD_FILE, {"base": str(base_dir), "adapter": str(adapter_dir),
                                        "params": to_dict(params), "check": metrics})
    return metrics


def check_prompts(samples_dir: Path, params: MergeParams) -> list[list[int]]:
    """The first merge.check_prompts test samples, each cut to merge.check_max_tokens tokens."""
    try:
        test = load_from_disk(str(samples_dir))["test"]
    except (FileNotFoundError, KeyError) as e:
        raise DataError(f"{samples_dir}: no test split ({e}); run 'dvc repro tokenize' first") from None
    if len(test) == 0:
        raise DataError(f"{samples_dir}: the test split is empty; merge checks its logits on test prompts")
    rows = test.select_columns(["input_ids"])
    return [list(rows[i]["input_ids"][: params.check_max_tokens]) for i in range(min(params.check_prompts, len(test)))]


def _diffs(logits: list[torch.Tensor], reference: list[torch.Tensor]) -> list[torch.Tensor]:
    return [(ours.float() - theirs).abs() for ours, theirs in zip(logits, reference, strict=True)]


def _check(what: str, diffs: list[torch.Tensor], tolerance: float, key: str, adapter_dir: Path,
           prompts: list[list[int]]) -> float:
    """The largest difference, once it is within tolerance; raises MergeCheckError otherwise."""
    largest = max(float(d.max()) for d in diffs)
    if not largest <= tolerance:  # NaN compares False: a non-finite difference fails too
        raise MergeCheckError(
            f"{adapter_dir}: the {what}'s logits differ from base + adapter by {largest:.4g}"
            f" ({key} is {tolerance:g}) on {len(prompts)} test prompts; a non-finite or large"
            " difference means the adapter is corrupt: run 'dvc repro train'. A merge into"
            " bf16/fp16 that only misses the tolerance: compare with dtype fp32 first"
        )
    return largest


def _argmax_agreement(logits: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    """Share of compared positions whose most likely next token is base + adapter's."""
    same = sum(int((a.argmax(-1) == b.argmax(-1)).sum()) for a, b in zip(logits, reference, strict=True))
    return same / sum(b.shape[0] for b in reference)


@torch.inference_mode()
def _logits(model: PreTrainedModel, prompts: list[list[int]], device: torch.device) -> list[torch.Tensor]:
    """fp32 logits of each prompt's last COMPARED_POSITIONS positions, one prompt at a time
    (no padding, so nothing but the weights can differ between the two models)."""
    out = []
    for ids in prompts:
        tensor = torch.tensor([ids], dtype=torch.long, device=device)
        out.append(model(input_ids=tensor, logits_to_keep=COMPARED_POSITIONS).logits[0].float().cpu())
    return out


def _check_unquantized(base_dir: Path) -> None:
    config = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("quantization_config"):
        raise DataError(
            f"{base_dir}: the base model is stored quantized; merging needs its unquantized weights"
            " (a merge into a 4-bit base loses quality, peft #2321): download the full-precision model"
        )


def _trained_quantization(adapter_dir: Path) -> str | None:
    """train.quantization as the train stage recorded it (4bit: a QLoRA adapter), if it did."""
    path = adapter_dir / TRAIN_RECORD
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("params", {}).get("quantization")
