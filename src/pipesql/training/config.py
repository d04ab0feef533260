"""Hugging Face configs built field by field from `TrainParams`, never `Config(**section)`.

An upstream rename then breaks one line here instead of a run hours in, and every value the
trainer sees can be traced to a params key or to a line below that says why it is fixed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from peft import LoraConfig
from transformers import BitsAndBytesConfig
from trl import SFTConfig

from pipesql.params.base import ParamsError
from pipesql.params.train import TrainParams
from pipesql.training.launch import uses_cpu

Precision = Literal["bf16", "fp16", "fp32"]
# Non-reentrant checkpointing lets gradients reach LoRA weights inside a checkpointed layer
# whether or not the layer's input requires grad (the frozen embedding's output does not).
CHECKPOINTING_KWARGS = {"use_reentrant": False}


def packs(params: TrainParams) -> bool:
    """train.packing resolved: `auto` packs where the attention kernel skips the masked blocks.

    flash_attention_2 attends within each packed sample through its varlen kernel; sdpa and
    eager get a block-diagonal mask over the whole concatenated row, which keeps samples apart
    but computes every masked score (see benchmarks/train_throughput.py).
    """
    if params.packing == "auto":
        return params.attn_implementation == "flash_attention_2"
    return params.packing


def resolve_precision(requested: str, on_cpu: bool, bf16_supported: bool) -> Precision:
    """`auto`: bf16 where the GPU has it, else fp16 on GPU, fp32 on CPU. Explicit values are checked.

    A fallback is never applied silently: an explicit request the hardware cannot honour raises.
    (A GPU profile without CUDA is refused earlier, by `launch.check_request`.)
    """
    if requested == "auto":
        if on_cpu:
            return "fp32"
        return "bf16" if bf16_supported else "fp16"
    if requested == "fp16" and on_cpu:
        raise ParamsError("params.yaml: train.precision: fp16 needs a CUDA GPU; use fp32 or bf16 on CPU")
    if requested == "bf16" and not on_cpu and not bf16_supported:
        raise ParamsError("params.yaml: train.precision: this GPU has no bf16; use fp16 or auto")
    return requested  # type: ignore[return-value]


def hardware_precision(params: TrainParams) -> Precision:
    cuda = torch.cuda.is_available()
    return resolve_precision(params.precision, uses_cpu(params), cuda and torch.cuda.is_bf16_supported())


def device_map(params: TrainParams, local_process_index: int) -> dict[str, int] | None:
    """Weights straight onto this process's GPU, tensor by tensor, never a whole copy in host RAM.

    On CPU the weights stay where they load (each CPU process trains its own copy).
    """
    return None if uses_cpu(params) else {"": local_process_index}


def torch_dtype(precision: Precision) -> torch.dtype:
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def lora_config(params: TrainParams) -> LoraConfig:
    lora = params.lora
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        modules_to_save=list(lora.modules_to_save) or None,
        bias="none",
        ensure_weight_tying=True,  # a tied embedding and output head stay one matrix when trained
    )


def quantization_config(params: TrainParams, precision: Precision) -> BitsAndBytesConfig | None:
    """QLoRA's recipe for 4bit: NF4 weights, double quantization, bf16 compute.

    Compute falls back to fp16 only where training itself runs in fp16 (a GPU without bf16).
    """
    if params.quantization == "none":
        return None
    if params.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float16 if precision == "fp16" else torch.bfloat16,
    )


def group_timeout(params: TrainParams) -> int:
    """Seconds a collective waits for its peers: train.nodes.timeout_s across machines, else
    transformers' default (30 minutes), since one machine's peers die with their launcher."""
    return params.nodes.timeout_s if params.launch == "multi_node" else 1800


def sft_config(
    params: TrainParams, checkpoint_dir: Path, precision: Precision, lr_scale: float, is_resuming: bool
) -> SFTConfig:
    """The trainer's arguments; `lr_scale` < 1 after divergence rollbacks."""
    return SFTConfig(
        output_dir=str(checkpoint_dir),
        seed=params.seed,
        data_seed=params.seed,
        # optimisation
        learning_rate=params.learning_rate * lr_scale,
        lr_scheduler_type=params.lr_scheduler,
        warmup_steps=params.warmup_fraction,  # transformers reads a float below 1 as a fraction
        weight_decay=params.weight_decay,
        max_grad_norm=params.max_grad_norm,
        per_device_train_batch_size=params.batch_size,
        gradient_accumulation_steps=params.gradient_accumulation_steps,
        num_train_epochs=params.epochs,
        max_steps=params.max_steps or -1,
        # precision and memory
        use_cpu=uses_cpu(params),
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        activation_checkpointing=params.gradient_checkpointing,  # transformers 5 name for it
        activation_checkpointing_kwargs=CHECKPOINTING_KWARGS if params.gradient_checkpointing else None,
        # LoRA leaves no trainable parameter without a gradient: skip DDP's graph walk for them
        ddp_find_unused_parameters=False,
        ddp_timeout=group_timeout(params),  # a dead peer ends a collective within this bound
        # data: samples arrive tokenized with labels, so TRL only packs (or not) and batches.
        # bfd packing is padding-free: position ids restart per sample and attention stays
        # within each (flash_attention_2's varlen kernel, or the block mask sdpa/eager get).
        packing=packs(params),
        packing_strategy="bfd",
        max_length=params.packed_length if packs(params) else None,  # None: never truncate
        eval_packing=False,  # eval loss comparable whether training packs or not
        train_sampling_strategy="group_by_length" if params.group_by_length and not packs(params) else "random",
        # evaluation, logging, checkpoints
        eval_strategy="steps",
        eval_steps=params.eval_steps,
        per_device_eval_batch_size=params.eval_batch_size,
        eval_on_start=not is_resuming,  # the first eval loss, the baseline learning is judged by
        logging_steps=params.logging_steps,
        logging_nan_inf_filter=False,  # the filter hides a NaN loss from the divergence guard
        save_strategy="steps",
        save_steps=params.save_steps,
        save_total_limit=params.save_total_limit,
        report_to="none",  # LivePlots is added as a callback: dvclive, configured by us
    )
