"""The prompts package: schema text and its budget rule, step/full messages and their parsers, tool results."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pipesql.params.tokenize import TokenizeParams
from pipesql.prompts import (
    END_MARKER,
    TOOLS,
    ToolCall,
    check_arguments,
    format_result,
    full_answer,
    full_messages,
    parse_full_answer,
    parse_step_answer,
    parse_tool_reply,
    run_tool,
    schema_text,
    step_answer,
    step_messages,
)
from pipesql.sql.execute import execute_safely
from pipesql.sql.lower import lower_to_sqlite

SCHEMA = """
CREATE TABLE country (country_id INTEGER PRIMARY KEY, name TEXT, "order" INT);
CREATE TABLE singer (singer_id INT PRIMARY KEY, name VARCHAR(50), "Home Town" TEXT,
                     country_id INT REFERENCES country(country_id), note);
CREATE TABLE perf (a INT, b INT, singer_id INT, PRIMARY KEY (a, b),
                   FOREIGN KEY (a, b) REFERENCES perf(b, a),
                   FOREIGN KEY (singer_id) REFERENCES singer);
INSERT INTO country VALUES (1, 'France', 1), (2, 'Côte d''Ivoire', 2), (3, 'Peru', 3);
INSERT INTO singer VALUES (1, 'Anna O''Brien', 'Lyon', 1, 'two
lines'), (2, 'Ben', 'Lyon', 2, 'ok'),
                          (3, 'A name far too long to be worth showing', 'Lima', 3, NULL);
"""

WHOLE = """\
CREATE TABLE country (
  country_id INTEGER PRIMARY KEY,
  name TEXT, -- e.g. 'France', 'Côte d''Ivoire'
  "order" INT
);
CREATE TABLE singer (
  singer_id INT PRIMARY KEY,
  name VARCHAR(50), -- e.g. 'Anna O''Brien', 'Ben'
  "Home Town" TEXT, -- e.g. 'Lyon', 'Lima'
  country_id INT REFERENCES country(country_id),
  note -- e.g. 'ok'
);
CREATE TABLE perf (
  a INT,
  b INT,
  singer_id INT REFERENCES singer,
  PRIMARY KEY (a, b),
  FOREIGN KEY (a, b) REFERENCES perf(b, a)
);"""


class WordTokenizer:
    """One token a whitespace-separated word: budgets in tests are easy to reason about."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [0] * len(text.split())


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "concert.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA)
    conn.close()
    return path


def params(**schema: int | str) -> TokenizeParams:
    return TokenizeParams.model_validate({"schema": {"format": "ddl", "max_value_chars": 20, "example_values": 2, **schema}})


def test_schema_text_has_types_keys_and_short_single_line_values(db: Path) -> None:
    assert schema_text(db, params(), WordTokenizer()) == WHOLE


@pytest.mark.parametrize(
    ("max_tokens", "expected"),
    [
        # one value per column goes before any table does
        (70, WHOLE.replace(", 'Côte d''Ivoire'", "").replace(", 'Ben'", "")
         .replace(", 'Lima'", "")),
        # then no values at all
        (60, "\n".join(line.split(" -- ")[0] for line in WHOLE.splitlines())),
        # then tables from the end, named in a closing comment
        (40, "\n".join(line.split(" -- ")[0] for line in WHOLE.splitlines()[:12])
         + "\n-- 1 more tables not shown: perf"),
        # then the columns of the one table left
        (20, "CREATE TABLE country (\n  -- 3 more columns not shown\n);"
         "\n-- 2 more tables not shown: singer, perf"),
    ],
    ids=["values-first", "no-values", "tables-next", "columns-last"],
)
def test_schema_budget_cuts_in_the_stated_order(db: Path, max_tokens: int, expected: str) -> None:
    text = schema_text(db, params(max_tokens=max_tokens), WordTokenizer())
    assert text == expected
    assert len(text.split()) <= max_tokens


COMPACT = """\
country(country_id PK, name ['France', 'Côte d''Ivoire'], "order")
singer(singer_id PK, name ['Anna O''Brien', 'Ben'], "Home Town" ['Lyon', 'Lima'], country_id -> country.country_id, note ['ok'])
perf(a, b, singer_id -> singer, PK (a, b), (a, b) -> perf(b, a))"""


@pytest.mark.parametrize(
    ("max_tokens", "expected"),
    [
        (1024, COMPACT),
        (12, "country(country_id PK, name, \"order\")\n-- 2 more tables not shown: singer, perf"),
    ],
    ids=["whole", "tables-cut"],  # the same cuts as ddl (_cuts): values, then tables, then columns
)
def test_compact_schema_keeps_names_keys_and_values_and_cuts_alike(db: Path, max_tokens: int, expected: str) -> None:
    text = schema_text(db, params(format="compact", max_tokens=max_tokens), WordTokenizer())
    assert text == expected
    assert len(text.split()) <= max_tokens


def test_schema_without_example_values(db: Path) -> None:
    assert " -- e.g." not in schema_text(db, params(example_values=0), WordTokenizer())


def test_schema_format_none_leaves_the_schema_out_of_every_prompt(db: Path) -> None:
    schema = schema_text(db, params(format="none"), WordTokenizer())
    assert schema == ""
    system_full = full_messages("How many?", schema)[0]["content"]
    system_step = step_messages("How many?", schema, [])[0]["content"]
    for system in (system_full, system_step):
        assert "Database schema" not in system and not system.endswith("\n")


def test_step_messages_hold_question_schema_and_query_so_far() -> None:
    first = step_messages("How many?", "SCHEMA", [], evidence="n means count")
    later = step_messages("How many?", "SCHEMA", ["FROM t", "WHERE a = '|>'"])
    assert [m["role"] for m in first] == ["system", "user"]
    assert first[0] == later[0], "the system turn (with the schema) is the same at every step"
    assert first[0]["content"].endswith("Database schema:\nSCHEMA")
    expected = "Question: How many?\nEvidence: n means count\nQuery so far: (empty)"
    assert first[1]["content"] == expected
    assert later[1]["content"] == "Question: How many?\nQuery so far:\nFROM t\n|> WHERE a = '|>'"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("WHERE a = 1", "WHERE a = 1"),
        (END_MARKER, None),
        (f"  {END_MARKER}\n", None),
        ("|> WHERE s = '|>'", "WHERE s = '|>'"),
        ("WHERE a = 1 |> SELECT a", "WHERE a = 1"),
        ("Filter.\n\n```sql\nWHERE a IN (FROM t |> SELECT a)\n```",
         "WHERE a IN (FROM t |> SELECT a)"),
        ("The end.\n\n```sql\nEND\n```", None),
    ],
)
def test_parse_step_answer(text: str, expected: str | None) -> None:
    assert parse_step_answer(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "|>"])
