"""train section: LoRA/QLoRA, optimisation, launch, checkpoints and the divergence guard."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from pipesql.params.base import ParamsError, Strict, format_errors, to_dict

# Every attention and MLP projection of Qwen2 / Llama-style decoders.
ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoraParams(Strict):
    """Defaults: the offline scratch model (see params.yaml); a hub model takes r 16, alpha 32,
    LoRA on ALL_PROJECTIONS and nothing trained in full."""

    r: int = Field(64, gt=0, le=4096)
    alpha: float = Field(128.0, gt=0)               # updates are scaled by alpha / r
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: tuple[str, ...] = Field(("q_proj",), min_length=1)
    # trained in full and saved inside the adapter (a scratch model's random weights)
    modules_to_save: tuple[str, ...] = ("embed_tokens", *ALL_PROJECTIONS[1:])


class GuardParams(Strict):
    """Divergence guard: on a non-finite loss or grad norm, or a loss spike, roll back and go on."""

    enabled: bool = True
    spike_factor: float = Field(3.0, gt=1)          # a logged loss above factor x moving average
    window: int = Field(20, ge=2)                   # logged losses averaged; no spike check before
    patience: int = Field(10, ge=1)                 # spiking logged steps in a row that trip it
    lr_factor: float = Field(0.5, gt=0, lt=1)       # learning rate multiplier per rollback
    max_rollbacks: int = Field(3, ge=0)             # then the stage stops with the events listed


# Profiles that start several processes, so they can span machines; cpu and gpu start one.
MULTI_NODE_PROFILES = ("cpu_ddp", "multi_gpu", "deepspeed_zero2")


class NodesParams(Strict):
    """launch: multi_node. torchrun's static rendezvous: every machine names rank 0's address, and
    the rank is this machine's own (c10d would assign ranks in joining order, so which machine
    writes the outputs would be chance)."""

    profile: Literal["cpu", "cpu_ddp", "gpu", "multi_gpu", "deepspeed_zero2"] = "deepspeed_zero2"
    count: int = Field(2, ge=2)                     # machines
    rank: int = Field(0, ge=0)                      # this machine's; rank 0 writes every output
    address: str | None = None                      # rank 0's host name or IP, as the others reach it
    port: int = Field(29500, gt=0, lt=65536)
    timeout_s: int = Field(300, gt=0)               # rendezvous wait, and each collective's

    @field_validator("profile")
    @classmethod
    def _spans_machines(cls, profile: str) -> str:
        if profile not in MULTI_NODE_PROFILES:
            raise ValueError(
                f"{profile!r} starts one process and cannot span machines; use deepspeed_zero2,"
                " multi_gpu (DDP) or cpu_ddp (gloo on CPU)"
            )
        return profile

    @field_validator("rank")
    @classmethod
    def _inside_count(cls, rank: int, info: ValidationInfo) -> int:
        count = info.data.get("count")
        if count is not None and rank >= count:
            raise ValueError(f"{rank} is outside the machines 0..{count - 1} (train.nodes.count: {count})")
        return rank


class TrainParams(Strict):
    seed: int = 0
    lora: LoraParams = LoraParams()
    learning_rate: float = Field(1e-3, gt=0, le=1)
    lr_scheduler: Literal["cosine", "linear", "constant_with_warmup"] = "cosine"
    warmup_fraction: float = Field(0.05, ge=0, lt=1)  # of the optimizer steps, always a fraction
    weight_decay: float = Field(0.0, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    batch_size: int = Field(8, gt=0)                # rows per device per micro-step
    gradient_accumulation_steps: int = Field(1, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(1600, gt=0)       # optimizer steps; null = run `epochs`
    quantization: Literal["none", "4bit", "8bit"] = "none"  # 4bit: QLoRA (NF4, double quant)
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"  # auto: bf16 > fp16 on GPU, fp32 on CPU
    gradient_checkpointing: bool = False            # less activation memory, ~30% more compute
    attn_implementation: Literal["sdpa", "flash_attention_2", "eager"] = "sdpa"
    # Packed rows never attend across samples (position ids restart; flash_attention_2's varlen
    # kernel, or a block mask for sdpa/eager). auto: packed with flash_attention_2 only, since the
    # block mask costs attention over whole rows (slower than grouping by length on CPU).
    packing: bool | Literal["auto"] = "auto"
    packed_length: int = Field(2048, gt=0)          # tokens per packed row; >= the longest sample
    group_by_length: bool = True                    # unpacked: batches of similar length, shuffled
    launch: Literal["cpu", "cpu_ddp", "gpu", "multi_gpu", "deepspeed_zero2", "multi_node"] = "cpu"
    processes: int | None = Field(None, gt=0)       # per machine; null: 2 for cpu_ddp, every GPU
    nodes: NodesParams = NodesParams()              # launch: multi_node only
    resume: Literal["auto", "never"] = "auto"       # auto: from the newest complete checkpoint
    init_from: str | None = None                    # an adapter directory: its weights, fresh optimizer
    guard: GuardParams = GuardParams()
    checkpoint_uri: str | None = Field(None, pattern=r"^s3://[^/]+")  # each checkpoint uploaded here
    logging_steps: int = Field(1, gt=0)
    eval_steps: int = Field(800, gt=0)
    eval_max_samples: int | None = Field(128, gt=0)  # N dev samples, by database and difficulty; null = all
    eval_batch_size: int = Field(16, gt=0)
    save_steps: int = Field(800, gt=0)
    save_total_limit: int = Field(3, ge=2)          # >= 2: a kill during a save leaves a complete one

    @model_validator(mode="after")
    def _consistent(self) -> TrainParams:
        if self.save_steps % self.logging_steps:
            raise ValueError(
                f"save_steps ({self.save_steps}) must be a multiple of logging_steps"
                f" ({self.logging_steps}): the guard vets a checkpoint on the log of its step"
            )
        if self.processes is not None and self.launch in ("cpu", "gpu") and self.processes != 1:
            raise ValueError(f"processes must be 1 (or null) when launch is {self.launch!r}")
        return self


def with_node_rank(params: TrainParams, rank: int, path: Path) -> TrainParams:
    """params with train.nodes.rank set: the one value that differs between machines, given on
    their command line (`--node-rank`) so that every machine keeps the same params.yaml."""
    body = to_dict(params)
    body["nodes"]["rank"] = rank
    try:
        return TrainParams.model_validate(body)
    except ValidationError as e:
        raise ParamsError(format_errors(path, "train", e)) from None
