"""Batched generation of pipe SQL: operator by operator (incremental) or whole (full).

The loops are written against `Generate`, a function from a batch of chat prompts to one reply
each, so a test can drive them with a scripted model; `HFGenerator` is the real one. Prompts come
only from `pipesql.prompts`, as the training samples did, and each loop asks about every query
still open at once: the incremental loop sends all unfinished queries each step (they finish at
different steps), and the generator cuts them into batches.

`HFGenerator` batches with left padding and the KV cache. Every prompt opens with its database's
system turn (instructions and schema, most of its tokens), so with `prefix_cache` the keys and
values of each system turn are computed once and reused by every question and step on that
database. A batch row then reads

    [pad][system turn][pad][question, query so far, assistant header][generated tokens ...]
    |<----- cached ----->|<-------------------- computed by generate() ------------------>|

with the pads masked out. generate() derives position ids from the attention mask (a running
count of unmasked tokens), so each row's positions run on across its gap exactly as they would
in the unpadded prompt. The cache is preallocated for the prompt and the token budget: a growing
cache copies itself whole at every generated token, a quarter of the time of a batched step on
the CPU.

When it samples, `HFGenerator` also returns each reply's log-likelihood under the model (a
`Reply`, a str that carries `logprob`): self-consistency breaks a tie between candidates by it.
The loops sum it over a query's steps into `Generation.logprob`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm import tqdm
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StaticCache,
)

from pipesql.params.eval import GenerationParams
from pipesql.prompts import format_query, full_messages, parse_full_answer, parse_step_answer, step_messages
from pipesql.sql.pipe import operator_name

Messages = list[dict[str, Any]]  # chat messages; a tool conversation's carry tool_calls
# A batch of prompts and a token budget -> one reply per prompt, in order.
Generate = Callable[[Sequence[Messages], int], list[str]]


@dataclass(frozen=True)
class Task:
    """One question, with its database's schema text as `prompts.schema_text` renders it."""

    question: str
    schema: str
    evidence: str | None = None


@dataclass(frozen=True)
class Generation:
    query: str            # the pipe SQL generated: operators one a line, as format_query lays out
    steps: int            # generate calls spent on it
    finished: bool        # the model ended it (END, or a closed ```sql block); False: a cap cut it
    error: str | None = None  # a step no operator could be read from; the query stops there
    logprob: float = 0.0  # the replies' summed log-likelihood, when the generator measures it


class Reply(str):
    """A reply with its log-likelihood under the model (natural log, summed over its tokens)."""

    logprob: float

    def __new__(cls, text: str, logprob: float) -> Reply:
        reply = super().__new__(cls, text)
        reply.logprob = logprob
        return reply


def logprob_of(reply: str) -> float:
    """A Reply's log-likelihood; 0.0 for a plain str (a scripted or greedy generator's)."""
    return reply.logprob if isinstance(reply, Reply) else 0.0


def generate_incremental(
    tasks: Sequence[Task], generate: Generate, max_steps: int, max_new_tokens: int, progress: bool = True
) -> list[Generation]:
    """Ask each task for its next operator given the query so far, until END or max_steps calls.

    A reply that holds no operator, or whose operator is not a pipe operator, ends that query
    with an error: asking on after an unreadable step would only spend compute on a query that
    cannot parse. A query still going after max_steps calls is returned as it stands, unfinished.
    """
    ops: list[list[str]] = [[] for _ in tasks]
    logprobs = [0.0] * len(tasks)
    done: dict[int, Generation] = {}
    active = list(range(len(tasks)))
    with tqdm(total=len(tasks), desc="generate", unit="query", disable=not progress) as bar:
        for step in range(max_steps):
            if not active:
                break
            prompts = [step_messages(tasks[i].question, tasks[i].schema, ops[i], tasks[i].evidence) for i in active]
            replies = generate(prompts, max_new_tokens)
            still = []
            for i, reply in zip(active, replies, strict=True):
                logprobs[i] += logprob_of(reply)
                finished, error = _read_step(reply, step, ops[i])
                if finished or error:
                    done[i] = Generation(format_query(ops[i]), step + 1, finished, error, logprobs[i])
                    bar.update()
                else:
                    still.append(i)
            active = still
            bar.set_postfix(step=step + 1, open=len(active))
    for i in active:
        done[i] = Generation(format_query(ops[i]), max_steps, finished=False, logprob=logprobs[i])
    return [done[i] for i in range(len(tasks))]


def generate_full(
    tasks: Sequence[Task], generate: Generate, max_new_tokens: int
) -> list[Generation]:
    """One reply per task holding the whole query; unfinished when its ```sql block never closed."""
    prompts = [full_messages(t.question, t.schema, t.evidence) for t in tasks]
    replies = generate(prompts, max_new_tokens)
    return [
        Generation(parse_full_answer(reply), 1, finished=reply.rstrip().endswith("```"),
                   logprob=logprob_of(reply))
        for reply in replies
    ]


