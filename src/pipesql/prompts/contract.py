"""The prompt contract: every setting that shaped a model's prompts, carried in its directory.

tokenize writes it beside its samples (`data/samples/prompt.json`), train copies it into the
adapter and merge into the merged model, so whoever loads a model (eval, `pipesql predict`, a
server) builds the prompts it was trained on from the model directory alone, never from a
params.yaml that happens to be nearby. It also holds the wording and tools of the code that wrote
it: a model loaded by a pipesql whose prompts have changed since is an error, not a silent drift.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipesql.io import DataError, atomic_path
from pipesql.params.base import ParamsError, Strict
from pipesql.params.tokenize import TokenizeParams
from pipesql.prompts import messages
from pipesql.prompts.tools import TOOLS

CONTRACT_FILE = "prompt.json"
VERSION = 1
# The tokenize keys that shape a prompt or the parsing of an answer; the rest (splits, tool
# ratio, lengths, processes) shape only which samples exist.
PROMPT_KEYS = ("mode", "reasoning", "tool_max_rows", "schema")


class PromptContract(Strict):
    version: int
    settings: dict[str, Any]        # PROMPT_KEYS of the tokenize section, as params.yaml keys them
    wording: dict[str, str]         # the fixed text of every prompt
    tools: list[dict[str, Any]]     # the tool definitions the chat template rendered
    chat_template_sha256: str

    def tokenize_params(self) -> TokenizeParams:
        """The tokenize section these prompts were built with (other keys at their defaults)."""
        return TokenizeParams.model_validate(self.settings)


def build_contract(params: TokenizeParams, chat_template: str) -> PromptContract:
    dumped = params.model_dump(mode="json", by_alias=True)
    return PromptContract(
        version=VERSION,
        settings={key: dumped[key] for key in PROMPT_KEYS},
        wording=_wording(),
        tools=TOOLS,
        chat_template_sha256=template_hash(chat_template),
    )


def write_contract(directory: Path, contract: PromptContract) -> None:
    with atomic_path(Path(directory) / CONTRACT_FILE) as tmp:
        tmp.write_text(json.dumps(contract.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")


def copy_contract(src_dir: Path, dst_dir: Path) -> None:
    """Carry the contract from tokenize's output into a model directory (train, merge)."""
    read_contract(src_dir)  # a missing or corrupt one fails here, naming its directory
    with atomic_path(Path(dst_dir) / CONTRACT_FILE) as tmp:
        shutil.copyfile(Path(src_dir) / CONTRACT_FILE, tmp)


def read_contract(directory: Path) -> PromptContract:
    """The contract in `directory`, checked against this code's prompts; raises DataError."""
    path = Path(directory) / CONTRACT_FILE
    if not Path(directory).is_dir():
        raise DataError(f"{directory}: no such model directory; run 'dvc repro' first")
    if not path.is_file():
        raise DataError(
            f"{directory}: no {CONTRACT_FILE}, so how its prompts were built is unknown. tokenize"
            f" writes it (data/samples/{CONTRACT_FILE}), train copies it into models/adapter and"
            " merge into models/merged: rebuild the model with 'dvc repro'"
        )
    try:
        contract = PromptContract.model_validate_json(path.read_text(encoding="utf-8"))
        contract.tokenize_params()
    except (ValidationError, ValueError) as e:
        raise DataError(f"{path}: not a valid prompt contract: {e}") from None
    if contract.version != VERSION:
        raise DataError(f"{path}: contract version {contract.version}, this pipesql reads {VERSION}")
    for key, text in _wording().items():
        if contract.wording.get(key) != text:
            raise DataError(
                f"{path}: wording.{key} differs from this pipesql's prompts: the model was trained"
                f" on {contract.wording.get(key)!r}, this code writes {text!r}"
            )
    if contract.tools != TOOLS:
        raise DataError(f"{path}: tools differ from this pipesql's tool definitions")
    return contract


def check_params(contract: PromptContract, params: TokenizeParams, source: Path | str) -> None:
    """params.yaml's tokenize keys must say what the model was trained with; else name the key."""
    ours = params.model_dump(mode="json", by_alias=True)
    problems = [
        f"{source}: tokenize.{key}: {ours_value!r}, but the model was trained with {theirs!r}"
        for key, theirs, ours_value in _diff(contract.settings, ours, PROMPT_KEYS)
    ]
    if problems:
        raise ParamsError("\n".join(problems) + "\n(its prompt contract is the model's prompt.json)")


def check_chat_template(contract: PromptContract, chat_template: str | None, where: Path) -> None:
    if template_hash(chat_template or "") != contract.chat_template_sha256:
        raise DataError(
            f"{where}: the tokenizer's chat template is not the one the model was trained with"
            f" (sha256 {template_hash(chat_template or '')[:12]}, contract"
            f" {contract.chat_template_sha256[:12]})"
        )


def template_hash(chat_template: str) -> str:
    return hashlib.sha256(chat_template.encode("utf-8")).hexdigest()


def _wording() -> dict[str, str]:
    return {
        "end_marker": messages.END_MARKER,
        "system_step": messages.SYSTEM_STEP,
        "system_full": messages.SYSTEM_FULL,
        "system_tools": messages.SYSTEM_TOOLS,
        "schema_heading": messages.SCHEMA_HEADING,
    }


def _diff(
    theirs: dict[str, Any], ours: dict[str, Any], keys: tuple[str, ...], prefix: str = ""
) -> Iterator[tuple[str, Any, Any]]:
    """(dotted key, contract value, params value) for every leaf that differs."""
    for key in keys:
        a, b = theirs.get(key), ours.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            yield from _diff(a, b, tuple(sorted(set(a) | set(b))), f"{prefix}{key}.")
        elif a != b:
            yield f"{prefix}{key}", a, b
