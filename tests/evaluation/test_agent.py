"""The agent loop with a scripted model, and the loop on a real tiny model with the tools rendered.

The scripted model replies from a script, one reply per turn, in the text the chat template
writes tool calls in; each prompt it gets is rendered through the training chat template, and
every assistant turn of the rendering must be exactly the reply it gave: the model reads back
what it wrote, in the format it was trained on.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml
from evaluation.tinyrun import TinyProject
from transformers.utils.chat_template_utils import render_jinja_template

from pipesql.basemodel.chat_template import chatml_template
from pipesql.evaluation.agent import (
    AgentTask,
    CallRecord,
    run_agent,
    tool_metrics,
    tool_params,
)
from pipesql.evaluation.generate import HFGenerator, Messages
from pipesql.models import load_model
from pipesql.params.eval import AgentParams, EvalParams, GenerationParams
from pipesql.params.tokenize import TokenizeParams
from pipesql.prompts import TOOLS, format_query, tool_messages
from pipesql.samples.conversations import tool_sample

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = chatml_template()
PARAMS = TokenizeParams.model_validate({"schema": {"format": "compact"}, "tool_max_rows": 2})
Q = "FROM singer |> WHERE country = 'France' |> SELECT name"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("agent") / "concert.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """
            CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name TEXT, country TEXT);
            CREATE TABLE concert (concert_id INTEGER PRIMARY KEY, singer_id INT REFERENCES singer(singer_id));
            INSERT INTO singer VALUES (1, 'Anna', 'France'), (2, 'Ben', 'Japan'), (3, 'Chloe', 'France'),
                                      (4, 'Dara', 'Chile');
            INSERT INTO concert VALUES (1, 1), (2, 1), (3, 2);
            """
        )
    conn.close()
    return path


def call(name: str, arguments: dict | None = None) -> str:
    """One call as the chat template writes it."""
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments or {}})}\n</tool_call>"


def answer(query: str) -> str:
    return f"```sql\n{query}\n```"


def _render(messages: Messages) -> str:
    (text,), _ = render_jinja_template(conversations=[messages], tools=TOOLS, chat_template=TEMPLATE)
    return text


def _assistant_turns(text: str) -> list[str]:
    return [part.split("<|im_end|>")[0] for part in text.split("<|im_start|>assistant\n")[1:]]


class ScriptedModel:
    """Replies to turn k of a question with its script's k-th reply (the last one repeats).

    Each prompt must open as prompts.tool_messages does, and the template's rendering of it must
    hold the replies given so far verbatim, each as one assistant turn.
    """

    def __init__(self, scripts: dict[str, list[str]]) -> None:
        self.scripts = scripts
        self.batches: list[int] = []
        self.budgets: list[int] = []

    def __call__(self, prompts: Sequence[Messages], max_new_tokens: int) -> list[str]:
        self.batches.append(len(prompts))
        self.budgets.append(max_new_tokens)
        replies = []
        for messages in prompts:
            question = messages[1]["content"].removeprefix("Question: ")
            assert messages[:2] == tool_messages(question)
            script = self.scripts[question]
            turns = _assistant_turns(_render(messages))
            assert turns == [script[min(k, len(script) - 1)] for k in range(len(turns))]
            replies.append(script[min(len(turns), len(script) - 1)])
        return replies


def _run(db: Path, scripts: dict[str, list[str]], max_turns: int = 10) -> tuple[list, ScriptedModel]:
    model = ScriptedModel(scripts)
    tasks = [AgentTask(q, db, id=f"q{i}") for i, q in enumerate(scripts)]
    return run_agent(tasks, model, AgentParams(max_turns=max_turns), PARAMS, progress=False), model


def test_the_loop_rebuilds_a_tool_sample_from_the_models_replies(db: Path) -> None:
    """Replying with a tool sample's own assistant turns gives back that sample's conversation."""
    row = {"id": "ex-1", "question": "Who is from France?"}
    ops = ["FROM singer", "WHERE country = 'France'", "SELECT name"]
    sample = tool_sample(row, ops, db, PARAMS)
    assert sample is not None
    replies = _assistant_turns(_render(sample.messages))
    (trace,), _ = _run(db, {row["question"]: replies})
    assert trace.messages == sample.messages
    assert (trace.answer, trace.source, trace.turns) == (format_query(ops), "execute_pipe_sql", len(replies))


def test_each_tool_runs_and_the_executed_query_is_the_answer(db: Path) -> None:
    script = [
        call("list_tables"),
        call("describe_table", {"table": "singer"}) + "\n" + call("describe_table", {"table": "CONCERT"}),
        call("sample_rows", {"table": "singer", "limit": 1}),
        call("execute_pipe_sql", {"query": Q}),
        answer("FROM singer |> SELECT name"),  # differs from the query it ran: the run one counts
    ]
    (trace,), _ = _run(db, {"Who is from France?": script})
    results = {c.name: c.result for c in trace.calls}
    assert [c.name for c in trace.calls] == [
        "list_tables", "describe_table", "describe_table", "sample_rows", "execute_pipe_sql"
    ]
    assert results["list_tables"] == "singer\nconcert"
    assert trace.calls[2].result.startswith("concert(")  # found case-insensitively, its own spelling
    assert results["sample_rows"] == "singer_id | name | country\n1 | Anna | France\n(1 row)"
    assert results["execute_pipe_sql"] == "name\nAnna\nChloe\n(2 rows)"
    assert all(c.succeeded for c in trace.calls)
    assert (trace.answer, trace.source, trace.hit_turn_limit) == (Q, "execute_pipe_sql", False)
    generation = trace.generation()
    assert (generation.query, generation.steps, generation.finished, generation.error) == (Q, 5, True, None)
    metrics = tool_metrics([trace])
    assert metrics["tool_calls_per_query"] == 5
    assert metrics["tool_calls_per_query_by_tool"] == {
        "list_tables": 1, "describe_table": 2, "sample_rows": 1, "execute_pipe_sql": 1
    }
    assert metrics["answered_by_execute_share"] == 1.0


INVALID_SCRIPT = [
    call("drop_database", {"name": "x"}),
    "<tool_call>\n{\"name\": \"list_tables\", \"arguments\": {}\n</tool_call>",   # a brace short
    call("describe_table", {"name": "singer"}) + "\n" + call("sample_rows", {"table": "singer", "limit": "3"}),
    call("execute_pipe_sql", {}),
    "Here it is:\n" + answer("FROM singer |> AGGREGATE COUNT(*) AS n"),
]


def test_invalid_calls_get_error_results_and_the_conversation_goes_on(db: Path) -> None:
    (trace,), _ = _run(db, {"How many singers?": INVALID_SCRIPT})
    assert [(c.name, c.invalid) for c in trace.calls] == [
        ("drop_database", "unknown_tool"),
        (None, "malformed"),
        ("describe_table", "bad_arguments"),
        ("sample_rows", "bad_arguments"),
        ("execute_pipe_sql", "bad_arguments"),
    ]
    assert [c.result for c in trace.calls] == [
        "error: unknown tool 'drop_database'",
        trace.calls[1].result,
        "error: describe_table takes no argument 'name'",
        "error: sample_rows: 'limit' must be an integer, not '3'",
        "error: execute_pipe_sql needs 'query'",
    ]
    assert trace.calls[1].result.startswith("error: malformed tool call: the call is not JSON")
    # the unreadable block stays in the assistant turn, verbatim, so the model sees what it wrote
    assert trace.messages[4] == {"role": "assistant", "content": INVALID_SCRIPT[1], "tool_calls": []}
    assert (trace.answer, trace.source) == ("FROM singer |> AGGREGATE COUNT(*) AS n", "final_message")
    metrics = tool_metrics([trace])
    assert metrics["invalid_calls"] == {"malformed": 1, "unknown_tool": 1, "bad_arguments": 3}
    assert metrics["answer_sources"] == {"execute_pipe_sql": 0, "final_message": 1, "none": 0}


def test_an_unclosed_call_is_malformed(db: Path) -> None:
    (trace,), _ = _run(db, {"Q?": ['<tool_call>\n{"name": "list_tables", "arguments": {}}', answer("FROM singer")]})
    assert trace.calls[0].invalid == "malformed"
    assert "not closed" in trace.calls[0].result


def test_a_failing_query_is_not_the_answer(db: Path) -> None:
    script = [call("execute_pipe_sql", {"query": Q}), call("execute_pipe_sql", {"query": "FROM nope"}), answer("FROM x")]
    (trace,), _ = _run(db, {"Q?": script})
    assert trace.calls[1].result == "error: no such table: nope"
    assert (trace.answer, trace.source) == (Q, "execute_pipe_sql")  # the last *successful* one
    assert tool_metrics([trace])["failed_calls"] == 1


def test_the_turn_limit_ends_a_conversation_that_never_answers(db: Path) -> None:
    (looping, executed), model = _run(
        db,
        {"Q1?": [call("list_tables")], "Q2?": [call("list_tables"), call("execute_pipe_sql", {"query": Q})]},
        max_turns=3,
    )
    assert model.batches == [2, 2, 2]
    assert (looping.turns, looping.hit_turn_limit, looping.source, looping.answer) == (3, True, "none", "")
    assert looping.generation().error == "no answer in 3 turns: no final message, no successful execute_pipe_sql"
    # cut by the limit too, but it ran a query: that is its answer
    assert (executed.hit_turn_limit, executed.source, executed.answer) == (True, "execute_pipe_sql", Q)
    assert tool_metrics([looping, executed])["hit_turn_limit"] == 2


def test_finished_conversations_leave_the_batch(db: Path) -> None:
    scripts = {
        "Q1?": [answer("FROM singer")],
        "Q2?": [call("list_tables"), answer("FROM concert")],
        "Q3?": [call("list_tables"), call("list_tables"), answer("FROM singer")],
    }
    traces, model = _run(db, scripts)
    assert model.batches == [3, 2, 1]
    assert model.budgets == [AgentParams().max_new_tokens_turn] * 3
    assert [t.turns for t in traces] == [1, 2, 3]
    assert [t.source for t in traces] == ["final_message"] * 3
    assert tool_metrics(traces)["tool_calls_per_query"] == 1.0


HOSTILE = [
    # (arguments of the call, what its result must be)
    (("describe_table", {"table": "singer; DROP TABLE singer"}), "error: no such table: singer; DROP TABLE singer"),
    (("sample_rows", {"table": 'singer" UNION SELECT sql, 1, 1 FROM sqlite_master --'}), "error: no such table"),
    (("sample_rows", {"table": "sqlite_master"}), "error: no such table: sqlite_master"),
    (("sample_rows", {"table": "singer", "limit": 10**12}),  # clamped to tool_max_rows
     "singer_id | name | country\n1 | Anna | France\n2 | Ben | Japan\n(2 rows)"),
    (("sample_rows", {"table": "singer", "limit": -5}), "singer_id | name | country\n1 | Anna | France\n(1 row)"),
    (("sample_rows", {"table": "singer", "limit": True}), "error: sample_rows: 'limit' must be an integer"),
    (("execute_pipe_sql", {"query": "DELETE FROM singer"}), "error: "),
    (("execute_pipe_sql", {"query": "SELECT 1; DROP TABLE singer"}), "error: "),
    (("execute_pipe_sql", {"query": "FROM singer |> SELECT zeroblob(5000000) AS b"}),   # 4 x 5 MB > 16 MB
     "error: the result holds more than 16,777,216 bytes (at row 4)"),
    (("execute_pipe_sql", {"query": "FROM singer |> SELECT zeroblob(30000000) AS b"}),  # one value > 16 MB
     "error: string or blob too big"),
    (("execute_pipe_sql", {"query": "SELECT randomblob(1000000000)"}), "error: "),
    (("execute_pipe_sql", {"query": ["FROM singer"]}), "error: execute_pipe_sql: 'query' must be a string"),
]


@pytest.mark.parametrize(("tool_call", "expected"), HOSTILE, ids=[f"{c[0]}-{i}" for i, (c, _) in enumerate(HOSTILE)])
def test_hostile_arguments_are_refused_or_bounded(db: Path, tool_call: tuple[str, dict], expected: str) -> None:
    before = db.read_bytes()
    (trace,), _ = _run(db, {"Q?": [call(*tool_call), answer("FROM singer")]})
    (record,) = trace.calls
    assert record.result.startswith(expected), record.result
    assert db.read_bytes() == before


def test_on_call_sees_each_call_as_it_happens(db: Path) -> None:
    seen: list[tuple[int, CallRecord]] = []
    tasks = [AgentTask("Q?", db)]
    model = ScriptedModel({"Q?": [call("list_tables"), answer("FROM singer")]})
    run_agent(tasks, model, AgentParams(), PARAMS, on_call=lambda i, c: seen.append((i, c)), progress=False)
    assert [(i, c.name, c.result) for i, c in seen] == [(0, "list_tables", "singer\nconcert")]


def test_trace_rows_are_json(db: Path) -> None:
    (trace,), _ = _run(db, {"Q?": INVALID_SCRIPT})
    row = json.loads(json.dumps(trace.row()))
    assert (row["id"], row["source"], row["turns"], len(row["calls"])) == ("q0", "final_message", 5, 5)
    assert row["messages"][0]["role"] == "system"


def test_tool_params_take_evals_deadline_and_rows_shown() -> None:
    params = EvalParams.model_validate({"timeout_s": 1.5, "agent": {"rows_shown": 9}})
    assert (tool_params(PARAMS, params).timeout_s, tool_params(PARAMS, params).tool_max_rows) == (1.5, 9)
    assert tool_params(PARAMS, EvalParams()).tool_max_rows == PARAMS.tool_max_rows


def test_the_real_generator_renders_the_tools_and_caches_their_system_turn(
    project: TinyProject, random_lora: Path
) -> None:
    """Whatever a random model replies, the loop runs to an end; one system turn serves every prompt."""
    model, tokenizer = load_model(project.base, random_lora, "fp32")
    generator = HFGenerator(model, tokenizer, GenerationParams(), progress=False, tools=TOOLS)
    db = project.raw / "database" / "concert" / "concert.sqlite"
    tasks = [AgentTask("How many singers are there?", db), AgentTask("Name the singers.", db)]
    traces = run_agent(tasks, generator, AgentParams(max_turns=2, max_new_tokens_turn=8), PARAMS, progress=False)
    assert [1 <= t.turns <= 2 for t in traces] == [True, True]
    text = tokenizer.apply_chat_template(traces[0].messages[:2], tools=TOOLS, tokenize=False)
    assert '"name": "execute_pipe_sql"' in text
    assert generator.cached_prefixes == 1


@pytest.mark.slow
def test_the_eval_agent_stage(project: TinyProject, random_lora: Path, tmp_path: Path) -> None:
    """dvc.yaml's eval_agent command, as written there: the agent protocol whatever eval.protocol
    says, its own metrics file with the tool figures (whatever a random model does with the
    tools) and no teacher-forced figures, and a trace per test query."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["tokenize"] = project.tokenize_params.model_dump(mode="json", by_alias=True)
    params["eval"] |= {"protocol": "full", "agent": {"max_turns": 2, "max_new_tokens_turn": 16, "rows_shown": None}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    inputs = {"models/base": project.base, "models/adapter": random_lora, "data/samples": project.samples,
              "data/raw": project.raw}
    cmd = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]["eval_agent"]["cmd"].split()
    assert cmd[:3] == ["python", "-m", "stages.eval"]
    # this checkout's source first, whichever one the environment installed; one thread: see tinyrun
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "src")]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, *cmd[1:3], *(str(inputs.get(arg, arg)) for arg in cmd[3:])],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (tmp_path / "metrics" / "eval.json").exists()
    metrics = json.loads((tmp_path / "metrics" / "eval_agent.json").read_text())
    assert metrics["protocol"] == "agent" and metrics["examples"] == 4
    assert "loss" not in metrics and "teacher_forced" not in metrics
    assert set(metrics["agent"]) >= {"tool_calls_per_query", "tool_calls_per_query_by_tool", "invalid_calls",
                                     "hit_turn_limit", "answered_by_execute_share"}
    assert sum(metrics["agent"]["answer_sources"].values()) == 4
    out = tmp_path / "data" / "eval"
    traces = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    predictions = [json.loads(line) for line in (out / "agent_predictions.jsonl").read_text().splitlines()]
    assert [t["id"] for t in traces] == [p["id"] for p in predictions]
    assert [t["answer"] for t in traces] == [p["prediction"] for p in predictions]
    assert all(1 <= t["turns"] <= 2 and t["messages"][0]["role"] == "system" for t in traces)
    assert (tmp_path / "metrics" / "eval_agent_plots" / "execution_accuracy_by_difficulty.json").exists()
    assert "agent: {" in proc.stdout
