"""The params loader: validates one section of params.yaml with errors that name the key.

Section models (one module per section) derive from Strict and forbid unknown keys, so a misspelt
knob stops the stage instead of silently doing nothing, and each stage validates only its own
section before it does any work. The caller names the model, so this module knows no section
and never changes when one is added.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

PARAMS_PATH = Path("params.yaml")


class Strict(BaseModel):
    """Base for every params model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


M = TypeVar("M", bound=Strict)


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or invalid; the message names file, key and value."""


def load_section(section: str, model: type[M], path: Path = PARAMS_PATH) -> M:
    """Validate one section of params.yaml with `model` (a stage reads only its own)."""
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
