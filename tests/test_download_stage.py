"""The download stage as DVC runs it: outputs, metrics, no-op reruns, and which item reruns."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from project import REPO_ROOT, copy_project, dvc

TINY = {
    "download": {
        "data": {"synthetic": {"n_databases": 2, "n_examples": 40, "rows_per_table": 10}},
        "model": {"scratch": {"vocab_size": 400, "hidden_size": 32, "intermediate_size": 64,
                              "num_hidden_layers": 1, "num_attention_heads": 2,
                              "num_key_value_heads": 1}},
    }
}


def _ran(stdout: str) -> set[str]:
    return {line.split("'")[1] for line in stdout.splitlines() if line.startswith("Running stage")}


@pytest.mark.slow
def test_download_outputs_and_reruns(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "proj", TINY)
    first = dvc(["repro", "download"], project)
    assert _ran(first.stdout) == {"download@data", "download@model"}

    raw = project / "data" / "raw"
    rows = [json.loads(line) for line in (raw / "examples.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and {"id", "db_id", "question", "gold_sql", "difficulty"} <= set(rows[0])
    for db_id in {r["db_id"] for r in rows}:
        with sqlite3.connect(raw / "database" / db_id / f"{db_id}.sqlite") as con:
            assert con.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0] > 0
    metrics = json.loads((project / "metrics" / "download.json").read_text())
    assert metrics["databases"] == 2 and metrics["examples"] == 40
    assert sum(metrics["examples_by_difficulty"].values()) == 40
    assert (project / "models" / "base" / "config.json").exists()

    assert _ran(dvc(["repro", "download"], project).stdout) == set()  # a second repro is a no-op

    _set(project, ["download", "model", "scratch", "seed"], 7)
    assert _ran(dvc(["repro", "download"], project).stdout) == {"download@model"}

    _set(project, ["download", "data", "seed"], 3)  # the scratch tokenizer reads the data
    assert _ran(dvc(["repro", "download"], project).stdout) == {"download@data", "download@model"}


def test_bad_params_stop_the_stage_before_any_work(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("download:\n  data:\n    synthetic:\n      n_examples: 0\n")
    proc = subprocess.run(
        [sys.executable, "-m", "stages.download", "data",
         "--out", str(tmp_path / "raw"), "--params", str(params)],
        capture_output=True, text=True, cwd=REPO_ROOT,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"error: {params}: download.data.synthetic.n_examples: must be > 0, got 0"
    )
    assert not (tmp_path / "raw").exists()


def _set(project: Path, keys: list[str], value: object) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    node = params
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))
