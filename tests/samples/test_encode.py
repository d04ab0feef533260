"""The encoder: apply_chat_template's ids and assistant mask, labels on the replies only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from pipesql.io import DataError
from pipesql.prompts import TOOLS, full_answer, full_messages, step_answer, step_messages
from pipesql.samples.encode import IGNORE, ChatEncoder

SCHEMA = "CREATE TABLE singer (\n  name TEXT, -- e.g. 'Anna O''Brien', 'Zoë'\n  age INT\n);"
OPS = ["FROM singer", "WHERE name = 'Ben |> Kim'", "AGGREGATE COUNT(*) AS n"]


def conversations() -> dict[str, list[dict[str, Any]]]:
    """One of each shape, with odd characters (accents, CJK, spaces) where pieces meet."""
    question = "How many singers named 'Ben |> Kim' — 歌手?"
    call = {"type": "function", "function": {"name": "list_tables", "arguments": {}}}
    return {
        "step-0": step_messages(question, SCHEMA, [])
        + [assistant(step_answer(OPS[0], reasoning="Count rows."))],
        "step-2": step_messages(question, SCHEMA, OPS[:2], evidence="n is a count")
        + [assistant(step_answer(OPS[2]))],
        "end": step_messages(question, SCHEMA, OPS) + [assistant(step_answer(None))],
        "full": full_messages(question, SCHEMA) + [assistant(full_answer(OPS))],
        "spaces": [{"role": "user", "content": "  q  \n"}, assistant("  a \n")],
        "tool": [
            {"role": "system", "content": "Use the tools."},
            {"role": "user", "content": question},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "name": "list_tables", "content": "singer"},
            assistant(full_answer(OPS)),
        ],
    }


def assistant(content: str) -> dict[str, str]:
    return {"role": "assistant", "content": content}


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(model_dir)


def native(
    tokenizer: PreTrainedTokenizerBase, conversation: list[dict[str, Any]]
) -> tuple[list[int], list[int]]:
    tools = TOOLS if any(m.get("tool_calls") for m in conversation) else None
    out = tokenizer.apply_chat_template(
        conversation, tools=tools, tokenize=True, return_dict=True,
        return_assistant_tokens_mask=True,
    )
    ids = list(out["input_ids"])
    return ids, [i if m else IGNORE for i, m in zip(ids, out["assistant_masks"], strict=True)]


@pytest.mark.parametrize("whole_texts", [False, True], ids=["pieces", "whole-texts"])
@pytest.mark.parametrize("name", list(conversations()))
def test_equals_apply_chat_template(
    tokenizer: PreTrainedTokenizerBase, name: str, whole_texts: bool
) -> None:
    """Both paths: pieces between added tokens, and whole texts (tokenizers that cannot split)."""
    encoder = ChatEncoder(tokenizer, "test")
    assert encoder._special is not None, "the scratch tokenizer splits on its added tokens"
    if whole_texts:
        encoder._special = None
    conversation = conversations()[name]
    tools = TOOLS if name == "tool" else None
    (encoded,) = encoder.encode([conversation], tools)
    ids, labels = native(tokenizer, conversation)
    assert encoded.input_ids.tolist() == ids
    assert encoded.labels.tolist() == labels


@pytest.mark.parametrize("name", ["step-0", "step-2", "end", "full", "spaces"])
def test_labels_are_exactly_the_reply_and_its_end_of_turn(
    tokenizer: PreTrainedTokenizerBase, name: str
) -> None:
    conversation = conversations()[name]
    (encoded,) = ChatEncoder(tokenizer, "test").encode([conversation])
    labels = encoded.labels.tolist()
    first = next(i for i, label in enumerate(labels) if label != IGNORE)
    last = max(i for i, label in enumerate(labels) if label != IGNORE)
    assert all(label != IGNORE for label in labels[first : last + 1]), "one contiguous span"
    assert tokenizer.decode(labels[first : last + 1]) == conversation[-1]["content"] + "<|im_end|>"
    assert labels[last] == tokenizer.convert_tokens_to_ids("<|im_end|>"), "the model learns to stop"
    assert tokenizer.decode(encoded.input_ids[:first]).endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("name", ["step-0", "step-2", "end", "full"])
def test_training_prompt_is_the_inference_prompt(
    tokenizer: PreTrainedTokenizerBase, name: str
) -> None:
    """The tokens before the labels are what eval feeds the model to generate that answer."""
    conversation = conversations()[name]
    (encoded,) = ChatEncoder(tokenizer, "test").encode([conversation])
    first = next(i for i, label in enumerate(encoded.labels.tolist()) if label != IGNORE)
    prompt = tokenizer.apply_chat_template(conversation[:-1], add_generation_prompt=True)
    assert encoded.input_ids[:first].tolist() == list(prompt["input_ids"])


def test_tool_conversation_labels_every_assistant_turn(tokenizer: PreTrainedTokenizerBase) -> None:
    (encoded,) = ChatEncoder(tokenizer, "test").encode([conversations()["tool"]], TOOLS)
    runs, run = [], []
    for label in encoded.labels.tolist():
        if label == IGNORE and run:
            runs.append(tokenizer.decode(run))
            run = []
        elif label != IGNORE:
            run.append(label)
    assert runs == [
        '<tool_call>\n{"name": "list_tables", "arguments": {}}\n</tool_call><|im_end|>',
        full_answer(OPS) + "<|im_end|>",
    ]


def test_batch_equals_one_by_one(tokenizer: PreTrainedTokenizerBase) -> None:
    encoder = ChatEncoder(tokenizer, "test")
    batch = [c for name, c in conversations().items() if name != "tool"]
    together = encoder.encode(batch)
    for conversation, encoded in zip(batch, together, strict=True):
        (alone,) = encoder.encode([conversation])
        assert alone.input_ids.tolist() == encoded.input_ids.tolist()
        assert alone.labels.tolist() == encoded.labels.tolist()


def test_a_template_without_generation_markers_is_refused(model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = tokenizer.chat_template.replace("{%- generation %}", "").replace(
        "{%- endgeneration %}", ""
    )
    with pytest.raises(DataError, match=r"marks no assistant reply with \{% generation %\}"):
        ChatEncoder(tokenizer, "models/base")
