"""`pipesql predict` end to end on a freshly trained tiny model: query, lowering, rows.

The model (tests/evaluation/tinyrun.py) is trained until it answers the tiny project's questions,
so the printed query and rows are known; with --adapter, with a merged model, and as a command.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from evaluation.tinyrun import DATABASES, TinyProject, one_thread
from pipesql.cli import main
from pipesql.evaluation.generate import HFGenerator
from pipesql.evaluation.run import evaluate
from pipesql.params.eval import EvalParams
from pipesql.prompts.contract import read_contract
from pipesql.merge import merge_adapter
from pipesql.params.merge import MergeParams
from pipesql.sources.raw import database_path

REPO_ROOT = Path(__file__).resolve().parents[1]
ANSWER = """-- pipe SQL
FROM singer
|> WHERE country = 'France'
|> SELECT name
-- SQLite
WITH __tmp1 AS (SELECT name FROM singer WHERE country = 'France') SELECT * FROM __tmp1
-- result
name
Anna
Chloe
(2 rows)
"""
QUESTION = "What are the names of singers from France?"


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture
def adapter(trained_lora: Path) -> Path:
    return trained_lora


def _predict(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main(["predict", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_predict_with_the_adapter(project: TinyProject, adapter: Path, capsys) -> None:
    db = database_path(project.raw, "concert")
    code, out, _ = _predict(capsys, "--model", project.base, "--adapter", adapter, "--db", db, QUESTION)
    assert (code, out) == (0, ANSWER)
    # without --model, the base is the one the adapter was trained on
    code, out, _ = _predict(capsys, "--adapter", adapter, "--db", db, QUESTION)
    assert (code, out) == (0, ANSWER)


@pytest.mark.slow
def test_predict_with_the_merged_model(project: TinyProject, adapter: Path, tmp_path: Path) -> None:
    merge_adapter(project.base, adapter, project.samples, tmp_path / "merged", MergeParams())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # see tinyrun.one_thread
    proc = subprocess.run(
        [sys.executable, "-m", "pipesql.cli", "predict", "--model", str(tmp_path / "merged"),
         "--db", str(database_path(project.raw, "concert")), "--rows", "1", QUESTION],
        capture_output=True, text=True, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == ANSWER.replace("Chloe\n(2 rows)", "(2 rows, first 1 shown)")


@pytest.mark.slow
def test_a_query_that_fails_on_the_database(project: TinyProject, adapter: Path, tmp_path: Path,
                                            capsys) -> None:
    """The concert database with its country column collated by a function only its writer had:
    the same schema text, so the same answer, and a query SQLite cannot run: exit 1, its reason."""
    db = tmp_path / "concert.sqlite"
    with sqlite3.connect(db) as conn:
        conn.create_collation("custom", lambda a, b: (a > b) - (a < b))
        conn.executescript(DATABASES["concert"].replace("country TEXT", "country TEXT COLLATE custom"))
    conn.close()
    code, out, _ = _predict(capsys, "--adapter", adapter, "--db", db, QUESTION)
    assert code == 1
    assert out == ANSWER.split("-- result")[0] + "-- execution error: no such collation sequence: custom\n"


def test_predict_needs_a_model_and_a_database(project: TinyProject, tmp_path: Path, capsys) -> None:
    code, out, err = _predict(capsys, "--db", database_path(project.raw, "zoo"), "How many?")
    assert (code, out) == (2, "")
    assert "error: give --model (a merged model or a base), --adapter, or both" in err
    code, _, err = _predict(capsys, "--model", project.base, "--db", tmp_path / "none.sqlite", "How many?")
    assert code == 2 and f"error: {tmp_path / 'none.sqlite'}: no such database file" in err
    code, _, err = _predict(capsys, "--adapter", tmp_path, "--db", database_path(project.raw, "zoo"), "How?")
    assert code == 2 and "adapter_config.json not found; run 'dvc repro train' first" in err


@pytest.mark.slow
def test_a_merged_model_copied_anywhere_answers_as_eval_scored_it(
    project: TinyProject, adapter: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """From a directory holding only the merged model and a database (no params.yaml, no repo),
    predict builds exactly the token ids eval built for each test question and prints eval's query."""
    merge_adapter(project.base, adapter, project.samples, tmp_path / "merged", MergeParams())
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "merged", elsewhere / "model")
    prompts: dict[str, list[list[int]]] = {}  # question -> the token ids of each generation step
    encode = HFGenerator._encode

    def recording(self: HFGenerator, messages: list[dict]) -> tuple[list[int], int]:
        ids, cached = encode(self, messages)
        question = messages[-1]["content"].split("\n")[0].removeprefix("Question: ")
        prompts.setdefault(question, []).append(ids)
        return ids, cached

    monkeypatch.setattr(HFGenerator, "_encode", recording)
    result = evaluate(EvalParams(), read_contract(adapter).tokenize_params(), project.base, adapter,
                      project.samples, project.raw)
    by_eval = dict(prompts)
    monkeypatch.chdir(elsewhere)
    for row in result.predictions:
        shutil.copy(database_path(project.raw, row["db_id"]), elsewhere / "db.sqlite")
        prompts.clear()
        code, out, err = _predict(capsys, "--model", "model", "--db", "db.sqlite", row["question"])
        assert code == 0, err
        assert prompts[row["question"]] == by_eval[row["question"]]
        assert out.startswith(f"-- pipe SQL\n{row['prediction']}\n-- SQLite\n")


def test_predict_names_a_model_without_its_prompt_contract(project: TinyProject, capsys) -> None:
    code, _, err = _predict(capsys, "--model", project.base, "--db", database_path(project.raw, "zoo"), "How many?")
    assert code == 2
    assert f"error: {project.base}: no prompt.json, so how its prompts were built is unknown" in err
