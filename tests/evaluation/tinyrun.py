"""A tiny project run through the real stages up to tokenize, and two adapters for its base.

    tiny_project(root)   raw data, golden pairs, a scratch base model, samples (seconds)
    random_adapter(...)  LoRA with random non-zero weights: merge and generation checks (a second)
    trained_adapter(...) LoRA trained until it answers the project's questions (tens of seconds,
                         so the tests that use it are marked slow)

Each is built once per test session into a shared folder (the functions are cached), whichever
test module asks first. The base is a 2-layer, 64-wide Qwen2 with a BPE tokenizer trained on the
project's texts. Training (plain AdamW, not the train stage) fits the incremental samples of
every split, test included: these tests check eval, merge and predict on a model that knows
the answers, not how well a model generalises.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import load_from_disk
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoTokenizer, GenerationConfig, Qwen2ForCausalLM

from pipesql.basemodel.scratch import PIPE_SEED, qwen2_config, train_tokenizer
from pipesql.golden import build_golden_pairs
from pipesql.params.download import ScratchModelParams
from pipesql.params.golden_pairs import GoldenPairsParams
from pipesql.params.tokenize import TokenizeParams
from pipesql.params.train import ALL_PROJECTIONS
from pipesql.prompts.contract import copy_contract
from pipesql.samples import build_samples
from pipesql.sources.raw import Example, read_examples, write_raw

DATABASES = {
    "concert": """
        CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INT);
        CREATE TABLE concert (concert_id INTEGER PRIMARY KEY, title TEXT, year INT,
                              singer_id INT REFERENCES singer(singer_id));
        INSERT INTO singer VALUES (1, 'Anna', 'France', 31), (2, 'Ben', 'Japan', 45),
                                  (3, 'Chloe', 'France', 27), (4, 'Dara', 'Chile', 27);
        INSERT INTO concert VALUES (1, 'Spring', 2014, 1), (2, 'Summer', 2015, 1), (3, 'Fall', 2013, 2);
    """,
    "zoo": """
        CREATE TABLE animal (animal_id INTEGER PRIMARY KEY, species TEXT, legs INT);
        INSERT INTO animal VALUES (1, 'cat', 4), (2, 'owl', 2), (3, 'ant', 6), (4, 'dog', 4);
    """,
}
# (db_id, question, gold SQL, split, difficulty); split.by: source keeps these splits as written
EXAMPLES = [
    ("concert", "How many singers are there?", "SELECT COUNT(*) FROM singer", "test", "easy"),
    ("concert", "What are the names of singers from France?",
     "SELECT name FROM singer WHERE country = 'France'", "test", "easy"),
    ("zoo", "List the species by number of legs, most first.",
     "SELECT species FROM animal ORDER BY legs DESC", "test", "medium"),
    ("zoo", "How many animals have four legs?", "SELECT COUNT(*) FROM animal WHERE legs = 4", "test", "medium"),
    ("concert", "How many singers are there in each country?",
     "SELECT country, COUNT(*) FROM singer GROUP BY country", "train", "medium"),
    ("concert", "List the titles of concerts ordered by year.",
     "SELECT title FROM concert ORDER BY year", "train", "medium"),
    ("zoo", "What is the average number of legs?", "SELECT AVG(legs) FROM animal", "train", "easy"),
    ("zoo", "Which species have more than two legs?", "SELECT species FROM animal WHERE legs > 2", "dev", "easy"),
]
TINY_MODEL = ScratchModelParams(
    vocab_size=600, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
)
TOKENIZE = {
    "split": {"by": "source"}, "mode": "incremental", "tool_ratio": 0.0, "num_proc": 1,
    "schema": {"format": "compact", "example_values": 0},  # a schema as real data has; short
}
EPOCHS = 60  # batches of 8 at lr 5e-3: the loss is ~0.02 by then


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread: tiny models gain nothing from a second, and on a shared two-core
    machine every op that waits for a busy second core stalls (five training epochs took 1.2 s
    on one thread, 3 to 64 s on two, while other work ran)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class TinyProject:
    root: Path
    raw: Path
    golden: Path
    samples: Path
    base: Path
    tokenize_params: TokenizeParams


@functools.cache
def tiny_project(root: Path) -> TinyProject:
    """Every stage's output up to the samples, under root (built on the first call only)."""
    raw, golden, samples, base = root / "raw", root / "golden", root / "samples", root / "models" / "base"
    tokenize_params = TokenizeParams.model_validate(TOKENIZE)
    write_databases(raw)
    result = build_golden_pairs((ex for _, ex in read_examples(raw)), raw, GoldenPairsParams(workers=1))
    assert all(o.is_kept for o in result.outcomes), [o.error for o in result.outcomes if not o.is_kept]
    result.write(golden)
    build_base(base)
    build_samples(golden, raw, base, tokenize_params, samples)
    return TinyProject(root, raw, golden, samples, base, tokenize_params)


