"""The base model directory: scratch build, chat-template masks, hub and local sources.

Tiny configs keep the file well under a minute; the hub is never contacted (snapshot_download
is replaced by a function that "downloads" a directory built here).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from tokenizers import Tokenizer
import torch
from pydantic import ValidationError
from transformers import AutoModelForCausalLM, AutoTokenizer

from pipesql.basemodel import RECORD_FILE, count_parameters, prepare_base_model, pretrained
from pipesql.basemodel.chat_template import chatml_template, has_generation_markers
from pipesql.io import DataError
from pipesql.params.download import ModelParams

TINY = {
    "vocab_size": 400,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
}
QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
RUN_SQL = {
    "type": "function",
    "function": {
        "name": "run_sql",
        "description": "Run a read-only query",
        "parameters": {"type": "object", "properties": {"sql": {"type": "string"}}},
    },
}


def scratch_params(**overrides: Any) -> ModelParams:
    return ModelParams.model_validate({"source": "scratch", "scratch": TINY | overrides})


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("raw")
    db = raw / "database" / "concert" / "concert.sqlite"
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db)
    conn.execute(
        'CREATE TABLE singer (singer_id INT PRIMARY KEY, name TEXT, "Country" TEXT, age INT)'
    )
    conn.execute("CREATE TABLE concert (concert_id INT PRIMARY KEY, singer_id INT, year INT)")
    conn.close()
    pairs = [
        ("How many singers are there?", "SELECT COUNT(*) FROM singer"),
        ("Names of singers from France?", "SELECT name FROM singer WHERE \"Country\" = 'France'"),
        ("Average age per country?", 'SELECT "Country", AVG(age) FROM singer GROUP BY "Country"'),
        ("Concerts after 2014?", "SELECT COUNT(*) FROM concert WHERE year > 2014"),
    ]
    lines = [
        json.dumps({"id": f"q{i}", "db_id": "concert", "question": q, "gold_sql": sql})
        for i, (q, sql) in enumerate(pairs * 3)
    ]
    (raw / "examples.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return raw


@pytest.fixture(scope="module")
def scratch_dir(raw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scratch") / "base"
    prepare_base_model(scratch_params(), raw_dir, out)
    return out


@pytest.fixture(scope="module")
def tokenizer(scratch_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(scratch_dir)


# ---------------------------------------------------------------- scratch


def test_scratch_model_loads_and_runs_forward(scratch_dir: Path, tokenizer: Any) -> None:
    model = AutoModelForCausalLM.from_pretrained(scratch_dir)
    batch = tokenizer(["FROM singer |> SELECT name"], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (1, batch["input_ids"].shape[1], len(tokenizer))
    assert torch.isfinite(logits).all()
    assert count_parameters(scratch_dir) == model.num_parameters()  # tied embeddings counted once


def test_scratch_record_and_metrics(scratch_dir: Path) -> None:
    record = json.loads((scratch_dir / RECORD_FILE).read_text(encoding="utf-8"))
    assert record["source"] == "scratch"
    assert record["vocab_size"] == TINY["vocab_size"]
    assert record["tokenizer_corpus_databases"] == 1
    assert record["parameters"] > 0


def test_pad_is_not_eos(scratch_dir: Path, tokenizer: Any) -> None:
    """Padding is masked from the loss: a pad that is also the EOS would never be learnt."""
    model = AutoModelForCausalLM.from_pretrained(scratch_dir)
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"
    for config in (model.config, model.generation_config):
        assert config.eos_token_id == tokenizer.eos_token_id
        assert config.pad_token_id == tokenizer.pad_token_id != tokenizer.eos_token_id


@pytest.mark.parametrize(
    "sql",
    [
        "FROM singer |> WHERE name = 'O''Brien' |> AGGREGATE COUNT(*) AS n GROUP BY \"Country\"",
        'SELECT "weird ""col""" FROM t WHERE x <> \'a\\b\' AND y >= 2.5e-3',
        "FROM concert\n|> JOIN singer USING (singer_id)\n|> ORDER BY year DESC\n|> LIMIT 3",
        "SELECT 'Zoë', '東京', '🎵'  -- comment\n\tFROM t;",
    ],
)
def test_tokenizer_round_trips_sql(tokenizer: Any, sql: str) -> None:
    ids = tokenizer(sql, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == sql


def test_the_saved_tokenizer_splits_text_as_its_merges_were_learnt(scratch_dir: Path, tokenizer: Any) -> None:
    """The directory loads as a Qwen2Tokenizer, with Qwen2's own pre-tokenizer: the BPE must have
    been trained on the same pieces (with GPT-2's, merges such as `Ġ1901` never applied)."""
    trained = Tokenizer.from_file(str(scratch_dir / "tokenizer.json"))
    loaded = tokenizer.backend_tokenizer
    text = "Singers born after 1901, in 'Austin' or Zoë's town?\nFROM singer |> WHERE a.b >= 2.5"
    assert loaded.pre_tokenizer.pre_tokenize_str(text) == trained.pre_tokenizer.pre_tokenize_str(text)
    assert loaded.normalizer.normalize_str(text) == trained.normalizer.normalize_str(text)


def test_pipe_operator_is_one_token(tokenizer: Any) -> None:
    """The seed corpus gives `|>` merges although no gold SQL contains it."""
    assert "Ġ|>" in tokenizer.tokenize("FROM singer |> SELECT name")


def test_tool_tags_are_single_tokens_kept_by_decode(tokenizer: Any) -> None:
    ids = tokenizer("<tool_call>\n{}\n</tool_call>", add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids)[0] == "<tool_call>"
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<tool_call>\n{}\n</tool_call>"


def test_scratch_build_is_byte_identical(raw_dir: Path, tmp_path: Path) -> None:
    """DVC hashes models/base: an unchanged rebuild must not invalidate every stage after it."""
    digests = []
    for name in ("a", "b"):
        prepare_base_model(scratch_params(), raw_dir, tmp_path / name)
        digests.append(_sha256_tree(tmp_path / name))
    assert digests[0] == digests[1]
    assert {"model.safetensors", "tokenizer.json", "chat_template.jinja", RECORD_FILE} <= set(
        digests[0]
    )


def test_scratch_seed_changes_weights_only(raw_dir: Path, tmp_path: Path) -> None:
    prepare_base_model(scratch_params(seed=0), raw_dir, tmp_path / "a")
    prepare_base_model(scratch_params(seed=1), raw_dir, tmp_path / "b")
    a, b = _sha256_tree(tmp_path / "a"), _sha256_tree(tmp_path / "b")
    assert a["tokenizer.json"] == b["tokenizer.json"]
    assert a["model.safetensors"] != b["model.safetensors"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("num_attention_heads", 5, "hidden_size must be a multiple of num_attention_heads"),
        ("num_key_value_heads", 3, "num_attention_heads must be a multiple of num_key_value_heads"),
        ("vocab_size", 100, "greater than or equal to 300"),
    ],
)
def test_scratch_params_are_validated(field: str, value: int, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        scratch_params(**{field: value})


def test_missing_database_file_is_named(raw_dir: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(raw_dir, raw)
    (raw / "database" / "empty").mkdir()
    with pytest.raises(DataError, match=r"database/empty/empty\.sqlite: database file not found"):
        prepare_base_model(scratch_params(), raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- chat template

ASSISTANT_MASK_CASES = [
    pytest.param(
        [
            {"role": "system", "content": "Write pipe SQL."},
            {"role": "user", "content": "How many singers?"},
            {"role": "assistant", "content": "FROM singer"},
            {"role": "user", "content": "Next step."},
            {"role": "assistant", "content": "|> AGGREGATE COUNT(*) AS n"},
        ],
        None,
        ["FROM singer<|im_end|>", "|> AGGREGATE COUNT(*) AS n<|im_end|>"],
        id="two-turns",
    ),
    pytest.param(
        [
            {"role": "user", "content": "How many singers?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "type": "function",
                        "function": {"name": "run_sql", "arguments": {"sql": "FROM singer"}},
                    }
                ],
            },
            {"role": "tool", "content": "[[6]]"},
            {"role": "assistant", "content": "FROM singer |> AGGREGATE COUNT(*)"},
        ],
        [RUN_SQL],
        [
            '<tool_call>\n{"name": "run_sql", "arguments": {"sql": "FROM singer"}}\n'
            "</tool_call><|im_end|>",
            "FROM singer |> AGGREGATE COUNT(*)<|im_end|>",
        ],
        id="tool-call",
    ),
]


@pytest.mark.parametrize(("messages", "tools", "expected"), ASSISTANT_MASK_CASES)
def test_assistant_mask_is_exactly_the_replies(
    tokenizer: Any, messages: list[dict], tools: list[dict] | None, expected: list[str]
) -> None:
    """Replies and their <|im_end|> are labelled; headers, prompts and tool results are not."""
    out = tokenizer.apply_chat_template(
        messages, tools=tools, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    assert _masked_spans(tokenizer, out["input_ids"], out["assistant_masks"]) == expected


def test_tools_render_in_qwen25_format(tokenizer: Any) -> None:
    messages = [
        {"role": "user", "content": "How many?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {"type": "function", "function": {"name": "run_sql", "arguments": '{"sql": "x"}'}}
            ],
        },
        {"role": "tool", "content": "[[1]]"},
        {"role": "tool", "content": "[[2]]"},
    ]
    text = tokenizer.apply_chat_template(
        messages, tools=[RUN_SQL], tokenize=False, add_generation_prompt=True
    )
    expected = (
        "<|im_start|>system\n# Tools\n\nYou may call one or more functions to assist with the user"
        " query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n"
        "<tools>\n"
        + json.dumps(RUN_SQL)
        + "\n</tools>\n\nFor each function call, return a json object with function name and"
        " arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\nHow many?<|im_end|>\n"
        "<|im_start|>assistant\nChecking.\n"
        '<tool_call>\n{"name": "run_sql", "arguments": {"sql": "x"}}\n'
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\n[[1]]\n</tool_response>\n<tool_response>\n[[2]]\n"
        "</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert text == expected


QWEN_PARITY_CASES = [
    pytest.param(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "FROM t"}],
        None,
        id="plain",
    ),
    pytest.param(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}],
        [RUN_SQL],
        id="system+tools",
    ),
    pytest.param([{"role": "user", "content": "hi"}], [RUN_SQL], id="default-system+tools"),
    pytest.param(ASSISTANT_MASK_CASES[1].values[0], [RUN_SQL], id="tool-call"),
]


