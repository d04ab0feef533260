"""tokenize section: splits, sample kinds and the schema text of every prompt (eval reads it too)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipesql.params.base import Strict


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
    by: Literal["database", "question", "source"] = "question"
    ratios: SplitRatios = SplitRatios()
    seed: int = 0                                   # also picks the pairs given tool samples


class SchemaParams(Strict):
    """The schema text of every prompt, at training and at inference alike."""

    # CREATE TABLE statements | t(a PK, b -> u.id) | none: no schema, for a model that only
    # ever sees the databases it trained on and learns their schemas from the questions
    format: Literal["ddl", "compact", "none"] = "none"
    max_tokens: int = Field(1024, gt=0)             # past this: example values go, then tables
    example_values: int = Field(0, ge=0)            # distinct values per text column; 0 = none
    max_value_chars: int = Field(40, gt=0)          # longer values are never shown


class TokenizeParams(Strict):
    split: SplitParams = SplitParams()
    mode: Literal["incremental", "full", "both"] = "full"
    tool_ratio: float = Field(0.03, ge=0, le=1)      # share of pairs that also get a tool sample
    tool_max_rows: int = Field(5, gt=0)             # result rows a tool call shows the model
    reasoning: bool = False                         # chain-of-thought, where present, before SQL
    max_length: int = Field(2048, gt=0)             # longer samples are dropped, never truncated
    # `schema` is a BaseModel attribute, so the field takes another name and the key its alias
    schema_: SchemaParams = Field(SchemaParams(), alias="schema")
    timeout_s: float = Field(5.0, gt=0)             # per query behind a schema or a tool result
    num_proc: int | None = Field(None, gt=0)        # processes; null = all cores