def test_parse_step_answer_without_an_operator_raises(text: str) -> None:
    with pytest.raises(ValueError):
        parse_step_answer(text)


def test_answers_round_trip() -> None:
    ops = ["FROM t", "WHERE s = '|>'", "SELECT a"]
    assert parse_step_answer(step_answer(ops[1])) == ops[1]
    assert parse_step_answer(step_answer(ops[1], reasoning="Why.")) == ops[1]
    assert step_answer(None) == END_MARKER
    reasoning = "Try ```sql\nSELECT 1\n``` first."
    answer = full_answer(ops, reasoning=reasoning)
    assert answer.startswith(reasoning)
    assert parse_full_answer(answer) == "FROM t\n|> WHERE s = '|>'\n|> SELECT a"
    assert full_messages("Q?", "S")[1]["content"] == "Question: Q?"


def test_tools_run_on_the_database(db: Path) -> None:
    p = params()
    assert run_tool(db, "list_tables", {}, p) == "country\nsinger\nperf"
    assert run_tool(db, "describe_table", {"table": "SINGER"}, p) == WHOLE.split(";\n")[1] + ";"
    assert run_tool(db, "sample_rows", {"table": "country", "limit": 2}, p) == (
        "country_id | name | order\n1 | France | 1\n2 | Côte d'Ivoire | 2\n(2 rows)"
    )
    query = "FROM singer |> AGGREGATE COUNT(*) AS n GROUP BY `Home Town` |> ORDER BY n DESC"
    expected = format_result(execute_safely(db, lower_to_sqlite(query)), p.tool_max_rows)
    assert run_tool(db, "execute_pipe_sql", {"query": query}, p) == expected
    assert expected == "Home Town | n\nLyon | 2\nLima | 1\n(2 rows)"


def test_describe_table_shows_ddl_when_prompts_carry_no_schema(db: Path) -> None:
    none = TokenizeParams.model_validate({"schema": {"format": "none", "example_values": 0}})
    assert run_tool(db, "describe_table", {"table": "country"}, none) == (
        'CREATE TABLE country (\n  country_id INTEGER PRIMARY KEY,\n  name TEXT,\n  "order" INT\n);'
    )


