"""The agent protocol: the model inspects the database with the tools it was trained on, runs its
query, then answers; for the eval stage and `pipesql predict --agent` alike.

Each conversation opens as a tool sample does (`prompts.tool_messages`: no schema) and goes on
in the chat template's own tool-calling format: a reply holding <tool_call> blocks gets one
result per call (`prompts.run_tool`, the function tokenize ran the samples' calls with, through
the safe executor), a reply without any is the final message. All open conversations step
together, one batched `generate` call per turn, and a finished one leaves the batch.

The answer is the query of the last successful `execute_pipe_sql` call, else the query in the
final message: a query the model ran and saw rows of is the one it stands behind. A call that
cannot be read (malformed), names no tool (unknown tool) or does not fit its tool's parameters
(bad arguments) gets an error result, as a failing query does, and the conversation goes on.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from pipesql.evaluation.generate import Generate, Generation
from pipesql.params.eval import AgentParams, EvalParams
from pipesql.params.tokenize import TokenizeParams
from pipesql.prompts import (
    TOOLS,
    ToolCall,
    call_message,
    check_arguments,
    parse_full_answer,
    parse_tool_reply,
    result_message,
    run_tool,
    tool_messages,
)

TOOL_NAMES = tuple(t["function"]["name"] for t in TOOLS)
INVALID = ("malformed", "unknown_tool", "bad_arguments")
SOURCES = ("execute_pipe_sql", "final_message", "none")
Invalid = Literal["malformed", "unknown_tool", "bad_arguments"]
Source = Literal["execute_pipe_sql", "final_message", "none"]


@dataclass(frozen=True)
class AgentTask:
    question: str
    db_path: Path
    evidence: str | None = None
    id: str = ""          # the test pair's id, carried into its trace


@dataclass(frozen=True)
class CallRecord:
    """One tool call as it happened: what the model asked, and what it was shown."""

    turn: int                      # 0-based reply it was made in
    name: str | None               # None: the call could not be read
    arguments: dict[str, Any] | None
    result: str                    # the text the model read; "error: ..." when it failed
    invalid: Invalid | None = None

    @property
    def succeeded(self) -> bool:
        return self.invalid is None and not self.result.startswith("error:")


@dataclass
class Trace:
    """A whole conversation: its messages, its calls, the answer and where the answer came from."""

    task: AgentTask
    messages: list[dict[str, Any]]
    calls: list[CallRecord] = field(default_factory=list)
    turns: int = 0                 # replies generated
    final: str | None = None       # the final message (a reply without tool calls), if any
    executed: str | None = None    # the query of the last successful execute_pipe_sql call

    @property
    def answer(self) -> str:
        if self.executed is not None:
            return self.executed
        return parse_full_answer(self.final) if self.final is not None else ""

    @property
    def source(self) -> Source:
        return "execute_pipe_sql" if self.executed is not None else "final_message" if self.final is not None else "none"

    @property
    def hit_turn_limit(self) -> bool:
        return self.final is None

    def generation(self) -> Generation:
        """The answer as eval scores a generated query."""
        error = None if self.source != "none" else f"no answer in {self.turns} turns: no final message, no successful execute_pipe_sql"
        return Generation(self.answer, self.turns, finished=self.final is not None, error=error)

    def row(self) -> dict[str, Any]:
        """Its line of data/eval/traces.jsonl."""
        return {
            "id": self.task.id,
            "db_path": str(self.task.db_path),
            "question": self.task.question,
            "answer": self.answer,
            "source": self.source,
            "turns": self.turns,
            "hit_turn_limit": self.hit_turn_limit,
            "calls": [
                {"turn": c.turn, "name": c.name, "arguments": c.arguments, "result": c.result, "invalid": c.invalid}
                for c in self.calls
            ],
            "messages": self.messages,
        }


OnCall = Callable[[int, CallRecord], None]  # (task index, call) as soon as its result is known


def run_agent(
    tasks: Sequence[AgentTask],
    generate: Generate,
    params: AgentParams,
    tool_settings: TokenizeParams,
    on_call: OnCall | None = None,
    progress: bool = True,
) -> list[Trace]:
    """Up to params.max_turns replies per task; every open conversation is asked each turn.

    `tool_settings` shape the tools' results as they shaped the tool samples' (the prompt
    contract's tokenize settings); the calls of the last turn still run, so a query executed
    then is the answer of a conversation cut by the turn limit.
    """
    traces = [Trace(t, tool_messages(t.question, t.evidence)) for t in tasks]
    active = list(range(len(tasks)))
    with tqdm(total=len(tasks), desc="agent", unit="query", disable=not progress) as bar:
        for turn in range(params.max_turns):
            if not active:
                break
            replies = generate([traces[i].messages for i in active], params.max_new_tokens_turn)
            still = []
            for i, reply in zip(active, replies, strict=True):
                trace = traces[i]
                trace.turns = turn + 1
                final, records = _step(trace, reply, turn, tool_settings)
                if on_call:
                    for record in records:
                        on_call(i, record)
                if final:
                    bar.update()
                else:
                    still.append(i)
            active = still
            bar.set_postfix(turn=turn + 1, open=len(active))
    return traces


def _step(trace: Trace, reply: str, turn: int, params: TokenizeParams) -> tuple[bool, list[CallRecord]]:
    """Append the reply and its calls' results to the conversation: (is it final, its calls).

    The results follow the order the chat template renders the reply in: its text (where an
    unreadable block stays, verbatim) before its calls.
    """
    parsed = parse_tool_reply(reply)
    if parsed.is_final:
        trace.messages.append({"role": "assistant", "content": reply})
        trace.final = reply
        return True, []
    trace.messages.append(call_message(list(parsed.calls), parsed.content))
    records = [
        CallRecord(turn, None, None, f"error: malformed tool call: {reason}", "malformed") for reason in parsed.malformed
    ]
    records += [_run(trace.task.db_path, call, turn, params) for call in parsed.calls]
    for record in records:
        trace.messages.append(result_message(record.name or "malformed", record.result))
        trace.calls.append(record)
        if record.name == "execute_pipe_sql" and record.succeeded:
            trace.executed = record.arguments["query"]  # type: ignore[index]
    return False, records


def _run(db_path: Path, call: ToolCall, turn: int, params: TokenizeParams) -> CallRecord:
    invalid: Invalid | None = None
    if call.name not in TOOL_NAMES:
        invalid = "unknown_tool"
    elif check_arguments(call.name, call.arguments):
        invalid = "bad_arguments"
    return CallRecord(turn, call.name, call.arguments, run_tool(db_path, call.name, call.arguments, params), invalid)


def tool_params(contract_params: TokenizeParams, params: EvalParams) -> TokenizeParams:
    """The contract's settings for the tools' results, with eval's deadline and rows shown."""
    update: dict[str, Any] = {"timeout_s": params.timeout_s}
    if params.agent.rows_shown is not None:
        update["tool_max_rows"] = params.agent.rows_shown
    return contract_params.model_copy(update=update)


def tool_metrics(traces: Sequence[Trace]) -> dict[str, Any]:
    """The tool figures of metrics/eval.json: how the model used the tools, and how its answers came."""
    n = len(traces)

    def mean(total: float) -> float:
        return round(total / n, 3) if n else 0.0

    calls = [c for t in traces for c in t.calls]
    by_tool = Counter(c.name for c in calls if c.name in TOOL_NAMES)
    invalid = Counter(c.invalid for c in calls if c.invalid)
    sources = Counter(t.source for t in traces)
    return {
        "turns_mean": mean(sum(t.turns for t in traces)),
        "tool_calls_per_query": mean(len(calls)),
        "tool_calls_per_query_by_tool": {name: mean(by_tool[name]) for name in TOOL_NAMES},
        "invalid_calls": {kind: invalid[kind] for kind in INVALID},
        "failed_calls": sum(c.invalid is None and not c.succeeded for c in calls),  # valid, but an error result
        "hit_turn_limit": sum(t.hit_turn_limit for t in traces),
        "answer_sources": {source: sources[source] for source in SOURCES},
        "answered_by_execute_share": round(sources["execute_pipe_sql"] / n, 4) if n else 0.0,
    }


def shorten(result: str, max_lines: int = 8, max_chars: int = 400) -> str:
    """A tool result cut for a terminal: its first lines, and how many more there were."""
    lines = result.splitlines()
    text = "\n".join(lines[:max_lines])
    if len(text) > max_chars:
        text = text[: max_chars - 3] + "..."
    return text + (f"\n... ({len(lines) - max_lines} more lines)" if len(lines) > max_lines else "")


def describe_call(call: CallRecord) -> str:
    """`describe_table {"table": "singer"}`, or why the call could not be read."""
    if call.name is None:
        return "(malformed call)"
    return f"{call.name} {json.dumps(call.arguments, ensure_ascii=False)}"
