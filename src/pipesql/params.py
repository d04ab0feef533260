"""Pydantic models of params.yaml, one per section (= stage), and a loader whose errors name the key.

Models forbid unknown keys, so a misspelt knob stops the stage instead of silently doing nothing,
and each stage validates only its own section before it does any work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PARAMS_PATH = Path("params.yaml")


class Strict(BaseModel):
    """Base for every params model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- download


class SyntheticDataParams(Strict):
    n_databases: int = Field(8, gt=0, le=64)       # domains cycle when more than the templates
    n_examples: int = Field(2000, gt=0)             # total question/SQL pairs across databases
    rows_per_table: int = Field(40, ge=5, le=100_000)


class UrlDataParams(Strict):
    url: str | None = None                          # http(s):// archive, zip or tar(.gz|.bz2|.xz)
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    layout: Literal["spider", "bird"] = "spider"    # how the extracted tree is read
    retries: int = Field(5, ge=0)
    timeout_s: float = Field(60.0, gt=0)


class HfDataParams(Strict):
    name: str | None = None                         # hub dataset id, or a local dataset directory
    revision: str | None = None
    config: str | None = None
    split: str = "train"
    # canonical field -> dataset column; `reasoning` keeps chain-of-thought (SynSQL's `cot`)
    columns: dict[str, str] = Field(
        default_factory=lambda: {"question": "question", "gold_sql": "sql", "db_id": "db_id"}
    )
    databases_path: str | None = None               # directory of <db_id>/<db_id>.sqlite
    max_examples: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _required_columns(self) -> HfDataParams:
        missing = {"question", "gold_sql", "db_id"} - set(self.columns)
        if missing:
            raise ValueError(f"columns must map {sorted(missing)} to dataset columns")
        return self


class DataParams(Strict):
    source: Literal["synthetic", "spider", "bird", "url", "hf"] = "synthetic"
    seed: int = 0
    path: str | None = None                         # spider/bird: the official release directory
    synthetic: SyntheticDataParams = SyntheticDataParams()
    url: UrlDataParams = UrlDataParams()
    hf: HfDataParams = HfDataParams()

    @model_validator(mode="after")
    def _source_needs(self) -> DataParams:
        if self.source in ("spider", "bird") and not self.path:
            raise ValueError(f"path is required when source is {self.source!r}")
        if self.source == "url" and not (self.url.url and self.url.sha256):
            raise ValueError("url.url and url.sha256 are required when source is 'url'")
        if self.source == "hf" and not (self.hf.name and self.hf.databases_path):
            raise ValueError("hf.name and hf.databases_path are required when source is 'hf'")
        return self


class ScratchModelParams(Strict):
    """A small Qwen2 initialised from this config; the defaults train in minutes on 2 CPU cores."""

    vocab_size: int = Field(4096, ge=300)           # BPE trained on the raw examples and schemas
    hidden_size: int = Field(256, gt=0)
    intermediate_size: int = Field(704, gt=0)
    num_hidden_layers: int = Field(4, gt=0)
    num_attention_heads: int = Field(4, gt=0)
    num_key_value_heads: int = Field(2, gt=0)
    max_position_embeddings: int = Field(2048, gt=0)
    rope_theta: float = Field(10000.0, gt=0)
    tie_word_embeddings: bool = True
    seed: int = 0

    @model_validator(mode="after")
    def _heads_divide(self) -> ScratchModelParams:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        return self


class ModelParams(Strict):
    source: Literal["scratch", "hub", "local"] = "scratch"
    name: str = "Qwen/Qwen2.5-Coder-1.5B-Instruct"  # hub repo id
    revision: str | None = None                     # hub: a pinned commit, so reruns are no-ops
    path: str | None = None                         # local: a Hugging Face model directory
    scratch: ScratchModelParams = ScratchModelParams()

    @model_validator(mode="after")
    def _source_needs(self) -> ModelParams:
        if self.source == "hub" and not self.revision:
            raise ValueError("revision is required when source is 'hub' (pin a commit hash)")
        if self.source == "local" and not self.path:
            raise ValueError("path is required when source is 'local'")
        return self


class DownloadParams(Strict):
    data: DataParams = DataParams()
    model: ModelParams = ModelParams()


# ---------------------------------------------------------------- golden_pairs


class GoldenPairsParams(Strict):
    workers: int | None = Field(None, gt=0)         # processes; null = all cores
    timeout_s: float = Field(5.0, gt=0)             # per query execution, gold and pipe alike
    max_rows: int = Field(100_000, gt=0)            # a result cut at this size is not compared
    float_tol: float = Field(1e-6, ge=0)            # relative tolerance when comparing floats


# ---------------------------------------------------------------- tokenize