@pytest.mark.parametrize(("messages", "tools"), QWEN_PARITY_CASES)
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_template_renders_as_qwen25(
    tokenizer: Any, messages: list[dict], tools: list[dict] | None, add_generation_prompt: bool
) -> None:
    """A hub Qwen2.5 given our template must see the very prompts it was tuned on."""
    qwen_path = files("trl") / "chat_templates" / "qwen2_5.jinja"
    if not qwen_path.is_file():
        pytest.skip("trl does not ship qwen2_5.jinja")
    kwargs = {"tools": tools, "tokenize": False, "add_generation_prompt": add_generation_prompt}
    theirs = tokenizer.apply_chat_template(messages, chat_template=qwen_path.read_text(), **kwargs)
    ours = tokenizer.apply_chat_template(
        messages, chat_template=chatml_template(QWEN_SYSTEM), **kwargs
    )
    assert ours == theirs


def test_template_rejects_unknown_roles(tokenizer: Any) -> None:
    with pytest.raises(Exception, match="unknown role: critic"):
        tokenizer.apply_chat_template([{"role": "critic", "content": "x"}], tokenize=False)


# ---------------------------------------------------------------- hub and local

# A Qwen-style ChatML template without generation markers, as hub repos ship them.
HUB_TEMPLATE = (
    "{%- if messages[0].role != 'system' %}{{- '<|im_start|>system\\n"
    + QWEN_SYSTEM
    + "<|im_end|>\\n' }}{%- endif %}"
    "{%- for m in messages %}"
    "{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@pytest.fixture
def hub_snapshot(scratch_dir: Path, tmp_path: Path) -> Path:
    """The scratch model laid out as a hub repo: template in tokenizer_config.json, extra files."""
    snapshot = tmp_path / "hub-cache" / "snapshot"
    shutil.copytree(scratch_dir, snapshot)
    (snapshot / "chat_template.jinja").unlink()
    (snapshot / RECORD_FILE).unlink()
    config_path = snapshot / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config_path.write_text(json.dumps(config | {"chat_template": HUB_TEMPLATE}), encoding="utf-8")
    (snapshot / "README.md").write_text("# a model card\n", encoding="utf-8")
    return snapshot


def test_hub_fetches_pinned_files_and_installs_marked_template(
    hub_snapshot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict] = []

    def fake_snapshot_download(repo_id: str, **kwargs: Any) -> str:
        calls.append({"repo_id": repo_id, **kwargs})
        return str(hub_snapshot)

    monkeypatch.setattr(pretrained, "snapshot_download", fake_snapshot_download)
    params = ModelParams(source="hub", name="Qwen/Qwen2.5-Coder-1.5B-Instruct", revision="a" * 40)
    out = tmp_path / "base"
    metrics = prepare_base_model(params, tmp_path / "no-raw-needed", out)

    [call] = calls
    assert call["repo_id"] == "Qwen/Qwen2.5-Coder-1.5B-Instruct"
    assert call["revision"] == "a" * 40
    assert {"config.json", "*.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(
        call["allow_patterns"]
    )
    assert not (out / "README.md").exists()
    assert (out / "model.safetensors").samefile(
        hub_snapshot / "model.safetensors"
    )  # linked, not copied
    assert "chat_template" not in json.loads(
        (out / "tokenizer_config.json").read_text(encoding="utf-8")
    )
    assert "chat_template" in json.loads(
        (hub_snapshot / "tokenizer_config.json").read_text(encoding="utf-8")
    )
    assert metrics["chat_template_replaced"] is True
    assert metrics["name"] == "Qwen/Qwen2.5-Coder-1.5B-Instruct" and metrics["revision"] == "a" * 40
    assert json.loads((out / RECORD_FILE).read_text(encoding="utf-8")) == metrics

    tok = AutoTokenizer.from_pretrained(out)
    assert has_generation_markers(tok.chat_template)
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert text.startswith(
        f"<|im_start|>system\n{QWEN_SYSTEM}<|im_end|>\n"
    )  # the model's default kept


def test_hub_rejects_template_it_cannot_mark(
    hub_snapshot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = hub_snapshot / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["chat_template"] = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    monkeypatch.setattr(pretrained, "snapshot_download", lambda *a, **k: str(hub_snapshot))
    params = ModelParams(source="hub", name="org/model", revision="b" * 40)
    with pytest.raises(
        DataError, match=r"org/model@b+: the chat template needs \{% generation %\}"
    ):
        prepare_base_model(params, tmp_path, tmp_path / "base")
    assert not (tmp_path / "base").exists()


def test_local_model_is_copied_with_its_marked_template(scratch_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "base"
    metrics = prepare_base_model(ModelParams(source="local", path=str(scratch_dir)), tmp_path, out)
    assert metrics["chat_template_replaced"] is False
    assert metrics["path"] == str(scratch_dir)
    assert metrics["parameters"] == count_parameters(scratch_dir)
    assert not (out / "model.safetensors").samefile(scratch_dir / "model.safetensors")


@pytest.mark.parametrize(
    ("removed", "named"),
    [
        (["config.json"], "missing config.json"),
        (["model.safetensors"], r"missing weights \(\*\.safetensors\)"),
        (["tokenizer.json"], r"missing tokenizer \(tokenizer\.json"),
        (["config.json", "tokenizer.json"], "missing config.json, tokenizer"),
    ],
)
def test_local_model_names_missing_files(
    scratch_dir: Path, tmp_path: Path, removed: list[str], named: str
) -> None:
    local = tmp_path / "local"
    shutil.copytree(scratch_dir, local)
    for name in removed:
        (local / name).unlink()
    with pytest.raises(DataError, match=f"{local}: not a usable model directory: {named}"):
        prepare_base_model(
            ModelParams(source="local", path=str(local)), tmp_path, tmp_path / "base"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local"]  # no output, no temp sibling


def test_local_model_names_missing_shard(scratch_dir: Path, tmp_path: Path) -> None:
    local = tmp_path / "local"
    shutil.copytree(scratch_dir, local)
    index = {
        "weight_map": {
            "a": "model-00001-of-00002.safetensors",
            "b": "model-00002-of-00002.safetensors",
        }
    }
    (local / "model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")
    with pytest.raises(
        DataError, match="missing model-00001-of-00002.safetensors, model-00002-of-00002"
    ):
        prepare_base_model(
            ModelParams(source="local", path=str(local)), tmp_path, tmp_path / "base"
        )


def test_local_model_directory_must_exist(tmp_path: Path) -> None:
    params = ModelParams(source="local", path=str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="nowhere: model directory not found"):
        prepare_base_model(params, tmp_path, tmp_path / "base")


def test_marked_template_that_leaks_the_prompt_is_rejected(
    scratch_dir: Path, tmp_path: Path
) -> None:
    """Markers around the whole conversation would train on prompts: caught before training."""
    local = tmp_path / "local"
    shutil.copytree(scratch_dir, local)
    template = (local / "chat_template.jinja").read_text(encoding="utf-8")
    (local / "chat_template.jinja").write_text(
        "{% generation %}"
        + template.replace("{%- generation %}", "").replace("{%- endgeneration %}", "")
        + "{% endgeneration %}",
        encoding="utf-8",
    )
    with pytest.raises(DataError, match="covers '<\\|im_start\\|>user"):
        prepare_base_model(ModelParams(source="local", path=str(local)), tmp_path, tmp_path / "b")


# ---------------------------------------------------------------- helpers


def _sha256_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _masked_spans(tokenizer: Any, ids: list[int], mask: list[int]) -> list[str]:
    """Decode each run of masked tokens apart, so a leak between turns shows as its own span."""
    spans: list[list[int]] = []
    for i, (token, masked) in enumerate(zip(ids, mask, strict=True)):
        if masked:
            if i == 0 or not mask[i - 1]:
                spans.append([])
            spans[-1].append(token)
    return [tokenizer.decode(span) for span in spans]
