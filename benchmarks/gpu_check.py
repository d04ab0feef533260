"""One prepared GPU check: the hub recipe's training path on a model of Qwen2.5-Coder-1.5B's shape.

    python -m benchmarks.gpu_check                  # a CUDA machine: ~50 steps per case, 1.5B shape
    python -m benchmarks.gpu_check --tiny           # the same code paths at toy size, on the CPU (CI)
    python -m benchmarks.gpu_check --json out.json  # also write the summary

Nothing is downloaded: the model is randomly initialised from a config of Qwen2.5-Coder-1.5B's
exact shape (28 layers, 1536 wide, 151,936-token vocabulary, tied head), with a byte-level BPE
tokenizer trained here on the check's own texts (its ids fill the embedding's first rows), and
samples built with the chat template as the tokenize stage builds them. Each case trains with the
hub recipe (LoRA r 16, alpha 32, dropout 0.05 on all seven projections, nothing trained in full,
learning rate 2e-4) through `pipesql.training.train.train`:

    bf16_lora        bf16, launch gpu
    qlora_4bit       + 4-bit NF4 base (QLoRA)
    checkpointing    + gradient checkpointing
    packed           + packing, with flash_attention_2 where flash-attn is installed (else sdpa)
    deepspeed_zero2  the train stage itself (`python -m stages.train`) under DeepSpeed ZeRO-2 on
                     one GPU: launcher, supervisor and all

then batched eval generation (`evaluation.generate`, prefix cache, greedy) with the bf16 adapter
and the merge (`pipesql.merge.merge_adapter`, which checks the merged logits). Per case it prints
tokens/s (real tokens, after `--warmup` steps), model FLOPs utilisation (TRL's FLOPs per token
and its table of peak bf16 FLOPs), peak GPU memory, and generation queries/s; it exits 1 when
any case fails or trains to a non-finite loss.

`--tiny` runs every case on the CPU at toy size (64 wide, a few steps, fp32: the CPU has no fast
bf16); the stage case runs under the `cpu` launch profile, since DeepSpeed needs CUDA, and MFU and
GPU memory are null. CI runs it so that the check never rots between GPU sessions.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from datasets import Dataset, DatasetDict
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from pipesql.basemodel.scratch import train_tokenizer
from pipesql.params import recipes
from pipesql.params.tokenize import TokenizeParams
from pipesql.params.train import TrainParams
from pipesql.prompts.contract import build_contract, write_contract

REPO = Path(__file__).resolve().parents[1]
RECIPE = "qwen-coder-1.5b-spider"
TABLES = ("singer", "concert", "stadium", "pet", "flight", "airport", "course", "student")
COLUMNS = ("id", "name", "age", "country", "year", "capacity", "city", "price", "rank", "title")


@dataclass(frozen=True)
class Size:
    """The model's shape and the run's size."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int | None          # None: the tokenizer's own size
    tokenizer_vocab: int
    steps: int
    warmup: int
    batch_size: int
    samples: int
    tables: tuple[int, int]    # tables per schema: a longer schema, a longer sample
    generation_queries: int
    max_new_tokens: int


# Qwen2.5-Coder-1.5B(-Instruct)'s config.json, field by field
QWEN_1_5B = Size(hidden=1536, intermediate=8960, layers=28, heads=12, kv_heads=2, vocab=151_936,
                 tokenizer_vocab=4096, steps=50, warmup=10, batch_size=8, samples=512, tables=(3, 8),
                 generation_queries=64, max_new_tokens=64)
TINY = Size(hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2, vocab=None, tokenizer_vocab=400,
            steps=4, warmup=1, batch_size=4, samples=24, tables=(1, 2), generation_queries=8, max_new_tokens=8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="toy size on the CPU: what CI runs")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    parser.add_argument("--keep", type=Path, help="build inputs and outputs here instead of a temporary folder")
    args = parser.parse_args()
    size = TINY if args.tiny else QWEN_1_5B
    if not args.tiny and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device; run with --tiny on a CPU")
    if args.keep:
        summary = run_check(size, args.tiny, args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="pipesql-gpu-check-") as tmp:
            summary = run_check(size, args.tiny, Path(tmp))
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    if summary["failed"]:
        sys.exit(f"gpu_check: failed: {', '.join(summary['failed'])}")


