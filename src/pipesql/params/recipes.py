"""Recipes: named params overrides in params.yaml's own shape, under configs/recipes/<name>.yaml.

A recipe holds only the keys it changes; resolving it lays those over every section's defaults
(which params.yaml states in full, so the `offline` recipe resolves to params.yaml itself) and
validates the result with the section models, so a misspelt key names the recipe file and the
key. `dvc exp run` stays the engine: `pipesql recipe run` turns the overrides into `-S` flags.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pipesql.params.base import ParamsError, Strict, format_errors
from pipesql.params.download import DownloadParams
from pipesql.params.eval import EvalParams
from pipesql.params.golden_pairs import GoldenPairsParams
from pipesql.params.merge import MergeParams
from pipesql.params.tokenize import TokenizeParams
from pipesql.params.train import TrainParams

RECIPES_DIR = Path("configs/recipes")
# A string the override grammar reads as itself when left unquoted.
_BARE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
# Every section of params.yaml, in its order.
SECTIONS: dict[str, type[Strict]] = {
    "download": DownloadParams,
    "golden_pairs": GoldenPairsParams,
    "tokenize": TokenizeParams,
    "train": TrainParams,
    "eval": EvalParams,
    "merge": MergeParams,
}


def recipe_names(recipes_dir: Path = RECIPES_DIR) -> list[str]:
    return sorted(p.stem for p in Path(recipes_dir).glob("*.yaml"))


def recipe_path(name: str, recipes_dir: Path = RECIPES_DIR) -> Path:
    """The recipe's file; an unknown name is an error listing the recipes there are."""
    path = Path(recipes_dir) / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(recipe_names(recipes_dir)) or "none"
        raise ParamsError(f"no recipe {name!r} in {recipes_dir}/ (recipes: {known})")
    return path


def read_overrides(path: Path) -> dict[str, Any]:
    """A recipe file's overrides; raises ParamsError naming the file."""
    try:
        body = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None
    body = body or {}
    if not isinstance(body, dict):
        raise ParamsError(f"{path}: expected a mapping of params sections at the top level")
    return body


def resolve(overrides: Mapping[str, Any], source: Path | str, partial: bool = False) -> dict[str, Strict]:
    """Every section with `overrides` laid over its defaults, validated; errors name `source`.

    `partial` lets through what a user must still supply on the command line (a hub model's
    revision, a data path), so a recipe can be shown before it is complete.
    """
    unknown = sorted(set(overrides) - set(SECTIONS))
    if unknown:
        raise ParamsError(
            "\n".join(f"{source}: {key}: unknown params section (sections: {', '.join(SECTIONS)})"
                      for key in unknown)
        )
    resolved: dict[str, Strict] = {}
    errors = []
    for section, model in SECTIONS.items():
        body = overrides.get(section) or {}
        if not isinstance(body, dict):
            errors.append(f"{source}: {section}: expected a mapping, got {body!r}")
            continue
        try:
            resolved[section] = model.model_validate(
                _merged(_dump(model()), body), context={"partial": partial}
            )
        except ValidationError as e:
            errors.append(format_errors(Path(source), section, e))
    if errors:
        raise ParamsError("\n".join(errors))
    return resolved


def with_sets(overrides: Mapping[str, Any], sets: list[str]) -> dict[str, Any]:
    """`overrides` with `-S key.path=value` assignments on top (values read as YAML, as DVC does).

    A number indexes a list the overrides hold (`download.data.sources.0.path=/data/spider`)."""
    merged: dict[str, Any] = json.loads(json.dumps(overrides))  # a deep copy of plain data
    for assignment in sets:
        key, sep, raw = assignment.partition("=")
        if not sep or not key:
            raise ParamsError(f"-S {assignment!r}: expected key.path=value")
        *parents, leaf = key.split(".")
        node: Any = merged
        for part in parents:
            node = _child(node, part, assignment)
        if isinstance(node, list):
            node[_index(node, leaf, assignment)] = yaml.safe_load(raw)
        else:
            node[leaf] = yaml.safe_load(raw)
    return merged


def _child(node: Any, part: str, assignment: str) -> Any:
    if isinstance(node, list):
        child = node[_index(node, part, assignment)]
    else:
        child = node.setdefault(part, {})
    if not isinstance(child, (dict, list)):
        raise ParamsError(f"-S {assignment!r}: {part} is not a section")
    return child


def _index(node: list[Any], part: str, assignment: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ParamsError(f"-S {assignment!r}: {part} is not an index of a list of {len(node)}")
    return int(part)


def as_yaml(resolved: Mapping[str, Strict]) -> str:
    """The resolved params as a params.yaml would hold them."""
    return yaml.safe_dump(dump(resolved), sort_keys=False)


def dump(resolved: Mapping[str, Strict]) -> dict[str, Any]:
    """The resolved params as plain data, keyed as params.yaml keys them."""
    return {name: _dump(p) for name, p in resolved.items()}


def set_flags(overrides: Mapping[str, Any]) -> list[str]:
    """`-S key=value` arguments for `dvc exp run`, one per leaf of the overrides.

    Values are written in the override grammar DVC parses (Hydra's): strings quoted, so that a
    revision of digits or a path stays a string; lists and null as such.
    """
    flags = []
    for key, value in _leaves(overrides):
        flags += ["-S", f"{key}={_hydra(value)}"]
    return flags


def _leaves(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{dotted}.")
        else:
            yield dotted, value


def _hydra(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float):  # 1.0e-06, not 1e-06, which YAML 1.1 reads back as a string
        mantissa, e, exponent = repr(value).partition("e")
        return f"{mantissa if '.' in mantissa else mantissa + '.0'}{e}{exponent}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_hydra(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_hydra(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if _BARE.fullmatch(text) and yaml.safe_load(text) == text:
        return text  # reads back as this same string
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dump(params: Strict) -> dict[str, Any]:
    return params.model_dump(mode="json", by_alias=True)


def _merged(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` laid onto `base`, mapping into mapping; a key `base` lacks is kept, so the section
    model reports it as unknown."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out
