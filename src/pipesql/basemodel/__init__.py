"""The base model of the download stage: a Hugging Face model directory at `models/base/`.

    scratch   a small Qwen2 with a BPE tokenizer trained on the raw data (no network needed)
    hub       a pinned snapshot of a hub repo, through the shared HF cache
    local     a model directory already on disk

Whatever the source, the directory loads with `AutoModelForCausalLM` / `AutoTokenizer`, its chat
template marks assistant turns for loss masking, and `pipesql_base.json` says where it came from.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from safetensors import safe_open
from transformers import AutoTokenizer

from pipesql.basemodel.chat_template import check_assistant_mask
from pipesql.basemodel.pretrained import copy_model_files, ensure_training_template, fetch_hub_model
from pipesql.basemodel.scratch import build_scratch_model
from pipesql.io import atomic_path, write_json
from pipesql.params.download import ModelParams

RECORD_FILE = "pipesql_base.json"


def prepare_base_model(params: ModelParams, raw_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Write a Hugging Face model directory at out_dir atomically; return metrics.

    raw_dir is read only by the scratch source, whose tokenizer is trained on it.
    """
    record: dict[str, Any] = {
        "source": params.source,
        "name": None,
        "revision": None,
        "path": None,
        "chat_template_replaced": False,
    }
    with atomic_path(Path(out_dir)) as tmp:
        if params.source == "scratch":
            record |= build_scratch_model(params.scratch, Path(raw_dir), tmp)
            origin = "scratch model"
        elif params.source == "hub":
            record |= {"name": params.name, "revision": params.revision}
            origin = f"{params.name}@{params.revision}"
            fetch_hub_model(params.name, params.revision, tmp)
        else:
            record["path"] = origin = str(params.path)
            copy_model_files(Path(params.path), tmp, origin)
        if params.source != "scratch":  # ours is marked already; pretrained ones seldom are
            record["chat_template_replaced"] = ensure_training_template(tmp, origin)
        tokenizer = AutoTokenizer.from_pretrained(tmp)
        check_assistant_mask(tokenizer, origin)
        record |= {
            "parameters": count_parameters(tmp),
            "vocab_size": len(tokenizer),
            "eos_token": tokenizer.eos_token,
            "pad_token": tokenizer.pad_token,
        }
        write_json(tmp / RECORD_FILE, record)
    return record


def count_parameters(model_dir: Path) -> int:
    """From the safetensors headers, without loading a model that may not fit in memory.

    Tied embeddings are stored once, so this counts distinct parameters.
    """
    total = 0
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(path, framework="pt") as f:
            total += sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())
    return total