def run_check(size: Size, tiny: bool, root: Path) -> dict[str, Any]:
    """Every case in turn, each failure recorded rather than stopping the rest."""
    started = time.perf_counter()
    base, samples, tasks, config = build_inputs(size, root)
    flash = not tiny and importlib.util.find_spec("flash_attn") is not None
    results: dict[str, Any] = {}
    failed: list[str] = []

    def attempt(name: str, case: Callable[[], dict[str, Any]]) -> None:
        print(f"gpu_check: {name}", flush=True)
        try:
            results[name] = case()
        except Exception as e:  # noqa: BLE001  (the check reports every case, then fails)
            traceback.print_exc()
            results[name] = {"error": f"{type(e).__name__}: {e}"}
            failed.append(name)
        _release()

    cases = {
        "bf16_lora": {},
        "qlora_4bit": {"quantization": "4bit"},
        "checkpointing": {"gradient_checkpointing": True},
        "packed": {"packing": True, "attn_implementation": "flash_attention_2" if flash else "sdpa"},
    }
    for name, overrides in cases.items():
        attempt(name, lambda o=overrides, n=name: train_case(size, tiny, root / n, base, samples, config, o))
    attempt("deepspeed_zero2", lambda: stage_case(size, tiny, root / "stage", base, samples, config))
    adapter = root / "bf16_lora" / "adapter"
    attempt("generation", lambda: generation_case(size, base, adapter, tasks))
    attempt("merge", lambda: merge_case(base, adapter, samples, root / "merged"))
    return {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() and not tiny else platform.processor() or "cpu",
        "tiny": tiny,
        "shape": {"hidden": size.hidden, "layers": size.layers, "vocab": config.vocab_size,
                  "parameters": _parameters(config)},
        "steps": size.steps,
        "batch_size": size.batch_size,
        "flash_attn_installed": importlib.util.find_spec("flash_attn") is not None,
        "results": results,
        "failed": failed,
        "seconds": round(time.perf_counter() - started, 1),
    }


# ---------------------------------------------------------------- inputs


