"""Fine-tune the base model on the tokenized samples with TRL's SFTTrainer and a PEFT LoRA adapter.

The trainer is `trainer.Trainer`, TRL's SFTTrainer with a cheaper loss and length grouping.

`train` reads in run order: processes and seed → request checks → samples → checkpoints (resume
or start over) → model + adapter → SFTConfig → callbacks → one attempt → save → metrics.
Derived numbers (tokens per optimizer step, trainable parameters) are printed before anything
expensive. Every process runs this function; only the main one prints, writes and uploads.

An attempt the divergence guard stops records the event in the run record and raises
`RollbackPending`: the process ends, and the stage's supervisor (`launch.supervise`) starts fresh
ones, which resume from the newest complete checkpoint at the lowered rate. A rollback never
builds a second model, Trainer or DeepSpeed engine beside the first in one process.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from datasets import Dataset, DatasetDict, load_from_disk
from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, TrainerCallback, set_seed
from trl import SFTTrainer

from pipesql.io import DataError, atomic_path, write_json
from pipesql.params.base import ParamsError, to_dict
from pipesql.params.train import TrainParams
from pipesql.prompts.contract import copy_contract
from pipesql.stratified import stratified_sample
from pipesql.training.callbacks import CompleteMarkers, DivergenceGuard, LivePlots, UploadCheckpoints, skipped_steps
from pipesql.training.checkpoints import (
    RUN_RECORD,
    RunRecord,
    checkpoint_step,
    newest_complete,
    open_run,
    read_record,
    run_fingerprint,
    write_record,
)
from pipesql.training.config import (
    CHECKPOINTING_KWARGS,
    Precision,
    device_map,
    group_timeout,
    hardware_precision,
    lora_config,
    packs,
    quantization_config,
    sft_config,
    torch_dtype,
)
from pipesql.training.launch import check_machine, uses_cpu
from pipesql.training.trainer import Trainer

CONFIG_FILE = "pipesql_train.json"   # beside the adapter: params, resolved precision, trainer args


class TrainingDiverged(RuntimeError):
    """The divergence guard tripped more often than train.guard.max_rollbacks allows."""


class RollbackPending(RuntimeError):
    """The guard stopped this attempt; the event is recorded and a fresh launch goes on from it."""


def train(
    params: TrainParams,
    samples_dir: Path,
    base_dir: Path,
    out_dir: Path,
    checkpoint_dir: Path,
    plots_dir: Path | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> dict[str, Any]:
    """Write a PEFT adapter (+ tokenizer, resolved config) to out_dir; return the metrics.

    One attempt: raises RollbackPending when the guard stops it (the stage relaunches), or
    TrainingDiverged when train.guard.max_rollbacks is spent. `callbacks` are added to the
    Trainer's (tests inject faults through them).
    """
    # ---- processes and seed. PartialState joins torchrun's gloo group on CPU (use_cpu), as
    # the Trainer's own arguments will; created first so that every later barrier has a group.
    # Across machines the collectives wait train.nodes.timeout_s for a peer (the Trainer's
    # ddp_timeout comes too late to set it); on one machine torch's default stays.
    across = {"timeout": timedelta(seconds=group_timeout(params))} if params.launch == "multi_node" else {}
    state = PartialState(cpu=uses_cpu(params), **across)
    is_main = state.is_main_process
    set_seed(params.seed)
    check_machine(params, Path(base_dir))  # before any weights load
    precision = hardware_precision(params)

    # ---- samples: the tokenize stage's Arrow splits, used as they are (no second tokenization)
    train_set, eval_set, data_stats = load_samples(Path(samples_dir), params)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)

    # ---- checkpoints: resume only what these params and inputs made; never a half-written one
    init_from = Path(params.init_from) if params.init_from else None
    inputs = [Path(samples_dir), Path(base_dir), *([init_from] if init_from else [])]
    fingerprint = run_fingerprint(to_dict(params), inputs)
    note = ""
    if is_main:
        _, note = open_run(Path(checkpoint_dir), fingerprint, params.resume)
    state.wait_for_everyone()
    if params.launch == "multi_node":
        _check_same_params(params, state)
        _check_shared(Path(checkpoint_dir), state)
    record = read_record(Path(checkpoint_dir))  # as the main process left it, on every process
    if record is None:
        raise DataError(f"{checkpoint_dir}: {RUN_RECORD} vanished; is another run using this directory?")
    resume_from = newest_complete(Path(checkpoint_dir))

    # ---- derived numbers, before anything expensive
    rows_per_step = params.batch_size * params.gradient_accumulation_steps * state.num_processes
    _say(is_main, _plan(params, data_stats, precision, state.num_processes, rows_per_step))
    _say(is_main, f"checkpoints: {checkpoint_dir} ({note}); "
         + (f"resuming from {resume_from.name}" if resume_from else "starting at step 0")
         + (f", learning rate x{record.lr_scale:g} after {len(record.events)} rollback(s)" if record.events else ""))

    # ---- one attempt; on divergence, record it and leave the rollback to a fresh process
    guard = DivergenceGuard(params.guard, loss_scaling=precision == "fp16")
    uploads = UploadCheckpoints(params.checkpoint_uri) if params.checkpoint_uri else None
    model = load_model(Path(base_dir), params, precision, None if resume_from else init_from)
    trainer = Trainer(
        model=model,
        args=sft_config(params, Path(checkpoint_dir), precision, record.lr_scale, resume_from is not None),
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        callbacks=[
            guard,
            CompleteMarkers(),            # before the upload, which sends complete ones only
            *([uploads] if uploads else []),
            *([LivePlots(Path(plots_dir))] if plots_dir else []),
            *callbacks,
        ],
    )
    _say(is_main, _trainable(model))
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    seconds = time.perf_counter() - started
    if guard.tripped is not None:
        _record_trip(guard.tripped, record, params, Path(checkpoint_dir), state)

    # ---- the adapter, its tokenizer and the resolved config, in place only once complete
    resolved = {
        "params": to_dict(params),
        "precision": precision,
        "packing": packs(params),
        "world_size": state.num_processes,
        "lr_scale": record.lr_scale,
        "trainer_args": json.loads(trainer.args.to_json_string()),
    }
    save_adapter(trainer, Path(out_dir), resolved, state, Path(samples_dir))
    return _metrics(trainer, record, resolved, resume_from, seconds, uploads, data_stats)


def _check_same_params(params: TrainParams, state: PartialState) -> None:
    """Every machine must train the same run: rank 0's train section, the machine's rank aside
    (a `dvc exp run -S` on one machine changes that machine's params.yaml only)."""
    from accelerate.utils import broadcast_object_list

    mine = to_dict(params)
    mine["nodes"].pop("rank")
    rank0 = [mine if state.is_main_process else None]
    broadcast_object_list(rank0)
    differ = param_differences(rank0[0], mine)
    if differ:
        raise ParamsError("\n".join(
            f"params.yaml: train.{key}: {value!r} on this machine, {theirs!r} on rank 0's; every machine"
            " needs the same params.yaml" for key, (value, theirs) in differ.items()
        ))


def param_differences(rank0: dict[str, Any], mine: dict[str, Any], prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (mine, rank 0's) for every leaf that differs."""
    out: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(rank0) | set(mine)):
        a, b = mine.get(key), rank0.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.update(param_differences(b, a, f"{prefix}{key}."))
        elif a != b:
            out[f"{prefix}{key}"] = (a, b)
    return out


def _check_shared(checkpoint_dir: Path, state: PartialState) -> None:
    """Every machine must see rank 0's checkpoint directory: each rank writes its part of a
    checkpoint (RNG state; ZeRO-2 optimizer shards) there, and all resume from the same one."""
    from accelerate.utils import broadcast_object_list

    probe = checkpoint_dir / ".pipesql_shared"
    token = [uuid.uuid4().hex if state.is_main_process else None]
    if state.is_main_process:
        probe.write_text(token[0], encoding="utf-8")
    broadcast_object_list(token)
    seen = probe.read_text(encoding="utf-8") if probe.is_file() else None
    state.wait_for_everyone()
    if seen != token[0]:
        raise DataError(
            f"{checkpoint_dir}: rank {state.process_index} does not see rank 0's checkpoint directory;"
            " train.launch multi_node needs --checkpoints on a filesystem every machine mounts (see"
            " README, Several machines)"
        )


# ---------------------------------------------------------------- samples


def load_samples(samples_dir: Path, params: TrainParams) -> tuple[Dataset, Dataset, dict[str, Any]]:
    """train and dev splits reduced to input_ids + labels; dev capped at eval_max_samples.

    Loaded into memory: TRL's dataset preparation calls map(), which on a memory-mapped dataset
    would write cache files into data/samples/, another stage's output.
    """
    if not samples_dir.is_dir():
        raise DataError(f"{samples_dir}: samples not found; run 'dvc repro tokenize' first")
    splits = load_from_disk(str(samples_dir), keep_in_memory=True)
    if not isinstance(splits, DatasetDict):
        raise DataError(f"{samples_dir}: expected a DatasetDict with train and dev splits")
    for name in ("train", "dev"):
        if name not in splits or len(splits[name]) == 0:
            raise DataError(f"{samples_dir}: the {name!r} split is missing or empty")
        missing = {"input_ids", "labels"} - set(splits[name].column_names)
        if missing:
            raise DataError(f"{samples_dir}: the {name!r} split lacks columns {sorted(missing)}")
    train_set = splits["train"].select_columns(["input_ids", "labels"])
    eval_set = splits["dev"].select_columns(["input_ids", "labels"])
    if params.eval_max_samples is not None:  # seeded, by database and difficulty: not the file's first N
        dev = splits["dev"]
        eval_set = eval_set.select(stratified_sample(list(zip(dev["db_id"], dev["difficulty"])),
                                                     params.eval_max_samples, params.seed))
    lengths = [len(ids) for ids in train_set["input_ids"]]
    labelled = sum(sum(1 for t in labels if t != -100) for labels in train_set["labels"])
    longest = max(lengths)
    if packs(params) and longest > params.packed_length:
        raise ParamsError(
            f"params.yaml: train.packed_length: {params.packed_length} is shorter than the longest"
            f" training sample ({longest} tokens in {samples_dir}); set it to {longest} or more"
            " (packing would cut the sample's end, where its labels are)"
        )
    stats = {"samples": len(lengths), "tokens": sum(lengths), "labelled_tokens": labelled,
             "longest": longest, "eval_samples": len(eval_set)}
    return train_set, eval_set, stats


# ---------------------------------------------------------------- model


def load_model(base_dir: Path, params: TrainParams, precision: Precision, init_from: Path | None) -> PeftModel:
    """The base model (quantized for QLoRA) with a LoRA adapter: fresh, or `init_from`'s weights.

    On a GPU the weights load straight onto this process's device (`config.device_map`).
    Checkpointing, when on, is enabled by the Trainer (non-reentrant, `CHECKPOINTING_KWARGS`), for
    a quantized base too: one place, one kind.
    """
    quantization = quantization_config(params, precision)
    model = AutoModelForCausalLM.from_pretrained(
        base_dir,
        dtype=torch_dtype(precision),
        attn_implementation=params.attn_implementation,
        quantization_config=quantization,
        device_map=device_map(params, PartialState().local_process_index),
    )
    if quantization is not None:
        if uses_cpu(params):
            _keep_cpu_training_layout(model)
        # norms and embeddings to fp32: the QLoRA preparation
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=params.gradient_checkpointing,
            gradient_checkpointing_kwargs=CHECKPOINTING_KWARGS,
        )
    if init_from is None:
        return get_peft_model(model, lora_config(params))
    _check_adapter(init_from, params)
    return PeftModel.from_pretrained(model, str(init_from), is_trainable=True)


def _keep_cpu_training_layout(model: PreTrainedModel) -> None:
    """Keep bitsandbytes' 4-bit CPU layers in the layout training uses.

    On AVX512-BF16 CPUs, bitsandbytes 0.50 repacks a 4-bit weight for inference on the first
    forward without gradients (our evaluation) and keeps using that layout once training
    resumes, where it fails on an in-place bias add. Evaluating in the training layout costs
    little at the sizes a CPU trains.
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def _check_adapter(adapter_dir: Path, params: TrainParams) -> None:
    """init_from must have the shape train.lora describes, so params.yaml describes the run."""
    config_path = adapter_dir / "adapter_config.json"
    if not config_path.is_file():
        raise DataError(f"{adapter_dir}: not a PEFT adapter (no adapter_config.json); check train.init_from")
    found = json.loads(config_path.read_text(encoding="utf-8"))
    wanted = lora_config(params)
    pairs = {
        "r": (found.get("r"), wanted.r),
        "alpha": (found.get("lora_alpha"), wanted.lora_alpha),
        "target_modules": (_names(found.get("target_modules")), _names(wanted.target_modules)),
        "modules_to_save": (_names(found.get("modules_to_save")), _names(wanted.modules_to_save)),
    }
    differ = [f"{key}: adapter {a!r}, params {b!r}" for key, (a, b) in pairs.items() if a != b]
    if differ:
        raise ParamsError(
            f"params.yaml: train.lora: does not match the adapter in train.init_from ({adapter_dir}):"
            f" {'; '.join(differ)}; set train.lora to the adapter's shape"
        )


def _names(modules: Any) -> list[str]:
    """Module names without their path: PEFT also records `model.embed_tokens` for `embed_tokens`."""
    return sorted({name.rsplit(".", 1)[-1] for name in modules or []})


# ---------------------------------------------------------------- divergence


def _record_trip(
    tripped: dict[str, Any], record: RunRecord, params: TrainParams, checkpoint_dir: Path, state: PartialState
) -> None:
    """Record the event and the checkpoint to go on from; raise RollbackPending, or TrainingDiverged
    once rollbacks run out (then nothing is pending: the stage stops)."""
    state.wait_for_everyone()
    resume_from = newest_complete(checkpoint_dir)
    record.events.append({
        **tripped,
        "rolled_back_to": checkpoint_step(resume_from) if resume_from else 0,
        "lr_scale": record.lr_scale * params.guard.lr_factor,
    })
    record.rollback_pending = len(record.events) <= params.guard.max_rollbacks
    if state.is_main_process:
        write_record(checkpoint_dir, record)
    state.wait_for_everyone()  # the record is written before any process exits
    if not record.rollback_pending:
        history = "; ".join(f"step {e['step']}: {e['reason']}" for e in record.events)
        raise TrainingDiverged(
            f"training diverged {len(record.events)} times, more than train.guard.max_rollbacks"
            f" ({params.guard.max_rollbacks}) allows: {history}. Lower train.learning_rate"
            f" (or raise train.guard.max_rollbacks to go on: the run resumes from {checkpoint_dir})"
        )
    raise RollbackPending(
        f"divergence at step {tripped['step']} ({tripped['reason']}): the next launch resumes from"
        f" {resume_from.name if resume_from else 'step 0'} at learning rate x{record.events[-1]['lr_scale']:g}"
    )


# ---------------------------------------------------------------- output


def save_adapter(
    trainer: SFTTrainer, out_dir: Path, resolved: dict[str, Any], state: PartialState, samples_dir: Path
) -> None:
    """Every process takes part (DeepSpeed gathers collectively); the main one writes and swaps.

    The Trainer writes adapter + tokenizer into a staging directory, which replaces out_dir only
    once the resolved config and the samples' prompt contract (how its prompts were built, which
    travels with the adapter) are beside them.
    """
    staging = out_dir.with_name(f".{out_dir.name}.staging")
    if state.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
    state.wait_for_everyone()
    trainer.save_model(str(staging))
    if state.is_main_process:
        write_json(staging / CONFIG_FILE, resolved)
        copy_contract(samples_dir, staging)
        with atomic_path(out_dir) as tmp:
            staging.rename(tmp)
    state.wait_for_everyone()


def _metrics(
    trainer: SFTTrainer,
    record: RunRecord,
    resolved: dict[str, Any],
    resumed_from: Path | None,
    seconds: float,
    uploads: UploadCheckpoints | None,
    data_stats: dict[str, Any],
) -> dict[str, Any]:
    """Final figures for metrics/train.json; the per-step curves are dvclive's plots."""
    history = trainer.state.log_history
    evals = [h for h in history if "eval_loss" in h]
    trains = [h for h in history if "loss" in h]
    tokens_start = _tokens_before(history, checkpoint_step(resumed_from) if resumed_from else 0)
    tokens_end = trains[-1].get("num_tokens", 0.0) if trains else 0.0
    return {
        "steps": trainer.state.global_step,
        "epochs": round(trainer.state.epoch or 0.0, 4),
        "train_loss": trains[-1]["loss"] if trains else None,
        "train_token_accuracy": trains[-1].get("mean_token_accuracy") if trains else None,
        "eval_loss_first": evals[0]["eval_loss"] if evals else None,
        "eval_loss": evals[-1]["eval_loss"] if evals else None,
        "eval_token_accuracy": evals[-1].get("eval_mean_token_accuracy") if evals else None,
        "tokens_trained": int(tokens_end),
        "tokens_per_s": round((tokens_end - tokens_start) / seconds, 1) if seconds else None,
        "train_seconds": round(seconds, 1),
        "trainable_parameters": trainer.model.get_nb_trainable_parameters()[0],
        "parameters": trainer.model.get_nb_trainable_parameters()[1],
        "precision": resolved["precision"],
        "packing": resolved["packing"],
        "world_size": resolved["world_size"],
        "lr_scale": resolved["lr_scale"],
        "resumed_from_step": checkpoint_step(resumed_from) if resumed_from else None,
        "divergence_events": record.events,
        "rollbacks": len(record.events),
        "fp16_skipped_steps": skipped_steps(history) if resolved["precision"] == "fp16" else 0,
        "peak_gpu_memory_gib": _peak_gpu_memory_gib(),
        "checkpoint_uploads": len(uploads.uploaded) if uploads else 0,
        "checkpoint_upload_failures": len(uploads.failed) if uploads else 0,
        "train_samples": data_stats["samples"],
        "train_tokens": data_stats["tokens"],
    }


