"""A text-to-SQL dataset from the Hugging Face hub, mapped onto Example through `params.columns`.

A hub id and a local dataset directory (jsonl, parquet, ...) both go through
`datasets.load_dataset`, so tests on a local directory run the code path a hub id takes.
SynSQL-2.5M, for instance, maps `reasoning` to its chain-of-thought column `cot`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipesql.io import DataError
from pipesql.params.download import HfDataParams
from pipesql.sources.raw import Example
from pipesql.sources.spider import find_database

REQUIRED_FIELDS = ("question", "gold_sql", "db_id")
FIELDS = tuple(Example.__dataclass_fields__)
# hub split names in Example's vocabulary (train | dev | test)
SPLIT_NAMES = {"validation": "dev"}


def read_hf(
    params: HfDataParams, cache_dir: Path | None = None
) -> tuple[list[Example], dict[str, Path]]:
    """The first `max_examples` rows of `params.split`, with their databases from `databases_path`.

    Without an `id` column, ids are `<dataset name>-<split>-<row>`; without a `split` column,
    every row gets `params.split`. `cache_dir` overrides the datasets cache (~/.cache/huggingface).
    """
    if not (params.name and params.databases_path):
        raise DataError("download.data.hf: name and databases_path are both required")
    for key in params.columns:
        if key not in FIELDS:
            raise DataError(
                f"download.data.hf.columns.{key}: not an Example field; use one of {', '.join(FIELDS)}"
            )
    db_dir = Path(params.databases_path)
    if not db_dir.is_dir():
        raise DataError(f"download.data.hf.databases_path: {db_dir}: not a directory")

    from datasets import load_dataset  # heavy import (pyarrow, fsspec), paid only by this source

    split = f"{params.split}[:{params.max_examples}]" if params.max_examples else params.split
    dataset = load_dataset(
        params.name,
        params.config,
        split=split,
        revision=params.revision,
        cache_dir=str(cache_dir) if cache_dir else None,
    )
    missing = {k: c for k, c in params.columns.items() if c not in dataset.column_names}
    if missing:
        raise DataError(
            "; ".join(
                f"download.data.hf.columns.{key}: column {column!r} not in {params.name}"
                for key, column in missing.items()
            )
            + f" (its columns: {', '.join(dataset.column_names)})"
        )

    default_split = SPLIT_NAMES.get(params.split, params.split)
    required = [*REQUIRED_FIELDS, *(["id"] if "id" in params.columns else [])]
    prefix = Path(params.name.rstrip("/")).name.lower()
    rows = dataset.select_columns(sorted(set(params.columns.values())))
    examples: list[Example] = []
    databases: dict[str, Path] = {}
    for index, row in enumerate(tqdm(rows, desc=prefix, unit="ex")):
        where = f"{params.name}[{params.split}] row {index}"
        fields = {key: _text(row[column], where, key) for key, column in params.columns.items()}
        for key in required:
            if not fields[key]:
                raise DataError(f"{where}: {key!r} (column {params.columns[key]!r}) is empty")
        db_id = fields["db_id"]
        if db_id not in databases:
            databases[db_id] = find_database(db_id, [db_dir], where)
        fields.setdefault("id", f"{prefix}-{default_split}-{index:07d}")
        split_name = fields.get("split") or default_split
        fields["split"] = SPLIT_NAMES.get(split_name, split_name)
        examples.append(Example(**fields))
    return examples, databases


def _text(value: Any, where: str, key: str) -> str | None:
    """Cell value as stripped text; ids or difficulties stored as numbers become strings."""
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        raise DataError(f"{where}: {key!r} must be a scalar, got {type(value).__name__}")
    return str(value).strip()
