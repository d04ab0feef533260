"""A small Qwen2 built from nothing but the raw data: what runs where no weights can be downloaded.

The tokenizer is a byte-level BPE trained on the questions, gold SQL and schemas the model will
see, so a vocabulary of a few thousand tokens covers table and column names in one or two pieces.
The weights are random (seeded): the pipeline's training stage teaches this model everything.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer
from transformers.utils.chat_template_utils import render_jinja_template

from pipesql.basemodel.chat_template import chatml_template
from pipesql.io import DataError
from pipesql.params.download import ScratchModelParams
from pipesql.prompts import TOOLS, ToolCall, call_message, template_texts, tool_messages
from pipesql.sources.raw import database_ids, database_path, read_examples

PAD_TOKEN = "<|endoftext|>"   # never the EOS: padding is masked from the loss, so a model whose
EOS_TOKEN = "<|im_end|>"      # pad is its EOS never sees a labelled end of turn and never stops
SPECIAL_TOKENS = (PAD_TOKEN, "<|im_start|>", EOS_TOKEN)
# Qwen2.5's tool tags are single ordinary tokens: decoding keeps them, so a tool call can be parsed
TOOL_TOKENS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")

# Gold SQL is standard SQL, so the corpus holds no pipe syntax; yet every training target will.
# These lines stand in for it, once per example, so `|>` and its operators get their own merges.
PIPE_OPERATORS = (
    "SELECT", "EXTEND", "SET", "DROP", "RENAME", "AS", "WHERE", "AGGREGATE", "GROUP BY",
    "ORDER BY", "LIMIT", "OFFSET", "DISTINCT", "JOIN", "LEFT JOIN", "CROSS JOIN", "UNION ALL",
    "INTERSECT DISTINCT", "EXCEPT DISTINCT", "WINDOW", "PIVOT", "UNPIVOT", "TABLESAMPLE", "CALL",
)
PIPE_SEED = tuple(f"FROM t\n|> {op} x |> {op}" for op in PIPE_OPERATORS)
# One call of each tool, for the JSON around a call's arguments
_TOOL_CALLS = (
    ToolCall("list_tables", {}),
    ToolCall("describe_table", {"table": "t"}),
    ToolCall("sample_rows", {"table": "t", "limit": 3}),
    ToolCall("execute_pipe_sql", {"query": "FROM t"}),
)


def build_scratch_model(params: ScratchModelParams, raw_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Write tokenizer, chat template, config and seeded weights; return corpus figures."""
    texts, n_databases = tokenizer_corpus(Path(raw_dir))
    tokenizer = train_tokenizer(texts, params.vocab_size, params.max_position_embeddings)
    config = qwen2_config(params, tokenizer)
    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
        torch.manual_seed(params.seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )
    model.save_pretrained(out_dir)  # safetensors
    tokenizer.save_pretrained(out_dir)
    return {"tokenizer_corpus_texts": len(texts), "tokenizer_corpus_databases": n_databases}


def tokenizer_corpus(raw_dir: Path) -> tuple[list[str], int]:
    """Questions, evidence and gold SQL of every example, each database's DDL, the pipe seed and
    the prompts' fixed wording (both repeated per example, as often as the text they frame)."""
    examples = [ex for _, ex in read_examples(raw_dir)]
    texts = [t for ex in examples for t in (ex.question, ex.evidence, ex.gold_sql) if t]
    db_ids = database_ids(raw_dir)
    texts += [_schema_ddl(database_path(raw_dir, db_id)) for db_id in db_ids]
    texts += [*PIPE_SEED, *template_texts(), tool_texts()] * max(1, len(examples))
    return texts, len(db_ids)


def tool_texts() -> str:
    """A tool conversation's system turn (the TOOLS definitions, as the chat template writes them)
    and one call of each tool, rendered by the scratch model's own template.

    Every tool sample and agent prompt opens with that turn; a tokenizer that never saw it
    spells it in 745 tokens instead of about 380 (measured on the offline default).
    """
    messages = [tool_messages("")[0]] + [call_message([call]) for call in _TOOL_CALLS]
    rendered, _ = render_jinja_template([messages], tools=TOOLS, chat_template=chatml_template())
    return rendered[0]


def train_tokenizer(texts: list[str], vocab_size: int, max_length: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE (any text encodes, nothing is unknown) with ChatML special tokens.

    The trainer gives the special tokens ids 0-2; the tool tags are appended after training, so
    the final vocabulary is exactly vocab_size when the corpus has enough pairs to merge.
    """
    tok = Tokenizer(models.BPE())
    # The directory loads as a Qwen2Tokenizer (config.json says qwen2), which brings its own
    # normalizer and pre-tokenizer: the merges are learnt on the pieces those make, or merges
    # learnt on other pieces (`Ġ1901`, where Qwen2 splits digits) would never apply.
    runtime = Qwen2Tokenizer().backend_tokenizer
    tok.normalizer, tok.pre_tokenizer = runtime.normalizer, runtime.pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(TOOL_TOKENS),
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TOOL_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,  # as Qwen: ChatML marks turns, not documents
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        extra_special_tokens=["<|im_start|>"],
        model_max_length=max_length,
        clean_up_tokenization_spaces=False,  # it turns `a , b` into `a, b`: SQL must round-trip
        chat_template=chatml_template(),
    )


def qwen2_config(params: ScratchModelParams, tokenizer: PreTrainedTokenizerFast) -> Qwen2Config:
    """Field by field, so a renamed upstream argument breaks one line here, not silently."""
    pad_id = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=params.hidden_size,
        intermediate_size=params.intermediate_size,
        num_hidden_layers=params.num_hidden_layers,
        num_attention_heads=params.num_attention_heads,
        num_key_value_heads=params.num_key_value_heads,
        max_position_embeddings=params.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": params.rope_theta},
        tie_word_embeddings=params.tie_word_embeddings,
        bos_token_id=pad_id,  # as Qwen2.5: <|endoftext|> starts a bare generate()
        eos_token_id=tokenizer.convert_tokens_to_ids(EOS_TOKEN),
        pad_token_id=pad_id,
        dtype="float32",
    )


def _schema_ddl(db_path: Path) -> str:
    """CREATE statements in creation order: the schema text prompts are built from."""
    if not db_path.is_file():
        raise DataError(f"{db_path}: database file not found")
    try:
        with closing(sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            rows = conn.execute(
                "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid"
            ).fetchall()
    except sqlite3.DatabaseError as e:
        raise DataError(f"{db_path}: cannot read the schema: {e}") from None
    return ";\n".join(sql for (sql,) in rows) + ";"
