"""Atomic outputs: a failure leaves the previous output (or nothing), never a partial one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipesql.io import DataError, atomic_path, read_jsonl, write_jsonl, write_metrics


def test_failed_write_keeps_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    write_jsonl(target, [{"a": 1}])

    def rows():
        yield {"a": 2}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_jsonl(target, rows())
    assert [obj for _, obj in read_jsonl(target)] == [{"a": 1}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]  # no temp left behind


def test_directory_is_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / "raw"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "old.txt").write_text("old")
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    with pytest.raises(ValueError), atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "partial.txt").write_text("x")
        raise ValueError("stage failed")
    assert [p.name for p in target.iterdir()] == ["new.txt"]


def test_read_jsonl_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n\n{"a": \n')
    with pytest.raises(DataError, match=r"x.jsonl:3: not valid JSON"):
        list(read_jsonl(path))
    path.write_text('{"a": 1}\n[1]\n')
    with pytest.raises(DataError, match=r"x.jsonl:2: expected a JSON object"):
        list(read_jsonl(path))


def test_metrics_are_sorted_json(tmp_path: Path) -> None:
    path = write_metrics("download", {"b": 1, "a": {"z": 2, "y": 3}}, tmp_path)
    assert path == tmp_path / "download.json"
    text = path.read_text()
    assert json.loads(text) == {"a": {"y": 3, "z": 2}, "b": 1}
    assert text.index('"a"') < text.index('"b"')
