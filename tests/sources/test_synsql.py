"""read_synsql on a release the test writes in SynSQL-2.5M's layout, broken entries included."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipesql.io import DataError
from pipesql.params.download import DataParams, SynsqlDataParams
from pipesql.sources import fetch_data, synsql
from pipesql.sources.raw import read_examples
from pipesql.sources.synsql import (
    BAD_DB_ID,
    EMPTY_FIELD,
    NO_DB_FILE,
    UNKNOWN_DB,
    read_synsql,
)


def test_reads_the_release_keeping_cot_evidence_and_complexity(tmp_path: Path, synsql_release) -> None:
    read = read_synsql(SynsqlDataParams(), str(synsql_release(tmp_path / "rel")), tmp_path)
    assert sorted(read.databases) == ["farm", "zoo"]
    examples = list(read.examples)
    assert [e.id for e in examples] == ["synsql-0000000", "synsql-0000003", "synsql-0000006"]
    zoo = examples[0]
    assert (zoo.db_id, zoo.question, zoo.gold_sql, zoo.split) == (
        "zoo", "How many animals?", "SELECT count(*) FROM animal", "train")
    assert zoo.reasoning == "Think about How many animals?"
    assert (zoo.evidence, zoo.difficulty) == ("animals are rows of animal", "Moderate")
    assert examples[1].reasoning is None and examples[1].evidence is None
    assert examples[2].difficulty == "Highly Complex"
    assert read.skipped == {BAD_DB_ID: 1, NO_DB_FILE: 1, UNKNOWN_DB: 3, EMPTY_FIELD: 1}


def test_max_examples_counts_usable_entries(tmp_path: Path, synsql_release) -> None:
    root = synsql_release(tmp_path / "rel")
    read = read_synsql(SynsqlDataParams(max_examples=2), str(root), tmp_path)
    assert [e.id for e in read.examples] == ["synsql-0000000", "synsql-0000003"]


def test_download_counts_what_it_skipped(tmp_path: Path, synsql_release) -> None:
    root = synsql_release(tmp_path / "rel")
    summary = fetch_data(DataParams(source="synsql", path=str(root)), tmp_path / "raw")
    assert summary["examples"] == 3 and summary["databases"] == 2
    assert summary["skipped"] == {"synsql": {BAD_DB_ID: 1, EMPTY_FIELD: 1, NO_DB_FILE: 1, UNKNOWN_DB: 3}}
    assert [ex.reasoning is not None for _, ex in read_examples(tmp_path / "raw")] == [True, False, True]


def test_data_json_not_a_list_names_the_source_and_file(tmp_path: Path, synsql_release) -> None:
    root = synsql_release(tmp_path / "rel")
    (root / "data.json").write_text(json.dumps({"data": json.loads((root / "data.json").read_text())}))
    params = DataParams.model_validate({"sources": [{"source": "synthetic",
                                                     "synthetic": {"n_databases": 2, "n_examples": 10}},
                                                    {"source": "synsql", "path": str(root)}]})
    with pytest.raises(DataError) as e:
        fetch_data(params, tmp_path / "raw")
    assert str(e.value) == (f"download.data.sources[1] (synsql): {root}/data.json: expected a JSON"
                            " list at the top level, got an object")
    assert not (tmp_path / "raw").exists() and list(tmp_path.iterdir()) == [root]


def test_a_missing_file_names_the_layout(tmp_path: Path, synsql_release) -> None:
    root = synsql_release(tmp_path / "rel")
    (root / "tables.json").unlink()
    with pytest.raises(DataError, match=r"rel/tables.json: file not found; expected SynSQL's layout"):
        read_synsql(SynsqlDataParams(), str(root), tmp_path)


def test_a_hub_release_is_fetched_at_the_pinned_revision(tmp_path: Path, monkeypatch, synsql_release) -> None:
    """Offline: the hub download returns the directory it would have filled."""
    root = synsql_release(tmp_path / "snapshot")
    calls = []

    def snapshot_download(repo_id: str, **kwargs: object) -> str:
        calls.append((repo_id, kwargs))
        return str(root)

    monkeypatch.setattr("huggingface_hub.snapshot_download", snapshot_download)
    params = SynsqlDataParams(name="seeklhy/SynSQL-2.5M", revision="0123abcd")
    read = synsql.read_synsql(params, None, tmp_path / "cache")
    assert len(list(read.examples)) == 3
    assert calls == [("seeklhy/SynSQL-2.5M", {"repo_type": "dataset", "revision": "0123abcd",
                                              "cache_dir": str(tmp_path / "cache")})]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"source": "synsql"}, "path (a local release) or synsql.name (a hub dataset) is required"),
        ({"source": "synsql", "synsql": {"name": "seeklhy/SynSQL-2.5M"}}, "synsql.revision is required"),
    ],
)
def test_params_say_what_a_synsql_source_needs(data: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        DataParams.model_validate(data)
    DataParams.model_validate(data, context={"partial": True})  # `recipe show` lets it through
