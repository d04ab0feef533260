"""fetch_data with several sources: one data/raw, db_ids and ids namespaced, splits kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipesql.io import DataError
from pipesql.params.base import ParamsError, load_section
from pipesql.params.download import DataParams, DownloadParams
from pipesql.params.tokenize import SplitParams
from pipesql.samples.splits import Pair, assign_splits
from pipesql.sources import fetch_data
from pipesql.sources.raw import database_ids, database_path, read_examples

SYNTHETIC = {"source": "synthetic", "synthetic": {"n_databases": 3, "n_examples": 30, "rows_per_table": 5}}


def two_sources(spider: Path, **spider_block: object) -> DataParams:
    return DataParams.model_validate({"sources": [SYNTHETIC, {"source": "spider", "path": str(spider),
                                                              **spider_block}]})


def test_two_sources_write_namespaced_databases_and_split_by_source(tmp_path: Path, spider_release) -> None:
    params = two_sources(spider_release(tmp_path / "spider"))
    summary = fetch_data(params, tmp_path / "raw")

    raw = tmp_path / "raw"
    examples = [ex for _, ex in read_examples(raw)]
    assert summary["sources"] == ["synthetic", "spider"]
    assert summary["examples_by_source"] == {"spider": 5, "synthetic": 30}
    assert database_ids(raw) == ["spider/concert", "spider/flights", "spider/pets",
                                 "synthetic/company", "synthetic/concert_singer",
                                 "synthetic/flight_company"]
    assert database_path(raw, "spider/concert") == raw / "database/spider/concert/concert.sqlite"
    assert all(database_path(raw, ex.db_id).is_file() for ex in examples)
    spider = [ex for ex in examples if ex.source == "spider"]
    assert [ex.id for ex in spider][:2] == ["spider/spider-train_spider-00000", "spider/spider-train_spider-00001"]
    assert [ex.split for ex in spider] == ["train", "train", "train", "dev", "test"]

    rows = [{**ex.to_json(), "pipe_sql": "FROM t"} for ex in examples]
    out = assign_splits([Pair(i + 1, r) for i, r in enumerate(rows)], SplitParams(by="source"), raw)
    by = {name: {(p.row["source"], p.row.get("split")) for p in out[name]} for name in out}
    # Spider's own dev and test; a release without splits (synthetic) is all train
    assert by == {"train": {("spider", "train"), ("synthetic", None)}, "dev": {("spider", "dev")},
                  "test": {("spider", "test")}}


def test_a_block_keeps_only_the_splits_it_names(tmp_path: Path, spider_release) -> None:
    summary = fetch_data(two_sources(spider_release(tmp_path / "spider"), splits=["train"]), tmp_path / "raw")
    assert summary["examples_by_source"] == {"spider": 3, "synthetic": 30}


def test_two_blocks_writing_one_database_stop_naming_both(tmp_path: Path, spider_release) -> None:
    spider = str(spider_release(tmp_path / "spider"))
    params = DataParams.model_validate({"sources": [
        {"source": "spider", "path": spider, "splits": ["train"]},
        {"source": "spider", "path": spider, "splits": ["dev"]},
    ]})
    with pytest.raises(DataError) as e:
        fetch_data(params, tmp_path / "raw")
    assert str(e.value) == ("download.data.sources[1] (spider): database 'spider/concert' is also written"
                            " by download.data.sources[0] (spider); give one of the two blocks another `name`")
    assert not (tmp_path / "raw").exists()
    named = DataParams.model_validate({"sources": [
        {"source": "spider", "path": spider, "splits": ["train"]},
        {"source": "spider", "name": "spider_dev", "path": spider, "splits": ["dev"]},
    ]})
    assert fetch_data(named, tmp_path / "raw")["examples_by_source"] == {"spider": 3, "spider_dev": 1}


def test_a_bad_example_in_a_later_source_leaves_no_raw(tmp_path: Path, spider_release) -> None:
    spider = spider_release(tmp_path / "spider")
    (spider / "dev.json").write_text(json.dumps([{"db_id": "concert", "question": "q?", "query": ""}]))
    with pytest.raises(DataError, match=r"^download.data.sources\[1\] \(spider\): .*dev.json\[0\]: 'query'"):
        fetch_data(two_sources(spider), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def _params_file(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"download": {"data": data}}))
    return path


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sources": [SYNTHETIC, {"source": "bird", "pth": "/data/bird"}]},
         ("download.data.sources.1: source 'bird': unknown key 'pth' (a source block takes: source,"
          " seed, path, synthetic, url, hf, synsql, name, splits)")),
        ({"sources": [{"source": "spider", "name": "a/b", "path": "/x"}]},
         "download.data.sources.0.name: String should match pattern"),
        ({"source": "spider", "path": "/data/spider", "sources": [SYNTHETIC]},
         ("download.data: source, path: not used when sources is set; move them into a source block"
          " (sources: [{source: spider, path: /data/spider}, {source: bird, path: ...}])")),
        ({"sources": [{"source": "bird"}]},
         "download.data.sources.0: path is required when source is 'bird'"),
    ],
)
def test_bad_source_blocks_name_the_source_and_the_key(tmp_path: Path, data: dict, message: str) -> None:
    path = _params_file(tmp_path, data)
    with pytest.raises(ParamsError) as e:
        load_section("download", DownloadParams, path)
    assert f"{path}: {message}" in str(e.value)