def _peak_gpu_memory_gib() -> float | None:
    """This process's peak allocated CUDA memory; None on CPU."""
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**30, 2)


def _tokens_before(history: list[dict[str, Any]], step: int) -> float:
    """Tokens TRL had counted by `step`: what a resumed run does not count as its own work."""
    seen = [h["num_tokens"] for h in history if "num_tokens" in h and h["step"] <= step]
    return seen[-1] if seen else 0.0


def _plan(params: TrainParams, stats: dict[str, Any], precision: str, processes: int, rows: int) -> str:
    steps = f"{params.max_steps} steps" if params.max_steps else f"{params.epochs:g} epochs"
    if packs(params):
        batching = f"packed row(s) of {params.packed_length} tokens"
        step_tokens = rows * params.packed_length
    else:
        batching = "sample(s) of similar length" if params.group_by_length else "sample(s) in random order"
        step_tokens = rows * stats["tokens"] // stats["samples"]
    return (
        f"train: {stats['samples']:,} samples, {stats['tokens']:,} tokens"
        f" ({stats['labelled_tokens']:,} labelled), longest {stats['longest']}\n"
        f"batch: {params.batch_size} x {params.gradient_accumulation_steps} accumulation x"
        f" {processes} process(es) = {rows} {batching} per optimizer step (~{step_tokens:,} tokens)\n"
        f"run: {steps}, lr {params.learning_rate:g} {params.lr_scheduler}, precision {precision},"
        f" quantization {params.quantization}, eval every {params.eval_steps} steps on"
        f" {stats['eval_samples']} dev samples, checkpoint every {params.save_steps}"
    )


def _trainable(model: PeftModel) -> str:
    trainable, total = model.get_nb_trainable_parameters()
    return f"model: {total:,} parameters, {trainable:,} trainable ({trainable / total:.1%})"


def _say(is_main: bool, text: str) -> None:
    if is_main:
        print(text, flush=True)