class SplitRatios(Strict):
    """Shares of the split unit (a database, a question) per split, as fractions summing to 1."""

    train: float = Field(0.8, gt=0, le=1)
    dev: float = Field(0.1, ge=0, lt=1)
    test: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitRatios:
        total = self.train + self.dev + self.test
        if abs(total - 1) > 1e-6:
            raise ValueError(f"train + dev + test must sum to 1, got {total:g}")
        return self


class SplitParams(Strict):
    # database: no test database is seen in training (as Spider and BIRD evaluate);
    # question: identical questions stay together; source: the source's official splits
    by: Literal["database", "question", "source"] = "database"
    ratios: SplitRatios = SplitRatios()
    seed: int = 0                                   # also picks the pairs given tool samples


class SchemaParams(Strict):
    """The schema text of every prompt, at training and at inference alike."""

    max_tokens: int = Field(1024, gt=0)             # past this: example values go, then tables
    example_values: int = Field(2, ge=0)            # distinct values per text column; 0 = none
    max_value_chars: int = Field(40, gt=0)          # longer values are never shown


class TokenizeParams(Strict):
    split: SplitParams = SplitParams()
    mode: Literal["incremental", "full", "both"] = "incremental"
    tool_ratio: float = Field(0.1, ge=0, le=1)      # share of pairs that also get a tool sample
    tool_max_rows: int = Field(5, gt=0)             # result rows a tool call shows the model
    reasoning: bool = False                         # chain-of-thought, where present, before SQL
    max_length: int = Field(2048, gt=0)             # longer samples are dropped, never truncated
    # `schema` is a BaseModel attribute, so the field takes another name and the key its alias
    schema_: SchemaParams = Field(SchemaParams(), alias="schema")
    timeout_s: float = Field(5.0, gt=0)             # per query behind a schema or a tool result
    num_proc: int | None = Field(None, gt=0)        # processes; null = all cores


# ---------------------------------------------------------------- train

# Every attention and MLP projection of Qwen2 / Llama-style decoders.
ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoraParams(Strict):
    """Defaults: the offline scratch model (see params.yaml); a hub model takes r 16, alpha 32."""

    r: int = Field(64, gt=0, le=4096)
    alpha: float = Field(128.0, gt=0)               # updates are scaled by alpha / r
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: tuple[str, ...] = Field(ALL_PROJECTIONS, min_length=1)
    # trained in full and saved inside the adapter (a scratch model's random embeddings)
    modules_to_save: tuple[str, ...] = ("embed_tokens",)


