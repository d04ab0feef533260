"""The ChatML training template: Qwen2.5's format, plus `{% generation %}` markers for loss masking.

It renders byte-for-byte what Qwen2.5's own template renders (tools in the system prompt,
`<tool_call>` blocks in assistant turns, tool results as `<tool_response>` inside a user turn),
so a hub Qwen model sees the prompts it was tuned on. The markers wrap each assistant reply and
its closing `<|im_end|>`, but not the `<|im_start|>assistant\\n` header that the generation prompt
supplies: the model learns what to say and when to stop, never the prompt.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pipesql.io import DataError

# Qwen2.5's long tool-prompt strings are kept verbatim, so a diff against its template is easy.
_TEMPLATE = r"""{%- set default_system = @DEFAULT_SYSTEM@ %}
{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- elif default_system %}
        {{- default_system + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- '\n' + (tool | tojson) }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- elif messages[0].role == 'system' %}
    {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- elif default_system %}
    {{- '<|im_start|>system\n' + default_system + '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}
    {%- elif message.role == 'assistant' %}
        {{- '<|im_start|>assistant\n' }}
        {%- generation %}
            {%- if message.content %}
                {{- message.content }}
            {%- endif %}
            {%- for tool_call in message.tool_calls | default([]) %}
                {%- if tool_call.function is defined %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {%- if message.content or not loop.first %}
                    {{- '\n' }}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' + tool_call.name + '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
            {{- '<|im_end|>' }}
        {%- endgeneration %}
        {{- '\n' }}
    {%- elif message.role == 'tool' %}
        {%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' + message.content + '\n</tool_response>' }}
        {%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- elif not (message.role == 'system' and loop.first) %}
        {{- raise_exception('unknown role: ' + message.role) }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""

_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")


def chatml_template(default_system: str | None = None) -> str:
    """The template, with the system prompt used when a conversation brings none.

    Qwen2.5 models fall back to "You are Qwen, created by Alibaba Cloud..."; keeping their default
    keeps their behaviour. The scratch model has no default: it learns from our prompts only.
    """
    # A JSON string is also a valid Jinja string literal (same quotes and escapes).
    literal = json.dumps(default_system or "", ensure_ascii=False)
    return _TEMPLATE.replace("@DEFAULT_SYSTEM@", literal)


def has_generation_markers(template: str) -> bool:
    return _GENERATION_TAG.search(template) is not None


def check_assistant_mask(tokenizer: Any, origin: str) -> None:
    """Fail now, not hours into training, if the mask misses the reply or leaks the prompt."""
    messages = [
        {"role": "user", "content": "How many singers are there?"},
        {"role": "assistant", "content": "FROM singer |> AGGREGATE COUNT(*) AS n"},
    ]
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids = [i for i, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    masked = tokenizer.decode(ids)
    if messages[1]["content"] not in masked or messages[0]["content"] in masked:
        raise DataError(
            f"{origin}: the chat template's {{% generation %}} span should cover the assistant's"
            f" reply and nothing of the prompt, but it covers {masked!r}"
        )
