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
import yaml

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
        assert prompts[row["question"]] == by_eval[row["question"]]
        assert out.startswith(f"-- pipe SQL\n{row['prediction']}\n")
        # the tiny model's query may not parse or run: predict then says so and exits 1, as eval
        # scored it; one that runs prints its lowering
        assert (code == 0) == (row["status"] not in ("parse", "lowering", "execution")), (row["status"], out)
        assert (code != 0) or out.startswith(f"-- pipe SQL\n{row['prediction']}\n-- SQLite\n")


def test_predict_names_a_model_without_its_prompt_contract(project: TinyProject, capsys) -> None:
    code, _, err = _predict(capsys, "--model", project.base, "--db", database_path(project.raw, "zoo"), "How many?")
    assert code == 2
    assert f"error: {project.base}: no prompt.json, so how its prompts were built is unknown" in err


AGENT_SCRIPT = [
    '<tool_call>\n{"name": "list_tables", "arguments": {}}\n</tool_call>',
    '<tool_call>\n{"name": "describe_table", "arguments": {"table": "singer"}}\n</tool_call>',
    ('<tool_call>\n{"name": "execute_pipe_sql", "arguments": {"query": "FROM singer |> WHERE country = \'France\''
     ' |> SELECT name"}}\n</tool_call>'),
    "```sql\nFROM singer\n|> WHERE country = 'France'\n|> SELECT name\n```",
]


def test_predict_agent_prints_each_call_then_the_answer(
    project: TinyProject, random_lora: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A scripted model (the tiny one is not trained to call tools): the calls, then the answer's
    pipe SQL, its lowering and its rows, as without --agent."""
    seen: list[list[dict]] = []

    def scripted(self: HFGenerator, prompts: list[list[dict]], max_new_tokens: int) -> list[str]:
        assert self.tools is not None and max_new_tokens == EvalParams().agent.max_new_tokens_turn
        seen.extend(prompts)
        return [AGENT_SCRIPT[sum(m["role"] == "assistant" for m in p)] for p in prompts]

    monkeypatch.setattr(HFGenerator, "__call__", scripted)
    db = database_path(project.raw, "concert")
    code, out, err = _predict(capsys, "--agent", "--adapter", random_lora, "--db", db, QUESTION)
    assert code == 0, err
    trace, answer = out.split("-- answer from ")
    assert trace == (
        "-- turn 1: list_tables {}\n   singer\n   concert\n"
        '-- turn 2: describe_table {"table": "singer"}\n'
        "   singer(singer_id PK, name, country, age)\n"
        "-- turn 3: execute_pipe_sql {\"query\": \"FROM singer |> WHERE country = 'France' |> SELECT name\"}\n"
        "   name\n   Anna\n   Chloe\n   (2 rows)\n"
    )
    assert answer == "its last successful execute_pipe_sql (4 turns)\n" + ANSWER.replace(
        "FROM singer\n|> WHERE country = 'France'\n|> SELECT name", "FROM singer |> WHERE country = 'France' |> SELECT name"
    )
    assert len(seen) == 4 and seen[0][1]["content"] == f"Question: {QUESTION}"


def test_predict_agent_with_a_real_model_runs_to_an_answer(project: TinyProject, random_lora: Path, capsys) -> None:
    """Whatever a model untrained on tools writes, predict --agent ends, saying where its answer came from."""
    params = {"eval": {"agent": {"max_turns": 2, "max_new_tokens_turn": 12}}}
    (project.root / "agent_params.yaml").write_text(yaml.safe_dump(params))
    code, out, err = _predict(capsys, "--agent", "--adapter", random_lora, "--params", project.root / "agent_params.yaml",
                              "--db", database_path(project.raw, "zoo"), "How many animals?")
    assert code in (0, 1), err
    assert "-- answer from " in out and "\n-- pipe SQL\n" in out
