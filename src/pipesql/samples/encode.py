"""Conversations to token ids and labels: the model's chat template, assistant-only labels.

The result equals `tokenizer.apply_chat_template(..., return_assistant_tokens_mask=True)` with
labels = ids where the mask is 1 and -100 elsewhere (tests/samples/test_encode.py holds the
two side by side); it is computed faster. A fast tokenizer splits its input on added tokens
(`<|im_start|>`, `<|im_end|>`) before anything else, so the text between two of them is
tokenized on its own. The schema sits in the system turn, so all the steps of all questions on
one database share that piece: each distinct piece of a batch is tokenized once. Where a
tokenizer does not split that way (a Metaspace tokenizer prefixes only its first piece, an
added token may strip the spaces beside it) each text is tokenized whole.

The labels come from the template's `{% generation %}` spans, which cover each assistant reply
and its end-of-turn token: the model learns what to answer and when to stop.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase
from transformers.utils.chat_template_utils import render_jinja_template

from pipesql.io import DataError

IGNORE = -100  # the label cross-entropy skips
_CACHE_PIECES = 10_000  # shared pieces kept across batches: schemas, tool prompts, end markers

Conversation = list[dict[str, Any]]
_PROBE: Conversation = [
    {"role": "system", "content": "Schema:\nCREATE TABLE t (\n  a INT, -- e.g. 'x'\n);"},
    {"role": "user", "content": "Question: how many?\nQuery so far:\nFROM t\n|> WHERE  a > 1"},
    {"role": "assistant", "content": " AGGREGATE COUNT(*) AS n GROUP BY a\n"},
]


@dataclass(frozen=True)
class Encoded:
    input_ids: np.ndarray  # int32
    labels: np.ndarray     # int32, IGNORE outside the assistant's tokens


class _Piece:
    """A tokenized piece of text. Token offsets are read only for pieces a generation span
    meets (assistant replies): the schema and the question are labelled IGNORE whole.
    """

    def __init__(self, text: str, encoding: Any) -> None:
        self.length = len(text)
        self.encoding = encoding
        self.ids = np.asarray(encoding.ids, dtype=np.int32)
        self.ignored = np.full(len(self.ids), IGNORE, dtype=np.int32)

    def labels(self, start: int, spans: list[tuple[int, int]]) -> np.ndarray:
        """The ids where a token's characters meet a span, IGNORE elsewhere (piece at start)."""
        inside = [(s - start, e - start) for s, e in spans if s < start + self.length and e > start]
        if not inside:
            return self.ignored
        offsets = np.asarray(self.encoding.offsets, dtype=np.int64).reshape(-1, 2)
        starts = offsets[:, 0]
        ends = np.maximum(offsets[:, 1], starts + 1)  # a token of no characters sits at its start
        mask = np.zeros(len(self.ids), dtype=bool)
        for s, e in inside:
            mask |= (starts < e) & (ends > s)
        return np.where(mask, self.ids, self.ignored)