def write_databases(raw: Path) -> None:
    """The two databases and the examples, through the raw layout's own writer."""
    scripts = raw.parent / "scripts"
    paths = {}
    for db_id, script in DATABASES.items():
        path = scripts / f"{db_id}.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path) as conn:
            conn.executescript(script)
        conn.close()
        paths[db_id] = path
    examples = [
        Example(f"ex-{i}", db_id, question, sql, split=split, difficulty=difficulty)
        for i, (db_id, question, sql, split, difficulty) in enumerate(EXAMPLES)
    ]
    write_raw(raw, examples, paths)


def build_base(out: Path, shape: ScratchModelParams = TINY_MODEL) -> None:
    """A seeded scratch Qwen2 of this shape, with a tokenizer trained on the project's texts."""
    texts = [script for script in DATABASES.values()] + [f"{q} {sql}" for _, q, sql, *_ in EXAMPLES]
    tokenizer = train_tokenizer(texts * 20 + list(PIPE_SEED) * 20, shape.vocab_size, 1024)
    config = qwen2_config(shape, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def lora_model(base: Path) -> PeftModel:
    """LoRA on every projection plus the embeddings trained in full (a scratch model's are
    random), as the default pipeline trains the scratch model; tied input and output embeddings."""
    config = LoraConfig(
        task_type="CAUSAL_LM", r=16, lora_alpha=32, lora_dropout=0.0,
        target_modules=list(ALL_PROJECTIONS), modules_to_save=["embed_tokens", "lm_head"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return get_peft_model(Qwen2ForCausalLM.from_pretrained(base), config)


@functools.cache
def random_adapter(project: TinyProject, out: Path) -> Path:
    """An adapter whose LoRA B matrices are random (PEFT starts them at zero, a no-op adapter),
    carrying the project's prompt contract as the train stage's adapters do."""
    base = project.base
    model = lora_model(base)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(1)
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    copy_contract(project.samples, out)
    return out


@functools.cache
def trained_adapter(project: TinyProject, out: Path) -> Path:
    """Memorises every sample: AdamW, batches of 8 samples of like length, EPOCHS passes."""
    tokenizer = AutoTokenizer.from_pretrained(project.base)
    model = lora_model(project.base)
    splits = load_from_disk(str(project.samples))
    rows = [r for name in ("train", "dev", "test") for r in splits[name].select_columns(["input_ids", "labels"])]
    rows.sort(key=lambda r: len(r["input_ids"]))
    batches = [_batch(rows[i : i + 8], tokenizer.pad_token_id) for i in range(0, len(rows), 8)]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    model.train()
    with one_thread():
        for _ in range(EPOCHS):
            for ids, mask, labels in batches:
                model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
                optimizer.step()
                optimizer.zero_grad()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    copy_contract(project.samples, out)
    return out


def _batch(rows: list[dict], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad_id)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
        labels[i, : len(r["labels"])] = torch.tensor(r["labels"])
        mask[i, : len(r["input_ids"])] = 1
    return ids, mask, labels