class OptimParams(Strict):
    learning_rate: float = Field(3e-3, gt=0, le=1)
    lr_scheduler: Literal["cosine", "linear", "constant_with_warmup"] = "cosine"
    warmup_fraction: float = Field(0.05, ge=0, lt=1)  # of the optimizer steps, always a fraction
    weight_decay: float = Field(0.0, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    batch_size: int = Field(8, gt=0)                # rows per device per micro-step
    gradient_accumulation_steps: int = Field(1, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(100, gt=0)        # optimizer steps; null = run `epochs`


class GuardParams(Strict):
    """Divergence guard: on a non-finite loss or grad norm, or a loss spike, roll back and go on."""

    enabled: bool = True
    spike_factor: float = Field(3.0, gt=1)          # a logged loss above factor x moving average
    window: int = Field(20, ge=2)                   # logged losses averaged; no spike check before
    lr_factor: float = Field(0.5, gt=0, lt=1)       # learning rate multiplier per rollback
    max_rollbacks: int = Field(3, ge=0)             # then the stage stops with the events listed


class TrainParams(Strict):
    seed: int = 0
    lora: LoraParams = LoraParams()
    optim: OptimParams = OptimParams()
    quantization: Literal["none", "4bit", "8bit"] = "none"  # 4bit: QLoRA (NF4, double quant)
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"  # auto: bf16 > fp16 on GPU, fp32 on CPU
    gradient_checkpointing: bool = False            # less activation memory, ~30% more compute
    attn_implementation: Literal["sdpa", "flash_attention_2", "eager"] = "sdpa"
    # Packed rows never attend across samples (position ids restart; flash_attention_2's varlen
    # kernel, or a block mask for sdpa/eager). auto: packed with flash_attention_2 only, since the
    # block mask costs attention over whole rows (slower than grouping by length on CPU).
    packing: bool | Literal["auto"] = "auto"
    packed_length: int = Field(2048, gt=0)          # tokens per packed row; >= the longest sample
    launch: Literal["cpu", "cpu_ddp", "gpu", "multi_gpu", "deepspeed_zero2"] = "cpu"
    processes: int | None = Field(None, gt=0)       # null: 2 for cpu_ddp, every GPU for multi_gpu
    resume: Literal["auto", "never"] = "auto"       # auto: from the newest complete checkpoint
    init_from: str | None = None                    # an adapter directory: its weights, fresh optimizer
    guard: GuardParams = GuardParams()
    checkpoint_uri: str | None = Field(None, pattern=r"^s3://[^/]+")  # each checkpoint uploaded here
    logging_steps: int = Field(1, gt=0)
    eval_steps: int = Field(50, gt=0)
    eval_max_samples: int | None = Field(128, gt=0)  # the dev split's first N; null = all
    eval_batch_size: int = Field(16, gt=0)
    save_steps: int = Field(25, gt=0)
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


# ---------------------------------------------------------------- eval


class GenerationParams(Strict):
    """How queries are generated, by the eval stage and by `pipesql predict` alike."""

    batch_size: int = Field(32, gt=0)               # prompts per forward pass
    max_steps: int = Field(16, gt=0)                # incremental: generate calls per query, END included
    max_new_tokens_step: int = Field(128, gt=0)     # incremental: one operator (reasoning needs more)
    max_new_tokens_full: int = Field(512, gt=0)     # full: the whole answer
    prefix_cache: bool = True                       # compute each schema's KV cache once, reuse it
    do_sample: bool = False                         # false: greedy, or beam search with num_beams > 1
    temperature: float = Field(1.0, gt=0)           # sampling only
    top_p: float = Field(1.0, gt=0, le=1)           # sampling only
    top_k: int = Field(0, ge=0)                     # sampling only; 0 = off
    num_beams: int = Field(1, gt=0)
    seed: int = 0                                   # sampling only


class EvalParams(Strict):
    protocol: Literal["auto", "incremental", "full"] = "auto"  # auto: as tokenize.mode (both: incremental)
    max_examples: int | None = Field(None, gt=0)    # the first N test pairs; null = all
    print_examples: int = Field(3, ge=0)            # predictions shown in the log
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = "auto"  # auto: bf16 > fp16 on GPU, fp32 on CPU
    generation: GenerationParams = GenerationParams()
    teacher_forced_batch_size: int = Field(8, gt=0)
    timeout_s: float = Field(5.0, gt=0)             # per query execution, gold and predicted alike
    max_rows: int = Field(100_000, gt=0)            # a result cut at this size never matches
    float_tol: float = Field(1e-6, ge=0)            # relative tolerance, as golden_pairs compares


# ---------------------------------------------------------------- merge


class MergeTolerance(Strict):
    """The largest logit difference allowed between models/merged and base + adapter, per dtype.

    It covers the cast to merge.dtype as well as the merge: what a user of the merged model gets.
    Measured on the default scratch model: fp32 2e-6, fp16 3e-3, bf16 2e-2; a deep hub model's
    larger logits round further, while a lost or corrupt adapter moves logits by whole units.
    """

    fp32: float = Field(1e-3, gt=0)
    fp16: float = Field(0.25, gt=0)
    bf16: float = Field(1.0, gt=0)


class MergeParams(Strict):
    dtype: Literal["bf16", "fp16", "fp32"] = "fp32"  # of the saved weights; the merge runs in fp32
    check_prompts: int = Field(4, gt=0)             # test samples the logits are compared on
    check_max_tokens: int = Field(512, gt=0)        # each cut to its first N tokens
    tolerance: MergeTolerance = MergeTolerance()


# ---------------------------------------------------------------- loading

SECTIONS: dict[str, type[Strict]] = {
    "download": DownloadParams,
    "golden_pairs": GoldenPairsParams,
    "tokenize": TokenizeParams,
    "train": TrainParams,
    "eval": EvalParams,
    "merge": MergeParams,
}

M = TypeVar("M", bound=Strict)


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or invalid; the message names file, key and value."""


def load_section(section: str, path: Path = PARAMS_PATH, model: type[M] | None = None) -> M:
    """Validate one section of params.yaml (a stage reads only its own)."""
    model = model or SECTIONS[section]  # type: ignore[assignment]
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    body = raw.get(section, {})
    if body is None:
        body = {}
    try:
        return model.model_validate(body)
    except ValidationError as e:
        raise ParamsError(format_errors(path, section, e)) from None


def format_errors(path: Path, section: str, error: ValidationError) -> str:
    """`params.yaml: train.learning_rate: must be > 0, got -1.0`, one line per problem."""
    lines = []
    for err in error.errors():
        key = ".".join([section, *(str(p) for p in err["loc"])])
        msg = _MESSAGES.get(err["type"], err["msg"])
        ctx = err.get("ctx") or {}
        for name in ("gt", "ge", "lt", "le"):
            if name in ctx:
                msg = f"must be {_OPS[name]} {ctx[name]}"
        got = err.get("input")
        suffix = "" if err["type"] == "missing" or isinstance(got, dict) else f", got {got!r}"
        if err["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
            suffix = ""
        lines.append(f"{path}: {key}: {msg}{suffix}")
    return "\n".join(lines)


_OPS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_MESSAGES = {"extra_forbidden": "unknown key", "missing": "required key is missing"}


def to_dict(params: BaseModel) -> dict[str, Any]:
    """Resolved params as plain data, for saving beside outputs (as nanoGPT saves its config)."""
    return params.model_dump(mode="json")