@pytest.mark.parametrize(
    ("name", "args", "error"),
    [
        ("describe_table", {"table": "nope"}, "error: no such table: nope"),
        ("execute_pipe_sql", {"query": "FROM nope"}, "error: no such table: nope"),
        ("execute_pipe_sql", {"query": "DELETE FROM singer"}, "error: "),
        ("drop_everything", {}, "error: unknown tool 'drop_everything'"),
    ],
)
def test_tool_failures_are_reported_not_raised(db: Path, name: str, args: dict, error: str) -> None:
    assert run_tool(db, name, args, params()).startswith(error)


def test_format_result_counts_rows_beyond_those_shown(db: Path) -> None:
    result = execute_safely(db, "SELECT name FROM country ORDER BY country_id", max_rows=2)
    assert format_result(result, 1) == "name\nFrance\n(more than 2 rows, first 1 shown)"


CALL = '<tool_call>\n{"name": "describe_table", "arguments": {"table": "t"}}\n</tool_call>'
# (reply, content, calls, malformed reasons (prefixes))
TOOL_REPLIES = [
    ("```sql\nFROM t\n```", "```sql\nFROM t\n```", [], []),
    (CALL, "", [ToolCall("describe_table", {"table": "t"})], []),
    ("Let me look.\n" + CALL + "\n" + CALL.replace('"t"', '"u"'), "Let me look.",
     [ToolCall("describe_table", {"table": "t"}), ToolCall("describe_table", {"table": "u"})], []),
    ('<tool_call>{"name": "list_tables", "arguments": "{}"}</tool_call>', "", [ToolCall("list_tables", {})], []),
    ('<tool_call>{"name": "list_tables"}</tool_call>', "", [ToolCall("list_tables", {})], []),
    ("<tool_call>{oops}</tool_call>", "<tool_call>{oops}</tool_call>", [], ["the call is not JSON"]),
    ('<tool_call>["list_tables"]</tool_call>', '<tool_call>["list_tables"]</tool_call>', [],
     ['the call is not a JSON object with a "name"']),
    ('<tool_call>{"name": "x", "arguments": [1]}</tool_call>', '<tool_call>{"name": "x", "arguments": [1]}</tool_call>',
     [], ['"arguments" is not a JSON object']),
    (CALL + '\n<tool_call>{"name": "list_tables"', '<tool_call>{"name": "list_tables"',
     [ToolCall("describe_table", {"table": "t"})], ["the <tool_call> block is not closed"]),
]


@pytest.mark.parametrize(("reply", "content", "calls", "malformed"), TOOL_REPLIES)
def test_parse_tool_reply(reply: str, content: str, calls: list, malformed: list) -> None:
    parsed = parse_tool_reply(reply)
    assert (parsed.content, list(parsed.calls)) == (content, calls)
    assert len(parsed.malformed) == len(malformed)
    assert all(reason.startswith(m) for reason, m in zip(parsed.malformed, malformed, strict=True))
    assert parsed.is_final == (not calls and not malformed)


@pytest.mark.parametrize(
    ("name", "arguments", "problem"),
    [
        ("list_tables", {}, None),
        ("list_tables", {"table": "t"}, "list_tables takes no argument 'table'"),
        ("sample_rows", {"table": "t"}, None),
        ("sample_rows", {"limit": 2}, "sample_rows needs 'table'"),
        ("sample_rows", {"table": "t", "limit": 2.5}, "sample_rows: 'limit' must be an integer, not 2.5"),
        ("sample_rows", {"table": "t", "limit": False}, "sample_rows: 'limit' must be an integer, not False"),
        ("describe_table", {"table": None}, "describe_table: 'table' must be a string, not None"),
        ("execute_pipe_sql", {"query": "FROM t"}, None),
    ],
)
def test_check_arguments(name: str, arguments: dict, problem: str | None) -> None:
    assert check_arguments(name, arguments) == problem
    if problem:
        assert run_tool(Path("unused.sqlite"), name, arguments, params()) == f"error: {problem}"


def test_tool_definitions_name_the_four_tools() -> None:
    names = [t["function"]["name"] for t in TOOLS]
    assert names == ["list_tables", "describe_table", "sample_rows", "execute_pipe_sql"]


def test_prompts_do_not_import_torch() -> None:
    code = ("import sys, pipesql.prompts; "
            "print(sorted({'torch', 'transformers'} & sys.modules.keys()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
