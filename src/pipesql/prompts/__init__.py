"""What the model sees: chat messages and answer parsing, schema text, tools and their results.

The single source of every prompt, imported by tokenize (training samples) and by eval and
predict (generation), so the text a model is trained on is the text it is asked with; the
settings that shape it travel with the model as its prompt contract (`contract`). Nothing here
imports torch or transformers.
"""

from pipesql.prompts.messages import (
    END_MARKER,
    SCHEMA_HEADING,
    SYSTEM_FULL,
    SYSTEM_STEP,
    SYSTEM_TOOLS,
    format_query,
    full_answer,
    full_messages,
    parse_full_answer,
    parse_step_answer,
    step_answer,
    step_messages,
    template_texts,
    tool_messages,
)
from pipesql.prompts.schema import (
    RENDERERS,
    list_tables,
    read_schema,
    read_table,
    render_table,
    render_table_compact,
    schema_text,
)
from pipesql.prompts.tools import (
    TOOLS,
    ToolCall,
    ToolReply,
    call_message,
    check_arguments,
    format_result,
    parse_tool_reply,
    result_message,
    run_tool,
)

__all__ = [
    "END_MARKER", "RENDERERS", "SCHEMA_HEADING", "SYSTEM_FULL", "SYSTEM_STEP", "SYSTEM_TOOLS", "TOOLS",
    "ToolCall", "ToolReply", "call_message", "check_arguments", "parse_tool_reply", "result_message",
    "format_query", "format_result", "full_answer", "full_messages", "list_tables",
    "parse_full_answer", "parse_step_answer", "read_schema", "read_table", "render_table", "render_table_compact", "run_tool",
    "schema_text", "step_answer", "step_messages", "template_texts", "tool_messages",
]
