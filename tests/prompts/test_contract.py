"""The prompt contract: written by tokenize, carried by models, checked by whoever loads one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipesql.io import DataError
from pipesql.params.base import ParamsError
from pipesql.params.tokenize import TokenizeParams
from pipesql.prompts import TOOLS, messages
from pipesql.prompts.contract import (
    CONTRACT_FILE,
    build_contract,
    check_chat_template,
    check_params,
    copy_contract,
    read_contract,
    write_contract,
)

PARAMS = TokenizeParams.model_validate(
    {"mode": "incremental", "schema": {"format": "ddl", "example_values": 2}, "tool_ratio": 0.1}
)
TEMPLATE = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"


@pytest.fixture
def written(tmp_path: Path) -> Path:
    write_contract(tmp_path / "samples", build_contract(PARAMS, TEMPLATE))
    return tmp_path / "samples"


def test_it_holds_what_shapes_a_prompt_and_round_trips(written: Path) -> None:
    body = json.loads((written / CONTRACT_FILE).read_text())
    assert body["settings"] == {
        "mode": "incremental",
        "reasoning": False,
        "tool_max_rows": 5,
        "schema": {"format": "ddl", "max_tokens": 1024, "example_values": 2, "max_value_chars": 40},
    }
    assert body["wording"]["system_step"] == messages.SYSTEM_STEP and body["tools"] == TOOLS
    contract = read_contract(written)
    prompt_keys = ("mode", "reasoning", "tool_max_rows", "schema_")
    assert {k: getattr(contract.tokenize_params(), k) for k in prompt_keys} == {
        k: getattr(PARAMS, k) for k in prompt_keys
    }


def test_copies_carry_it_into_a_model_directory(written: Path, tmp_path: Path) -> None:
    (tmp_path / "adapter").mkdir()
    copy_contract(written, tmp_path / "adapter")
    assert read_contract(tmp_path / "adapter") == read_contract(written)
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == [CONTRACT_FILE]  # no temporary


def test_a_model_without_one_says_where_it_comes_from(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=rf"{tmp_path}: no {CONTRACT_FILE}, .* tokenize writes it"):
        read_contract(tmp_path)
    with pytest.raises(DataError, match="no such model directory"):
        read_contract(tmp_path / "missing")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("wording", {"system_step": "Write SQL."}, "wording.system_step differs from this pipesql's prompts"),
        ("tools", [], "tools differ from this pipesql's tool definitions"),
        ("version", 99, "contract version 99"),
        ("settings", {"mode": "sideways"}, "not a valid prompt contract"),
    ],
)
def test_a_contract_this_code_cannot_honour_is_an_error(written: Path, field: str, value, message: str) -> None:
    path = written / CONTRACT_FILE
    body = json.loads(path.read_text())
    body[field] = {**body[field], **value} if isinstance(value, dict) and field == "wording" else value
    path.write_text(json.dumps(body))
    with pytest.raises(DataError, match=message):
        read_contract(written)


def test_params_that_contradict_it_name_the_key_and_both_values(written: Path) -> None:
    contract = read_contract(written)
    check_params(contract, PARAMS.model_copy(update={"tool_ratio": 0.5, "num_proc": 3}), "params.yaml")  # no prompt key
    other = TokenizeParams.model_validate({"mode": "full", "schema": {"format": "ddl", "example_values": 0}})
    with pytest.raises(ParamsError) as e:
        check_params(contract, other, "params.yaml")
    assert str(e.value).splitlines()[:2] == [
        "params.yaml: tokenize.mode: 'full', but the model was trained with 'incremental'",
        "params.yaml: tokenize.schema.example_values: 0, but the model was trained with 2",
    ]


def test_another_chat_template_is_an_error(written: Path, tmp_path: Path) -> None:
    contract = read_contract(written)
    check_chat_template(contract, TEMPLATE, tmp_path)
    with pytest.raises(DataError, match="chat template is not the one the model was trained with"):
        check_chat_template(contract, TEMPLATE + " ", tmp_path)
