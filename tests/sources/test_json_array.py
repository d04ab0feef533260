"""iter_json_array: the items of a top-level array, read chunk by chunk, with file:line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipesql.io import DataError
from pipesql.sources.json_array import iter_json_array

ITEMS = [{"id": i, "text": "é\n" * (i % 7), "n": [1.5, -2, None, True]} for i in range(300)]
ITEMS += [1234567890, "a string", [], {}]


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 1 << 20])
def test_every_item_whatever_the_chunk(tmp_path: Path, chunk: int) -> None:
    """Items, numbers included, cut at any chunk boundary decode whole."""
    path = tmp_path / "data.json"
    path.write_text(json.dumps(ITEMS, indent=2, ensure_ascii=False), encoding="utf-8")
    assert list(iter_json_array(path, chunk)) == ITEMS


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1}', "data.json: expected a JSON list at the top level, got an object"),
        ("", "data.json: expected a JSON list at the top level, got an empty file"),
        ("7", "data.json: expected a JSON list at the top level, got a scalar"),
        ('[1,\n2,\n{"a": }]', "data.json:3: not valid JSON: Expecting value"),
        ("[1,\n2", "data.json:2: the file ends inside the array"),
        ("[1 2]", "data.json:1: expected ',' or ']' after an item"),
        ("[1]\nx", "data.json:2: text after the closing ']'"),
    ],
)
def test_bad_json_names_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "data.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as e:
        list(iter_json_array(path, 2))
    assert str(e.value) == f"{tmp_path}/{message}"


def test_empty_array(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text(" [ ]\n")
    assert list(iter_json_array(path)) == []
