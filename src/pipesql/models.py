"""Models for inference: a model directory alone (base or merged), or a base with its LoRA adapter.

eval, merge and `pipesql predict` all load through here, so an adapter is checked once, the same
way, before a weight is read: a missing adapter_config.json, an unreadable weights file or an
adapter made for another base fails naming the directory and what to do, instead of a size
mismatch from deep inside PEFT. A trained model directory carries its prompt contract
(`prompt_contract`), which names the chat template its tokenizer must have.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError, safe_open
from tokenizers import Tokenizer
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from pipesql.io import DataError
from pipesql.prompts.contract import CONTRACT_FILE, PromptContract, check_chat_template, read_contract

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"  # what PEFT saves by default; pickled .bin is never read
Dtype = Literal["bf16", "fp16", "fp32"]
TORCH_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}

_PEFT_PREFIX = "base_model.model."  # PEFT's saved keys: this, then the base model's own names
_LORA_KEY = re.compile(r"^(?P<module>.+)\.(?P<kind>lora_A|lora_B)\.weight$")


def resolve_dtype(requested: str) -> Dtype:
    """`auto`: bf16 on a GPU that has it, fp16 on another GPU, fp32 on CPU (where half precision
    is emulated, slower than fp32)."""
    if requested != "auto":
        return requested  # type: ignore[return-value]
    if not torch.cuda.is_available():
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_model(
    model_dir: Path, adapter_dir: Path | None, dtype: Dtype, device: torch.device | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model in `dtype` with the adapter on top (unmerged, as it was trained), in eval mode.

    The base is always loaded unquantized, a QLoRA adapter included: that is the model `merge`
    writes, so eval measures what will be shipped. The tokenizer is the adapter's where it saved
    one (the one it was trained with), else the model directory's.
    """
    model_dir = Path(model_dir)
    _check_model_dir(model_dir)
    if adapter_dir is not None:
        check_adapter(Path(adapter_dir), model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=TORCH_DTYPES[dtype])
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir))
    model.to(device or default_device()).eval()
    has_tokenizer = adapter_dir is not None and (Path(adapter_dir) / "tokenizer_config.json").is_file()
    tokenizer_dir = Path(adapter_dir if has_tokenizer else model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    trained_dir = Path(adapter_dir) if adapter_dir is not None else model_dir
    if (trained_dir / CONTRACT_FILE).is_file():
        check_chat_template(read_contract(trained_dir), tokenizer.chat_template, tokenizer_dir)
    return model, tokenizer


def prompt_contract(model_dir: Path | None, adapter_dir: Path | None) -> PromptContract:
    """The contract of what was trained: the adapter's, else the (merged) model's."""
    trained = adapter_dir if adapter_dir is not None else model_dir
    if trained is None:
        raise DataError("no model directory given")
    return read_contract(Path(trained))


def check_adapter(adapter_dir: Path, base_dir: Path) -> dict[str, Any]:
    """adapter_config.json, once every saved tensor is known to fit the base; raises DataError.

    Each LoRA matrix is checked against the layer it adapts (lora_A is r x in, lora_B out x r)
    and each module saved whole (modules_to_save) against the base's own, on a weightless copy
    of the base built from its config; a tokenizer saved with the adapter must have the base's
    vocabulary, since equal shapes alone would let a retrained tokenizer through.
    """
    adapter_dir, base_dir = Path(adapter_dir), Path(base_dir)
    config_path = adapter_dir / ADAPTER_CONFIG
    if not config_path.is_file():
        raise DataError(f"{adapter_dir}: {ADAPTER_CONFIG} not found; run 'dvc repro train' first")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{config_path}: not valid JSON ({e.msg}); run 'dvc repro train' again") from None
    if config.get("peft_type") != "LORA":
        raise DataError(f"{config_path}: peft_type is {config.get('peft_type')!r}, expected 'LORA'")
    _check_model_dir(base_dir)
    saved = _tensor_shapes(adapter_dir / ADAPTER_WEIGHTS)
    modules, params = _base_layout(base_dir)
    problems = []
    for key, shape in saved.items():
        name = key.removeprefix(_PEFT_PREFIX)
        match = _LORA_KEY.match(name)
        if match and isinstance(modules.get(match["module"]), torch.nn.Linear):
            layer = modules[match["module"]]
            wanted_dim, dim = (
                (layer.in_features, shape[1]) if match["kind"] == "lora_A" else (layer.out_features, shape[0])
            )
            if dim != wanted_dim:
                problems.append(f"{name} {shape} does not fit {match['module']} ({layer.in_features} -> {layer.out_features})")
        elif name in params:
            if params[name] != shape:
                problems.append(f"{name} is {shape}, the base's is {params[name]}")
        elif not any(name.startswith(f"{module}.") for module in modules if module):
            problems.append(f"{name}: the base has no such module")
    problems += _tokenizer_problems(adapter_dir, base_dir)
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise DataError(
            f"{adapter_dir}: the adapter does not match the base model in {base_dir}: {shown};"
            " train it on this base ('dvc repro train') or pass the base it was trained on"
        )
    return config


def _check_model_dir(model_dir: Path) -> None:
    if not (model_dir / "config.json").is_file():
        raise DataError(f"{model_dir}: config.json not found; not a model directory (run 'dvc repro download')")


def _tensor_shapes(path: Path) -> dict[str, list[int]]:
    if not path.is_file():
        raise DataError(f"{path.parent}: {path.name} not found; run 'dvc repro train' first")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {key: list(f.get_slice(key).get_shape()) for key in f.keys()}
    except (SafetensorError, OSError) as e:
        raise DataError(f"{path}: cannot read the adapter weights ({e}); the file is damaged, run 'dvc repro train'") from None


def _base_layout(base_dir: Path) -> tuple[dict[str, torch.nn.Module], dict[str, list[int]]]:
    """The base's modules and parameter shapes, from a copy on the meta device (no memory)."""
    config = AutoConfig.from_pretrained(base_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    modules = dict(model.named_modules())
    params = {name: list(p.shape) for name, p in model.named_parameters(remove_duplicate=False)}
    return modules, params


def _tokenizer_problems(adapter_dir: Path, base_dir: Path) -> list[str]:
    ours, theirs = adapter_dir / "tokenizer.json", base_dir / "tokenizer.json"
    if not (ours.is_file() and theirs.is_file()):
        return []
    if Tokenizer.from_file(str(ours)).get_vocab() != Tokenizer.from_file(str(theirs)).get_vocab():
        return ["its tokenizer's vocabulary differs from the base's"]
    return []