class ChatEncoder:
    """Renders with the tokenizer's own chat template; tokenizes each distinct piece once."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, origin: str) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise DataError(f"{origin}: a fast (Rust) tokenizer is needed: tokenizer.json")
        self.tokenizer = tokenizer
        self._backend = tokenizer.backend_tokenizer
        (probe,), (probe_spans,) = self._render([_PROBE], None)
        if not probe_spans:  # every label would be IGNORE: a model that trains on nothing
            raise DataError(
                f"{origin}: the chat template marks no assistant reply with {{% generation %}};"
                " the download stage adds the markers: run 'dvc repro download'"
            )
        self._special = _added_token_pattern(tokenizer)
        if self._special is not None and not self._splits_exactly(probe):
            self._special = None
        self._cache: dict[str, _Piece] = {}

    def encode(
        self, conversations: Sequence[Conversation], tools: list[dict[str, Any]] | None = None
    ) -> list[Encoded]:
        """One Encoded per conversation, in order; the same input always gives the same output."""
        if not conversations:
            return []
        texts, spans = self._render(conversations, tools)
        parts = [self._parts(text) for text in texts]
        pieces = self._pieces([piece for text_parts in parts for _, piece in text_parts])
        return [
            _assemble(text_parts, pieces, text_spans)
            for text_parts, text_spans in zip(parts, spans, strict=True)
        ]

    def _pieces(self, texts: list[str]) -> dict[str, _Piece]:
        """Each distinct piece tokenized once. Pieces seen twice in a batch (a schema, an end
        of turn) are kept for later batches too; the output never depends on what is kept.
        """
        counts = Counter(texts)
        new = [text for text in counts if text not in self._cache]
        encodings = self._backend.encode_batch(new, add_special_tokens=False)
        pieces = {text: _Piece(text, enc) for text, enc in zip(new, encodings, strict=True)}
        if len(self._cache) > _CACHE_PIECES:
            self._cache.clear()
        self._cache |= {text: piece for text, piece in pieces.items() if counts[text] > 1}
        return pieces | {text: self._cache[text] for text in counts if text not in pieces}

    def _render(
        self, conversations: Sequence[Conversation], tools: list[dict[str, Any]] | None
    ) -> tuple[list[str], list[list[tuple[int, int]]]]:
        """What apply_chat_template renders, with the character spans of its generation blocks."""
        template = self.tokenizer.get_chat_template(None, tools)
        texts, spans = render_jinja_template(
            conversations=[[{k: v for k, v in m.items() if v is not None} for m in c]
                           for c in conversations],
            tools=tools,
            chat_template=template,
            return_assistant_tokens_mask=True,
            **self.tokenizer.special_tokens_map,
        )
        return texts, [[(int(s), int(e)) for s, e in text_spans] for text_spans in spans]

    def _parts(self, text: str) -> list[tuple[int, str]]:
        """(start, piece) covering the text in order: added tokens, and the text between them."""
        if self._special is None:
            return [(0, text)]
        parts: list[tuple[int, str]] = []
        start = 0
        for match in self._special.finditer(text):
            if match.start() > start:
                parts.append((start, text[start : match.start()]))
            parts.append((match.start(), match.group()))
            start = match.end()
        if start < len(text):
            parts.append((start, text[start:]))
        return parts

    def _splits_exactly(self, text: str) -> bool:
        """Do pieces tokenized apart give the whole text's tokens? Checked, not assumed."""
        whole = self._backend.encode(text, add_special_tokens=False).ids
        pieced = [
            i for _, piece in self._parts(text)
            for i in self._backend.encode(piece, add_special_tokens=False).ids
        ]
        return pieced == whole


def _assemble(
    parts: list[tuple[int, str]], pieces: dict[str, _Piece], spans: list[tuple[int, int]]
) -> Encoded:
    """The pieces' tokens end to end; labels from the spans (none before the first span)."""
    first = min((s for s, _ in spans), default=0)
    return Encoded(
        np.concatenate([pieces[piece].ids for _, piece in parts]),
        np.concatenate([
            pieces[piece].ignored if start + len(piece) <= first
            else pieces[piece].labels(start, spans)
            for start, piece in parts
        ]),
    )


def _added_token_pattern(tokenizer: PreTrainedTokenizerBase) -> re.Pattern[str] | None:
    """A pattern of the added tokens where the tokenizer splits on them as written, else None."""
    added = tokenizer.backend_tokenizer.get_added_tokens_decoder().values()
    has_normalizer = tokenizer.backend_tokenizer.normalizer is not None
    if not added or any(
        t.lstrip or t.rstrip or t.single_word or (t.normalized and has_normalizer) for t in added
    ):
        return None
    contents = sorted({t.content for t in added}, key=len, reverse=True)  # longest match first
    return re.compile("|".join(map(re.escape, contents)))
