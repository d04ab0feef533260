"""Pretrained base models, from the Hugging Face hub or a local directory, made ready for masking.

Both copy the same file set into the output and then make sure the chat template carries
`{% generation %}` markers: hub templates never do, and without them assistant-only loss has
nothing to mask by.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from fnmatch import fnmatch
from pathlib import Path

from huggingface_hub import snapshot_download
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from pipesql.basemodel.chat_template import chatml_template, has_generation_markers
from pipesql.io import DataError

# What loading, training and merging need; READMEs, .bin duplicates and ONNX exports stay behind.
MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
)
_TOKENIZER_FILES = (("tokenizer.json",), ("vocab.json", "merges.txt"), ("tokenizer.model",))


def fetch_hub_model(name: str, revision: str, out_dir: Path) -> None:
    """Download into the shared HF cache, then copy: a rerun at the same commit needs no network."""
    snapshot = Path(snapshot_download(name, revision=revision, allow_patterns=list(MODEL_FILES)))
    # Cache blobs are immutable, so the weights (gigabytes) can be hardlinked rather than copied.
    copy_model_files(snapshot, out_dir, origin=f"{name}@{revision}", link_weights=True)


def copy_model_files(src_dir: Path, out_dir: Path, origin: str, link_weights: bool = False) -> None:
    """Copy the MODEL_FILES of a complete model directory; the error lists everything missing.

    Only weights are ever linked: text files are rewritten in place by ensure_training_template.
    A local directory is copied whole, since its owner may later overwrite a file in place.
    """
    src_dir = Path(src_dir)
    if not src_dir.is_dir():
        raise DataError(f"{origin}: model directory not found")
    missing = missing_model_files(src_dir)
    if missing:
        raise DataError(f"{origin}: not a usable model directory: missing {', '.join(missing)}")
    out_dir.mkdir(parents=True)
    for src in sorted(src_dir.iterdir()):
        if src.is_file() and any(fnmatch(src.name, pattern) for pattern in MODEL_FILES):
            if link_weights and src.suffix == ".safetensors":
                _link_or_copy(src, out_dir / src.name)
            else:
                shutil.copyfile(src, out_dir / src.name)


def missing_model_files(model_dir: Path) -> list[str]:
    """Config, every weight shard, a tokenizer; weights in safetensors only (convert .bin first)."""
    missing = [] if (model_dir / "config.json").is_file() else ["config.json"]
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        missing += [s for s in shards if not (model_dir / s).is_file()]
    elif not any(model_dir.glob("*.safetensors")):
        missing.append("weights (*.safetensors)")
    if not any(all((model_dir / f).is_file() for f in files) for files in _TOKENIZER_FILES):
        missing.append("tokenizer (tokenizer.json, or vocab.json + merges.txt, or tokenizer.model)")
    return missing


def ensure_training_template(model_dir: Path, origin: str) -> bool:
    """Give a ChatML model our marked template; True where it replaced the model's own.

    The model's default system prompt is kept (read off a rendering of its template), so
    prompts without a system turn still look as they did in the model's own tuning.
    """
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    template = tokenizer.chat_template
    if isinstance(template, dict):  # named variants: training renders the default one
        template = template.get("default")
    if template and has_generation_markers(template):
        return False
    if not template or "<|im_start|>" not in template:
        raise DataError(
            f"{origin}: the chat template needs {{% generation %}}...{{% endgeneration %}} markers"
            " around assistant replies for assistant-only loss, and it is not ChatML, which we"
            " could replace; add the markers to its chat_template.jinja (trl ships marked"
            " variants in trl/chat_templates/*_training.jinja)"
        )
    system = _default_system(tokenizer)
    (model_dir / "chat_template.jinja").write_text(chatml_template(system), encoding="utf-8")
    _drop_config_template(model_dir / "tokenizer_config.json")
    return True


def _default_system(tokenizer: PreTrainedTokenizerBase) -> str | None:
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "?"}], tokenize=False)
    found = re.match(r"<\|im_start\|>system\n(.*?)<\|im_end\|>\n", rendered, flags=re.DOTALL)
    return found.group(1) if found else None


def _drop_config_template(config_path: Path) -> None:
    """One template on disk: the .jinja file wins on load, a stale copy would mislead readers."""
    if not config_path.is_file():
        return
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.pop("chat_template", None) is not None:
        config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", "utf-8")


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src.resolve(), dst)  # the snapshot entry is a symlink: link its blob
    except OSError:  # another filesystem, or links unsupported
        shutil.copyfile(src, dst)