def _read_step(reply: str, step: int, ops: list[str]) -> tuple[bool, str | None]:
    """(finished, error) after appending the reply's operator, if any, to ops."""
    try:
        op = parse_step_answer(reply)
    except ValueError as e:
        return False, f"step {step}: {e}"
    if op is None:
        return True, None
    ops.append(op)
    try:
        operator_name(op)
    except ValueError as e:
        return False, f"step {step}: {e}"
    return False, None


class HFGenerator:
    """`Generate` over a Hugging Face causal LM: batched, left-padded, with a per-schema KV cache.

    Replies are decoded without special tokens and stripped. A reply stops at the end of turn
    (the tokenizer's EOS, `<|im_end|>` for ChatML, and any the model's generation config adds)
    or after the token budget. Sampled replies (num_beams 1) are `Reply`s, with their log-likelihood. The prefix cache holds one entry per distinct system turn for
    the generator's lifetime: one per test database.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        params: GenerationParams,
        progress: bool = True,
        tools: list[dict[str, Any]] | None = None,
    ) -> None:
        self.model, self.tokenizer, self.params, self.progress = model, tokenizer, params, progress
        self.tools = tools  # rendered into every prompt's system turn, as tool samples were trained
        self.device = next(model.parameters()).device
        self.full_context = _attends_to_full_context(model)
        self.prefix_cache = params.prefix_cache and self.full_context
        self._system_ids: dict[str, list[int]] = {}
        self._prefix_kv: dict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = {}
        eos = {tokenizer.eos_token_id, *_as_list(model.generation_config.eos_token_id)} - {None}
        self.eos = sorted(eos)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos)
        # Every knob that shapes the output is set here, so the model's own generation config
        # (Qwen's says: sample, top_k 20, repetition penalty 1.05) cannot change eval's decoding.
        self._config = dict(
            do_sample=params.do_sample,
            num_beams=params.num_beams,
            repetition_penalty=1.0,
            eos_token_id=sorted(eos),
            pad_token_id=self.pad_id,
            disable_compile=True,  # every batch has its own shapes: each would compile anew
            **(
                dict(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
                if params.do_sample
                else {}
            ),
        )
        if params.do_sample:
            torch.manual_seed(params.seed)

    @property
    def cached_prefixes(self) -> int:
        """System turns whose keys and values are held: one per database seen so far."""
        return len(self._prefix_kv)

    def __call__(self, prompts: Sequence[Messages], max_new_tokens: int) -> list[str]:
        rows = [self._encode(messages) for messages in prompts]
        # By cached prefix, then length, longest first: a batch holds prompts of one schema and
        # like length (little padding), and an out-of-memory error comes with the first batch.
        order = sorted(range(len(rows)), key=lambda i: (-rows[i][1], -len(rows[i][0])))
        size = self.params.batch_size
        batches = [order[i : i + size] for i in range(0, len(order), size)]
        replies = [""] * len(rows)
        show = self.progress and len(batches) > 1
        for batch in tqdm(batches, desc="batches", unit="batch", leave=False, disable=not show):
            for i, reply in zip(batch, self._generate([rows[i] for i in batch], max_new_tokens), strict=True):
                replies[i] = reply
        return replies

    def _encode(self, messages: Messages) -> tuple[list[int], int]:
        """The prompt's token ids, and how many of them (its system turn) the prefix cache serves.

        The prompt is tokenized whole, as training tokenized it; the system turn is served from
        the cache only where its own tokens are exactly the prompt's first ones.
        """
        text = self.tokenizer.apply_chat_template(
            messages, tools=self.tools, tokenize=False, add_generation_prompt=True
        )
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if not self.prefix_cache:
            return ids, 0
        system = self.tokenizer.apply_chat_template(messages[:1], tools=self.tools, tokenize=False)
        if not text.startswith(system):
            return ids, 0
        if system not in self._system_ids:
            self._system_ids[system] = self.tokenizer.encode(system, add_special_tokens=False)
        prefix = self._system_ids[system]
        n = len(prefix)
        return ids, n if 0 < n < len(ids) and ids[:n] == prefix else 0

    @torch.inference_mode()
    def _generate(self, rows: list[tuple[list[int], int]], max_new_tokens: int) -> list[str]:
        n_prefix = max(p for _, p in rows)
        n_rest = max(len(ids) - p for ids, p in rows)
        width = n_prefix + n_rest
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, (ids, p) in enumerate(rows):
            rest = len(ids) - p
            input_ids[r, n_prefix - p : n_prefix] = torch.tensor(ids[:p], dtype=torch.long)
            input_ids[r, width - rest :] = torch.tensor(ids[p:], dtype=torch.long)
            mask[r, n_prefix - p : n_prefix] = 1
            mask[r, width - rest :] = 1
        # beams reorder rows between steps: the likelihood is read only along plain sampling
        sampling = self.params.do_sample and self.params.num_beams == 1
        likelihood = _Likelihood(width, self.eos) if sampling else None
        cache = None  # generate() makes its own for a model with sliding-window layers
        if self.full_context:
            cache = StaticCache(config=self.model.config, max_cache_len=width + max_new_tokens)
            for layer, (keys, values) in enumerate(self._batch_prefix(rows, n_prefix)):
                cache.update(keys, values, layer)
        output = self.model.generate(
            input_ids=input_ids.to(self.device),
            attention_mask=mask.to(self.device),
            past_key_values=cache,
            generation_config=GenerationConfig(max_new_tokens=max_new_tokens, **self._config),
            logits_processor=LogitsProcessorList([likelihood] if likelihood else []),
        )
        texts = [text.strip() for text in self.tokenizer.batch_decode(output[:, width:], skip_special_tokens=True)]
        if likelihood is None:
            return texts
        return [Reply(text, lp) for text, lp in zip(texts, likelihood.finish(output), strict=True)]

    def _batch_prefix(
        self, rows: list[tuple[list[int], int]], n_prefix: int
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, the rows' system turns right-aligned at column n_prefix ([] when none is).

        Rows are repeated per beam, as generate() repeats the inputs for beam search.
        """
        layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        for r, (ids, p) in enumerate(rows):
            if not p:
                continue
            for layer, (k, v) in enumerate(self._system_kv(tuple(ids[:p]))):
                if len(layers) <= layer:
                    shape = (len(rows), k.shape[1], n_prefix, k.shape[3])
                    layers.append((k.new_zeros(shape), v.new_zeros(shape[:3] + v.shape[3:])))
                layers[layer][0][r, :, n_prefix - p :] = k[0]
                layers[layer][1][r, :, n_prefix - p :] = v[0]
        beams = self.params.num_beams
        if beams > 1:
            layers = [(k.repeat_interleave(beams, dim=0), v.repeat_interleave(beams, dim=0)) for k, v in layers]
        return layers

    def _system_kv(self, prefix: tuple[int, ...]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Keys and values of one system turn (positions 0..n-1), computed on first use."""
        if prefix not in self._prefix_kv:
            ids = torch.tensor([prefix], dtype=torch.long, device=self.device)
            cache = self.model(input_ids=ids, use_cache=True).past_key_values
            self._prefix_kv[prefix] = [(layer.keys, layer.values) for layer in cache.layers]
        return self._prefix_kv[prefix]


class _Likelihood(LogitsProcessor):
    """Sums each row's log-probability of the tokens it generates, as generate() picks them.

    generate() runs custom processors before temperature and top-p, so these are the model's
    own probabilities. A call sees step t's logits and, in input_ids, the token step t - 1
    picked: its log-probability is read from the previous call's, so one vocabulary-wide row per
    sequence is held, never the whole history. A row counts up to its first end-of-turn token.
    """

    def __init__(self, width: int, eos: list[int]) -> None:
        self.width, self.eos = width, torch.tensor(eos)
        self.last: torch.Tensor | None = None
        self.total: torch.Tensor | None = None
        self.open: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[1] > self.width:
            self._add(input_ids[:, -1])
        self.last = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, sequences: torch.Tensor) -> list[float]:
        """Per row, the summed log-probability, once generate() has returned `sequences`."""
        if sequences.shape[1] > self.width:
            self._add(sequences[:, -1])
        return [0.0] * len(sequences) if self.total is None else self.total.tolist()

    def _add(self, tokens: torch.Tensor) -> None:
        assert self.last is not None  # a token follows a call
        if self.total is None or self.open is None:
            self.total = torch.zeros(len(tokens), dtype=torch.float64)
            self.open = torch.ones(len(tokens), dtype=torch.bool)
        picked = self.last.gather(1, tokens[:, None].to(self.last.device))[:, 0].double().cpu()
        self.total += torch.where(self.open, picked, torch.zeros_like(picked))
        self.open &= ~torch.isin(tokens.cpu(), self.eos)


def _attends_to_full_context(model: PreTrainedModel) -> bool:
    """Sliding-window layers keep only recent keys, so a cached prefix cannot be spliced in."""
    config = model.config.get_text_config(decoder=True)
    layer_types = getattr(config, "layer_types", None) or ["full_attention"]
    return all(kind == "full_attention" for kind in layer_types)


def _as_list(value: int | list[int] | None) -> list[int]:
    if value is None:
        return []
    return [value] if isinstance(value, int) else list(value)
