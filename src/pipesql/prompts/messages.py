"""Chat messages of each prompt shape, and the parsing of the model's answers.

Three shapes of conversation, each a system turn (instructions, and the schema where one is
given) and a user turn (question, evidence, and in step mode the query so far):

    step   the answer is the next operator, or END_MARKER once the query is complete
    full   the answer is the whole query in a ```sql block
    tools  the schema is not given: the model calls TOOLS, then answers as in full

The schema sits in the system turn, apart from what changes from step to step, so every step of
every question on one database shares that turn's text (and tokenize encodes it once).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pipesql.sql.pipe import split_operators

END_MARKER = "END"  # never an operator's first word, so a reply of END is unambiguous

SYSTEM_STEP = (
    "You write pipe SQL for SQLite, one operator at a time. Reply with the next operator of the"
    f" query, or {END_MARKER} when the query is complete."
)
SCHEMA_HEADING = "Database schema:"
SYSTEM_FULL = "You write pipe SQL for SQLite. Reply with the whole query in a ```sql block."
SYSTEM_TOOLS = (
    "You write pipe SQL for SQLite. Inspect the database and test your query with the tools,"
    " then reply with the whole query in a ```sql block."
)

_FENCED = re.compile(r"```[A-Za-z]*[ \t]*\n(.*?)```", re.DOTALL)


def step_messages(
    question: str, schema: str, ops_so_far: Sequence[str], evidence: str | None = None
) -> list[dict[str, str]]:
    """The prompt of step k (k = len(ops_so_far)): its answer is operator k, or END_MARKER."""
    so_far = f"\n{format_query(ops_so_far)}" if ops_so_far else " (empty)"
    return [
        {"role": "system", "content": _system(SYSTEM_STEP, schema)},
        {"role": "user", "content": f"{_question_text(question, evidence)}\nQuery so far:{so_far}"},
    ]


def step_answer(op: str | None, reasoning: str | None = None) -> str:
    """Operator k as the assistant writes it; None is the end of the query.

    Reasoning (step 0 only: the model thinks once, before its first operator) comes first and
    the operator follows in a ```sql block, so `parse_step_answer` finds it either way.
    """
    text = END_MARKER if op is None else op
    return f"{reasoning.strip()}\n\n```sql\n{text}\n```" if reasoning else text


def parse_step_answer(text: str) -> str | None:
    """A generated step back to one operator, or None where the model says the query is done.

    Lenient where a model drifts harmlessly (a leading `|>`, a fence, more than one operator:
    the first is the step); raises ValueError when no operator can be read.
    """
    body = _last_fenced(text).strip()
    if body == END_MARKER:
        return None
    body = body.removeprefix("|>").strip()
    if not body:
        raise ValueError(f"no operator in the answer {text!r}")
    return split_operators(body)[0]


def full_messages(
    question: str, schema: str, evidence: str | None = None
) -> list[dict[str, str]]:
    """The prompt whose answer is the whole query (`full_answer`)."""
    return [
        {"role": "system", "content": _system(SYSTEM_FULL, schema)},
        {"role": "user", "content": _question_text(question, evidence)},
    ]


def full_answer(ops: Sequence[str], reasoning: str | None = None) -> str:
    """The whole query, one operator a line, in a ```sql block; reasoning, if any, before it."""
    block = f"```sql\n{format_query(ops)}\n```"
    return f"{reasoning.strip()}\n\n{block}" if reasoning else block


def parse_full_answer(text: str) -> str:
    """The pipe SQL of a full (or tool) answer: its last ```sql block, else the whole text."""
    return _last_fenced(text).strip()


def tool_messages(question: str, evidence: str | None = None) -> list[dict[str, str]]:
    """The prompt of a tool conversation: no schema, which the model looks up with TOOLS."""
    return [
        {"role": "system", "content": SYSTEM_TOOLS},
        {"role": "user", "content": _question_text(question, evidence)},
    ]


def template_texts() -> list[str]:
    """The fixed wording of every prompt kind, so a tokenizer trained from scratch merges it.

    Without it the instructions, a sixth of a short prompt, split into letters and pairs.
    """
    kinds = (step_messages("", "", []), step_messages("", "", ["FROM t"]), full_messages("", ""), tool_messages(""))
    return [SCHEMA_HEADING] + [message["content"] for messages in kinds for message in messages]


def format_query(ops: Sequence[str]) -> str:
    """`FROM t\\n|> WHERE a > 1`: one operator a line, as pipe SQL is usually laid out."""
    return "\n|> ".join(op.strip() for op in ops)


def _system(instructions: str, schema: str) -> str:
    """The system turn: instructions, then the schema unless `schema.format` is none."""
    return f"{instructions}\n\n{SCHEMA_HEADING}\n{schema}" if schema else instructions


def _question_text(question: str, evidence: str | None) -> str:
    text = f"Question: {question.strip()}"
    return f"{text}\nEvidence: {evidence.strip()}" if evidence else text


def _last_fenced(text: str) -> str:
    """The last fenced block: reasoning may hold blocks of its own before the answer's."""
    blocks = _FENCED.findall(text)
    return blocks[-1] if blocks else text
