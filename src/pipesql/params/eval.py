"""eval section: generation (shared with `pipesql predict`) and how predictions are scored."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from pipesql.params.base import Strict
from pipesql.params.golden_pairs import Engine, check_engines


class GenerationParams(Strict):
    """How queries are generated, by the eval stage and by `pipesql predict` alike."""

    batch_size: int = Field(32, gt=0)               # prompts per forward pass
    max_steps: int = Field(16, gt=0)                # incremental: generate calls per query, END included
    max_new_tokens_step: int = Field(128, gt=0)     # incremental: one operator (reasoning needs more)
    max_new_tokens_full: int = Field(512, gt=0)     # full: the whole answer
    prefix_cache: bool = True                       # compute each schema's KV cache once, reuse it
    do_sample: bool = False                         # false: greedy, or beam search with num_beams > 1
    temperature: float = Field(1.0, gt=0)           # sampling (do_sample, or num_samples > 1) only
    top_p: float = Field(1.0, gt=0, le=1)           # sampling only
    top_k: int = Field(0, ge=0)                     # sampling only; 0 = off
    num_beams: int = Field(1, gt=0)
    seed: int = 0                                   # sampling only
    num_samples: int = Field(1, gt=0)               # eval: > 1 adds self-consistency over N sampled candidates


class AgentParams(Strict):
    """The agent protocol's budgets: the model calls the tools it was trained on, then answers."""

    max_turns: int = Field(10, gt=0)                # replies per question, the answer included
    max_new_tokens_turn: int = Field(128, gt=0)     # one reply: tool calls, or the answer
    rows_shown: int | None = Field(None, gt=0)      # result rows a tool shows; null: tokenize.tool_max_rows, as trained


class EvalParams(Strict):
    protocol: Literal["auto", "incremental", "full", "agent"] = "auto"  # auto: as tokenize.mode (both: incremental)
    max_examples: int | None = Field(100, gt=0)    # a sample of N test pairs, by database; null = all
    sample_seed: int = 0                            # which max_examples pairs are drawn
    print_examples: int = Field(3, ge=0)            # predictions shown in the log
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = "auto"  # auto: bf16 > fp16 on GPU, fp32 on CPU
    generation: GenerationParams = GenerationParams()
    agent: AgentParams = AgentParams()
    teacher_forced_batch_size: int = Field(8, gt=0)
    timeout_s: float = Field(5.0, gt=0)             # per query execution, gold and predicted alike
    max_rows: int = Field(100_000, gt=0)            # a result cut at this size never matches
    float_tol: float = Field(1e-6, ge=0)            # relative tolerance, as golden_pairs compares
    test_suite_path: str | None = None              # <dir>/<db_id>/*.sqlite: Spider's test-suite databases
    engines: tuple[Engine, ...] = ("sqlite",)       # execution accuracy on each (spark: the extra)

    _check_engines = field_validator("engines")(lambda cls, v: check_engines(v))