def build_inputs(size: Size, root: Path) -> tuple[Path, Path, list[Any], Qwen2Config]:
    """A tokenizer, a random model of the size's shape, and train/dev/test samples; all on disk."""
    from pipesql.evaluation.generate import Task
    from pipesql.prompts import full_answer, full_messages

    rng = random.Random(0)
    pairs = [_pair(rng, size) for _ in range(size.samples + 16)]
    texts = [text for schema, question, ops in pairs for text in (schema, question, *ops)]
    tokenizer = train_tokenizer(texts, size.tokenizer_vocab, 32_768)
    config = Qwen2Config(
        vocab_size=size.vocab or len(tokenizer),
        hidden_size=size.hidden,
        intermediate_size=size.intermediate,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.kv_heads,
        max_position_embeddings=32_768,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    base = root / "base"
    device = "cuda" if torch.cuda.is_available() and size.vocab else "cpu"
    with torch.device(device):
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(config)
    model.to(torch.bfloat16 if device == "cuda" else torch.float32).save_pretrained(base)
    tokenizer.save_pretrained(base)
    del model
    _release()

    rows = [_sample(tokenizer, full_messages(q, s) + [{"role": "assistant", "content": full_answer(ops)}])
            for s, q, ops in pairs]
    n = size.samples
    samples = root / "samples"
    DatasetDict(
        train=Dataset.from_list(rows[:n]), dev=Dataset.from_list(rows[n : n + 8]), test=Dataset.from_list(rows[n + 8 :])
    ).save_to_disk(samples)
    write_contract(samples, build_contract(TokenizeParams(mode="full"), tokenizer.chat_template))  # as tokenize does
    tasks = [Task(question=q, schema=s) for s, q, _ in pairs[: size.generation_queries]]
    return base, samples, tasks, config


def _pair(rng: random.Random, size: Size) -> tuple[str, str, list[str]]:
    """A schema of a few tables, a question and its pipe SQL operators: text with the data's shape."""
    tables = rng.sample(TABLES, rng.randint(*size.tables))
    schema = "\n".join(
        f"CREATE TABLE {t} ({', '.join(f'{c} TEXT' for c in rng.sample(COLUMNS, rng.randint(3, 8)))});" for t in tables
    )
    table, column, n = tables[0], rng.choice(COLUMNS), rng.randint(1, 99)
    return schema, f"Which {table} rows have {column} above {n}?", [f"FROM {table}", f"|> WHERE {column} > {n}", "|> SELECT *"]


def _sample(tokenizer: PreTrainedTokenizerFast, messages: list[dict[str, str]]) -> dict[str, Any]:
    """The tokenize stage's columns that training reads: input_ids, labels (-100 outside the
    assistant's reply), and the db_id and difficulty a dev sample is drawn by."""
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    labels = [t if m else -100 for t, m in zip(out["input_ids"], out["assistant_masks"], strict=True)]
    return {"input_ids": out["input_ids"], "labels": labels, "db_id": "gpu_check", "difficulty": "unknown"}


# ---------------------------------------------------------------- cases


def hub_recipe(size: Size, tiny: bool, **overrides: Any) -> TrainParams:
    """The train section of the recipe users run (configs/recipes/, RECIPE), cut to a short run;
    bf16 LoRA unless a case asks for 4-bit."""
    path = REPO / "configs" / "recipes" / f"{RECIPE}.yaml"
    recipe = recipes.resolve(recipes.read_overrides(path), path, partial=True)["train"]
    return TrainParams.model_validate({
        **recipe.model_dump(mode="json"),
        "quantization": "none",
        "launch": "cpu" if tiny else "gpu",
        "precision": "fp32" if tiny else "bf16",
        "packing": False,
        "packed_length": 4096,
        "batch_size": size.batch_size,
        "max_steps": size.steps,
        "logging_steps": 1,
        "eval_steps": size.steps,
        "save_steps": size.steps,
        "eval_max_samples": 8,
        "eval_batch_size": 8,
        **overrides,
    })


class Throughput(TrainerCallback):
    """Real tokens per second between the end of step `warmup` and the last step."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.marks: list[tuple[float, float]] = []

    def on_log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
        logs: dict[str, float] | None = None, **kwargs: Any,
    ) -> None:
        if logs and "loss" in logs and state.global_step >= self.warmup:
            self.marks.append((time.perf_counter(), logs["num_tokens"]))

    def tokens_per_s(self) -> float:
        (t0, n0), (t1, n1) = self.marks[0], self.marks[-1]
        return (n1 - n0) / (t1 - t0)


def train_case(
    size: Size, tiny: bool, out: Path, base: Path, samples: Path, config: Qwen2Config, overrides: dict[str, Any]
) -> dict[str, Any]:
    from pipesql.training.train import train

    params = hub_recipe(size, tiny, **overrides)
    meter = Throughput(size.warmup)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    metrics = train(params, samples, base, out / "adapter", out / "checkpoints", callbacks=[meter])
    _check_trained(metrics, size.steps)
    tokens_per_s = meter.tokens_per_s()
    return _figures(metrics, tokens_per_s, config, tiny)


def stage_case(size: Size, tiny: bool, out: Path, base: Path, samples: Path, config: Qwen2Config) -> dict[str, Any]:
    """The train stage as dvc.yaml runs it, from another directory, under DeepSpeed ZeRO-2 (1 GPU)."""
    params = hub_recipe(size, tiny, **({} if tiny else {"launch": "deepspeed_zero2", "processes": 1}))
    out.mkdir(parents=True)
    (out / "params.yaml").write_text(yaml.safe_dump({"train": params.model_dump(mode="json")}))
    command = [
        sys.executable, "-m", "stages.train", str(samples), str(base), "models/adapter",
        "--checkpoints", "checkpoints/train", "--launch-configs", str(REPO / "configs" / "accelerate"),
    ]
    env = {k: v for k, v in os.environ.items() if k != "PIPESQL_TRAIN_LAUNCHED"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.run(command, cwd=out, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the train stage exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    metrics = json.loads((out / "metrics" / "train.json").read_text())
    _check_trained(metrics, size.steps)
    # the stage's own tokens/s: the whole run, evaluation and start-up included
    figures = _figures(metrics, metrics["tokens_per_s"], config, tiny)
    figures["launch"] = params.launch
    return figures


def generation_case(size: Size, base: Path, adapter: Path, tasks: list[Any]) -> dict[str, Any]:
    """Eval's batched generation (left padding, prefix cache, greedy) over base + adapter."""
    from pipesql.evaluation.generate import HFGenerator, generate_full
    from pipesql.models import load_model
    from pipesql.params.eval import GenerationParams

    dtype = "bf16" if torch.cuda.is_available() and size.vocab else "fp32"
    model, tokenizer = load_model(base, adapter, dtype)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    generator = HFGenerator(model, tokenizer, GenerationParams(batch_size=32), progress=False)
    started = time.perf_counter()
    generations = generate_full(tasks, generator, size.max_new_tokens)
    seconds = time.perf_counter() - started
    assert len(generations) == len(tasks)
    return {
        "queries": len(tasks),
        "max_new_tokens": size.max_new_tokens,
        "queries_per_s": round(len(tasks) / seconds, 2),
        "cached_prefixes": generator.cached_prefixes,
        "peak_gpu_memory_gib": _peak_memory_gib(),
    }


def merge_case(base: Path, adapter: Path, samples: Path, out: Path) -> dict[str, Any]:
    """merge_adapter raises MergeCheckError when the merged logits are not base + adapter's."""
    from pipesql.merge import merge_adapter
    from pipesql.params.merge import MergeParams

    started = time.perf_counter()
    metrics = merge_adapter(base, adapter, samples, out, MergeParams())
    return {"max_abs_logit_diff": metrics["max_abs_logit_diff"], "tolerance": metrics["tolerance"],
            "seconds": round(time.perf_counter() - started, 1)}


# ---------------------------------------------------------------- figures


def _check_trained(metrics: dict[str, Any], steps: int) -> None:
    if metrics["steps"] != steps or not math.isfinite(metrics["train_loss"] or math.nan):
        raise RuntimeError(f"trained {metrics['steps']} of {steps} steps, last loss {metrics['train_loss']}")


def _figures(metrics: dict[str, Any], tokens_per_s: float, config: Qwen2Config, tiny: bool) -> dict[str, Any]:
    from trl.trainer.utils import compute_flops_per_token, get_peak_flops

    seq_len = round(metrics["train_tokens"] / metrics["train_samples"])
    peak = None if tiny or not torch.cuda.is_available() else get_peak_flops(torch.cuda.get_device_name(), "bfloat16")
    mfu = None if peak is None else 100 * compute_flops_per_token(config, seq_len) * tokens_per_s / peak
    return {
        "tokens_per_s": round(tokens_per_s, 1),
        "mfu_percent": None if mfu is None else round(mfu, 2),
        "peak_gpu_memory_gib": metrics.get("peak_gpu_memory_gib") or _peak_memory_gib(),
        "train_loss": metrics["train_loss"],
        "eval_loss": metrics["eval_loss"],
        "mean_sample_tokens": seq_len,
        "precision": metrics["precision"],
        "packing": metrics["packing"],
        "rollbacks": metrics["rollbacks"],
    }


def _peak_memory_gib() -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None


def _parameters(config: Qwen2Config) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in Qwen2ForCausalLM(config).parameters())


def _release() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
