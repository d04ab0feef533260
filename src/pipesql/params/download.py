"""download section: where the raw examples and the base model come from."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, model_validator

from pipesql.params.base import Strict


def _partial(info: ValidationInfo) -> bool:
    """A recipe being shown, not run: keys the user must still supply are not yet errors."""
    return bool(info.context and info.context.get("partial"))


class SyntheticDataParams(Strict):
    n_databases: int = Field(8, gt=0, le=20_000)   # domains cycle (`concert_singer_2`) past the domains
    n_examples: int = Field(6000, gt=0)             # total question/SQL pairs across databases
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


class SynsqlDataParams(Strict):
    """SynSQL-2.5M's release: data.json, tables.json, databases/<db_id>/<db_id>.sqlite."""

    name: str | None = None                         # hub dataset id; null: the release at `path`
    revision: str | None = None                     # hub: the commit to pin, so reruns are no-ops
    max_examples: int | None = Field(None, gt=0)    # the first N usable entries of data.json


SourceKind = Literal["synthetic", "spider", "bird", "url", "hf", "synsql"]
ReleaseSplit = Literal["train", "dev", "test"]


class SourceParams(Strict):
    """One source: the single-source form of download.data, and each block of its `sources`."""

    source: SourceKind = "synthetic"
    seed: int = 0
    path: str | None = None                         # spider/bird/synsql: the release directory
    synthetic: SyntheticDataParams = SyntheticDataParams()
    url: UrlDataParams = UrlDataParams()
    hf: HfDataParams = HfDataParams()
    synsql: SynsqlDataParams = SynsqlDataParams()

    @model_validator(mode="after")
    def _source_needs(self, info: ValidationInfo) -> SourceParams:
        if _partial(info):
            return self
        if self.source in ("spider", "bird") and not self.path:
            raise ValueError(f"path is required when source is {self.source!r}")
        if self.source == "url" and not (self.url.url and self.url.sha256):
            raise ValueError("url.url and url.sha256 are required when source is 'url'")
        if self.source == "hf" and not (self.hf.name and self.hf.databases_path):
            raise ValueError("hf.name and hf.databases_path are required when source is 'hf'")
        if self.source == "synsql" and not (self.path or self.synsql.name):
            raise ValueError("path (a local release) or synsql.name (a hub dataset) is required"
                             " when source is 'synsql'")
        if self.source == "synsql" and not self.path and not self.synsql.revision:
            raise ValueError("synsql.revision is required for a hub dataset (pin a commit hash,"
                             " so a rerun fetches the same release)")
        return self


class SourceBlock(SourceParams):
    """One of several sources; its `name` namespaces its db_ids and ids (`spider/concert_singer`)."""

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # default: `source`
    splits: tuple[ReleaseSplit, ...] | None = None  # the release splits kept; null = all

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: object) -> object:
        """An unknown key names the block's source, not only its index in the list."""
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(cls.model_fields))
            if unknown:
                label = data.get("name") or data.get("source") or "synthetic"
                raise ValueError(f"source {label!r}: unknown key {', '.join(map(repr, unknown))}"
                                 f" (a source block takes: {', '.join(cls.model_fields)})")
        return data

    @property
    def namespace(self) -> str:
        return self.name or self.source


class DataParams(SourceParams):
    """One source (the keys of SourceParams), or several in `sources`, combined in one data/raw."""

    sources: tuple[SourceBlock, ...] = ()

    @model_validator(mode="after")
    def _one_form(self) -> DataParams:
        """With `sources`, the single-source keys must keep their defaults: a path set beside
        the list would otherwise be silently ignored."""
        if not self.sources:
            return self
        changed = [
            key for key, field in SourceParams.model_fields.items()
            if getattr(self, key) != field.get_default(call_default_factory=True)
        ]
        if changed:
            raise ValueError(
                f"{', '.join(changed)}: not used when sources is set; move them into a source block"
                " (sources: [{source: spider, path: /data/spider}, {source: bird, path: ...}])"
            )
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
    def _source_needs(self, info: ValidationInfo) -> ModelParams:
        if _partial(info):
            return self
        if self.source == "hub" and not self.revision:
            raise ValueError(
                "revision is required when source is 'hub' (pin a commit hash, so a rerun fetches"
                " the same weights); get it with: python -c \"from huggingface_hub import"
                f" model_info; print(model_info('{self.name}').sha)\""
            )
        if self.source == "local" and not self.path:
            raise ValueError("path is required when source is 'local'")
        return self


class DownloadParams(Strict):
    data: DataParams = DataParams()
    model: ModelParams = ModelParams()
