"""merge section: the merged weights' dtype and the logit check against base + adapter."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipesql.params.base import Strict


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
    # of the compared positions, the merged model's most likely next token is base + adapter's
    min_argmax_agreement: float = Field(0.98, ge=0, le=1)
