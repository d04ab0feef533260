"""The items of a file's top-level JSON array, one at a time: a release file of several GB
(SynSQL-2.5M's data.json) is never held whole, only the item being decoded and one chunk.

Each item is decoded by the standard library's C scanner (`raw_decode`), so this costs about
what `json.load` does per byte, without a dependency.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipesql.io import DataError

CHUNK_CHARS = 1 << 20
_DECODER = json.JSONDecoder()
_SPACE = " \t\n\r"


def iter_json_array(path: Path, chunk_chars: int = CHUNK_CHARS) -> Iterator[Any]:
    """Yield each item of the array; anything else at the top level, or bad JSON, is a
    DataError naming the file (and the line for a syntax error)."""
    reader = _Reader(Path(path), chunk_chars)
    try:
        yield from _items(reader)
    finally:
        reader.file.close()


def _items(reader: _Reader) -> Iterator[Any]:
    first = reader.peek()
    if first != "[":
        got = {"{": "an object", "": "an empty file"}.get(first, "a scalar")
        raise DataError(f"{reader.path}: expected a JSON list at the top level, got {got}")
    reader.pos += 1
    if reader.peek() == "]":
        return
    while True:
        yield reader.item()
        sep = reader.peek()
        reader.pos += 1
        if sep == "]":
            break
        if sep == "":
            raise reader.error("the file ends inside the array")
        if sep != ",":
            raise reader.error("expected ',' or ']' after an item")
    if reader.peek() != "":
        raise reader.error("text after the closing ']'")


class _Reader:
    """A window on the file: `buf[pos:]` is what is not yet decoded."""

    def __init__(self, path: Path, chunk_chars: int) -> None:
        self.path = path
        self.file = path.open(encoding="utf-8")
        self.chunk = chunk_chars
        self.buf = ""
        self.pos = 0
        self.line = 1  # of buf[0]
        self.eof = False

    def _more(self) -> bool:
        """Drop what is decoded, append a chunk; False at the end of the file."""
        if self.eof:
            return False
        self.line += self.buf.count("\n", 0, self.pos)
        text = self.file.read(self.chunk)
        self.buf, self.pos = self.buf[self.pos :] + text, 0
        if not text:
            self.eof = True
        return bool(text)

    def peek(self) -> str:
        """The next character that is not white space ('' at the end), not consumed."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _SPACE:
                self.pos += 1
            if self.pos < len(self.buf) or not self._more():
                return self.buf[self.pos : self.pos + 1]

    def item(self) -> Any:
        if self.peek() == "":
            raise self.error("the file ends inside the array")
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                # An item cut by the chunk's end decodes once the next chunk is in; at the end
                # of the file the error is real.
                if self._more():
                    continue
                raise self.error(f"not valid JSON: {e.msg}", e.pos) from None
            if end == len(self.buf) and self._more():
                continue  # a number may go on in the next chunk: decode it whole
            self.pos = end
            return value

    def error(self, message: str, at: int | None = None) -> DataError:
        at = self.pos if at is None else at
        line = self.line + self.buf.count("\n", 0, at)
        return DataError(f"{self.path}:{line}: {message}")
