"""The generation loops with a scripted model, and HFGenerator's batching on a real tiny model.

The scripted model replies from a script and checks that each prompt is exactly the one
`prompts.step_messages` builds for the query so far: the loop's own prompt-building is tested,
not assumed. HFGenerator must give the same greedy replies however prompts are batched and
whether or not the schema prefix comes from its cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, LogitsProcessorList

from evaluation.tinyrun import TinyProject
from pipesql.evaluation.generate import (
    HFGenerator,
    Messages,
    Reply,
    Task,
    _Likelihood,
    generate_full,
    generate_incremental,
)
from pipesql.models import load_model
from pipesql.params.eval import GenerationParams
from pipesql.prompts import END_MARKER, full_messages, parse_step_answer, schema_text, step_messages
from pipesql.sources.raw import database_path

SCHEMA = "CREATE TABLE t (\n  a INTEGER\n);"


class ScriptedModel:
    """Replies to step k of a question with its script's k-th reply (the last one repeats).

    Every prompt must be step_messages(question, SCHEMA, the operators replied so far), each
    read from its reply by prompts.parse_step_answer.
    """

    def __init__(self, scripts: dict[str, list[str]]) -> None:
        self.scripts = scripts
        self.calls: list[int] = []  # prompts per call
        self.ops: dict[str, list[str]] = {q: [] for q in scripts}

    def __call__(self, prompts: Sequence[Messages], max_new_tokens: int) -> list[str]:
        self.calls.append(len(prompts))
        replies = []
        for messages in prompts:
            question = messages[1]["content"].split("\n")[0].removeprefix("Question: ")
            ops = self.ops[question]
            assert messages == step_messages(question, SCHEMA, ops)
            script = self.scripts[question]
            reply = script[min(len(ops), len(script) - 1)]
            try:
                op = parse_step_answer(reply)
            except ValueError:
                op = None
            if op is not None:
                ops.append(op)
            replies.append(reply)
        return replies


def _tasks(*questions: str) -> list[Task]:
    return [Task(q, SCHEMA) for q in questions]


def test_each_step_asks_every_open_query_at_once() -> None:
    model = ScriptedModel({
        "one": ["FROM t", END_MARKER],
        "three": ["FROM t", "|> WHERE a > 1", "SELECT a", END_MARKER],
        "none": [END_MARKER],
    })
    out = generate_incremental(_tasks("one", "three", "none"), model, max_steps=10, max_new_tokens=8, progress=False)
    assert [g.query for g in out] == ["FROM t", "FROM t\n|> WHERE a > 1\n|> SELECT a", ""]
    assert [(g.steps, g.finished, g.error) for g in out] == [(2, True, None), (4, True, None), (1, True, None)]
    assert model.calls == [3, 2, 1, 1]  # queries leave the batch as they end


def test_the_step_cap_stops_a_query_that_never_ends() -> None:
    model = ScriptedModel({"loop": ["FROM t", "WHERE a > 1"], "ends": ["FROM t", END_MARKER]})
    out = generate_incremental(_tasks("loop", "ends"), model, max_steps=4, max_new_tokens=8, progress=False)
    assert out[0].query == "FROM t\n|> WHERE a > 1\n|> WHERE a > 1\n|> WHERE a > 1"
    assert (out[0].steps, out[0].finished, out[0].error) == (4, False, None)
    assert (out[1].query, out[1].steps, out[1].finished) == ("FROM t", 2, True)
    assert model.calls == [2, 2, 1, 1]


def test_an_unreadable_step_ends_the_query_with_its_error() -> None:
    model = ScriptedModel({"blank": ["FROM t", ""], "junk": ["FROM t", "FROB a", "SELECT a"]})
    blank, junk = generate_incremental(_tasks("blank", "junk"), model, 10, 8, progress=False)
    assert (blank.query, blank.finished, blank.steps) == ("FROM t", False, 2)
    assert "step 1: no operator" in blank.error
    assert (junk.query, junk.finished, junk.steps) == ("FROM t\n|> FROB a", False, 2)
    assert "step 1: not a pipe operator" in junk.error


def test_a_fenced_step_is_read_as_its_operator() -> None:
    model = ScriptedModel({"fenced": ["Think first.\n\n```sql\nFROM t\n```", END_MARKER]})
    (out,) = generate_incremental(_tasks("fenced"), model, 10, 8, progress=False)
    assert (out.query, out.finished) == ("FROM t", True)


def test_the_full_protocol_reads_the_sql_block() -> None:
    replies = {"done": "```sql\nFROM t\n|> SELECT a\n```", "cut": "```sql\nFROM t\n|> SEL"}

    def model(prompts: Sequence[Messages], max_new_tokens: int) -> list[str]:
        questions = [m[1]["content"].removeprefix("Question: ") for m in prompts]
        assert prompts == [full_messages(q, SCHEMA) for q in questions]
        return [replies[q] for q in questions]

    done, cut = generate_full(_tasks("done", "cut"), model, 64)
    assert (done.query, done.finished, done.steps) == ("FROM t\n|> SELECT a", True, 1)
    assert (cut.query, cut.finished) == ("```sql\nFROM t\n|> SEL", False)


def test_a_querys_log_likelihood_sums_its_steps() -> None:
    model = ScriptedModel({"q": [Reply("FROM t", -1.25), Reply("WHERE a > 1", -0.5), Reply(END_MARKER, -0.25)]})
    (out,) = generate_incremental(_tasks("q"), model, max_steps=5, max_new_tokens=8, progress=False)
    assert (out.query, out.finished, out.logprob) == ("FROM t\n|> WHERE a > 1", True, -2.0)
    (plain,) = generate_full(_tasks("q"), lambda prompts, n: ["```sql\nFROM t\n```"], 64)
    assert plain.logprob == 0.0  # a generator that does not measure it


# ---------------------------------------------------------------- HFGenerator on a tiny model


@pytest.fixture(scope="module")
def prompts(project: TinyProject) -> list[Messages]:
    """Step prompts of every length on both databases, as the loop would send them."""
    tokenizer = AutoTokenizer.from_pretrained(project.base)
    schemas = {db: schema_text(database_path(project.raw, db), project.tokenize_params, tokenizer)
               for db in ("concert", "zoo")}
    ops = ["FROM singer", "WHERE country = 'France'", "SELECT name"]
    return [
        step_messages(question, schemas[db], ops[:k])
        for k in range(len(ops) + 1)
        for db, question in (("concert", "Names of singers from France?"), ("zoo", "How many cats?"))
    ]


@pytest.fixture(scope="module")
def lora(project: TinyProject, random_lora: Path):
    return load_model(project.base, random_lora, "fp32")


def _replies(lora, prompts: list[Messages], **settings) -> tuple[list[str], HFGenerator]:
    model, tokenizer = lora
    generator = HFGenerator(model, tokenizer, GenerationParams(**settings), progress=False)
    return generator(prompts, 12), generator


def test_batching_and_the_prefix_cache_change_no_reply(lora, prompts: list[Messages]) -> None:
    """Every way of batching gives what plain generate() gives one prompt at a time."""
    model, tokenizer = lora
    reference = []
    for messages in prompts:
        inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                               return_dict=True)
        output = model.generate(**inputs, max_new_tokens=12, do_sample=False,
                                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        reference.append(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    assert any(reference)  # the random adapter says something
    plain_single, plain = _replies(lora, prompts, batch_size=1, prefix_cache=False)
    plain_batched, _ = _replies(lora, prompts, batch_size=5, prefix_cache=False)
    cached_single, _ = _replies(lora, prompts, batch_size=1, prefix_cache=True)
    cached_batched, cached = _replies(lora, prompts, batch_size=5, prefix_cache=True)
    assert plain_single == plain_batched == cached_single == cached_batched == reference
    assert (plain.cached_prefixes, cached.cached_prefixes) == (0, 2)  # one per database


def test_beam_search_with_the_prefix_cache(lora, prompts: list[Messages]) -> None:
    reference, _ = _replies(lora, prompts[:4], batch_size=4, prefix_cache=False, num_beams=3)
    cached, _ = _replies(lora, prompts[:4], batch_size=4, prefix_cache=True, num_beams=3)
    assert cached == reference


def test_sampling_is_seeded(lora, prompts: list[Messages]) -> None:
    settings = {"do_sample": True, "temperature": 1.5, "top_k": 50, "seed": 7}
    first, _ = _replies(lora, prompts[:3], **settings)
    again, _ = _replies(lora, prompts[:3], **settings)
    greedy, _ = _replies(lora, prompts[:3])
    assert first == again
    assert first != greedy


def test_replies_stop_at_the_token_budget(lora, prompts: list[Messages], monkeypatch: pytest.MonkeyPatch) -> None:
    model, tokenizer = lora
    generate, new_tokens = model.generate, []

    def counting(**kwargs):
        output = generate(**kwargs)
        new_tokens.append(output.shape[1] - kwargs["input_ids"].shape[1])
        return output

    monkeypatch.setattr(model, "generate", counting)
    HFGenerator(model, tokenizer, GenerationParams(batch_size=3), progress=False)(prompts, 3)
    assert len(new_tokens) == 3  # 8 prompts in batches of 3
    assert max(new_tokens) <= 3


def test_sampled_replies_carry_the_models_own_log_likelihood(lora, prompts: list[Messages]) -> None:
    """_Likelihood against the raw logits generate() returns: same sum, up to the end of turn."""
    model, tokenizer = lora
    inputs = tokenizer.apply_chat_template(prompts[0], add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    width, eos = inputs["input_ids"].shape[1], tokenizer.eos_token_id
    likelihood = _Likelihood(width, [eos])
    torch.manual_seed(0)
    out = model.generate(**inputs, max_new_tokens=12, do_sample=True, temperature=1.5, top_k=50,
                         eos_token_id=eos, pad_token_id=tokenizer.pad_token_id, output_logits=True,
                         return_dict_in_generate=True, logits_processor=LogitsProcessorList([likelihood]))
    expected = 0.0
    for t, logits in enumerate(out.logits):
        token = int(out.sequences[0, width + t])
        expected += float(torch.log_softmax(logits[0].float(), -1)[token])
        if token == eos:
            break
    assert likelihood.finish(out.sequences) == [pytest.approx(expected, abs=1e-4)]
    sampled, _ = _replies(lora, prompts[:3], do_sample=True, seed=7)
    assert all(isinstance(r, Reply) and r.logprob < 0 for r in sampled)
    greedy, _ = _replies(lora, prompts[:3])
    assert not any(isinstance(r, Reply) for r in greedy)
