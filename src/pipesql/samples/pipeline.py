"""Golden pairs to a tokenized DatasetDict on disk, in parallel, byte-identical on every run.

Pairs are split first, then cut into chunks that worker processes turn into Arrow tables (build
the conversations, run the tool calls, encode); the tables come back in chunk order and are
streamed to one Arrow file per split, so memory holds a few chunks, not the dataset. Samples
longer than `max_length` are dropped and counted: a truncated sample would teach a query cut off
mid-operator, or no end of turn.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from datasets import Dataset, DatasetDict, DatasetInfo, Features, NamedSplit, Sequence, Value
from datasets.table import MemoryMappedTable
from tqdm import tqdm
from transformers import AutoTokenizer

from pipesql.io import DataError, atomic_path, write_jsonl
from pipesql.params.tokenize import TokenizeParams
from pipesql.prompts import TOOLS, schema_text
from pipesql.prompts.contract import build_contract, write_contract
from pipesql.samples.conversations import KINDS, Sample, has_tool_sample, text_samples, tool_sample
from pipesql.samples.encode import IGNORE, ChatEncoder
from pipesql.samples.splits import SPLITS, Pair, assign_splits, read_pairs
from pipesql.sources.raw import database_path
from pipesql.sql.pipe import split_operators

PAIRS_FILE = "pairs.jsonl"
TEST_PAIRS_FILE = "test_pairs.jsonl"
CHUNK_PAIRS = 64  # pairs per task: small enough to balance two cores, big enough to share schemas

FEATURES = Features(
    {
        "input_ids": Sequence(Value("int32")),
        "labels": Sequence(Value("int32")),  # -100 outside the assistant's tokens
        "example_id": Value("string"),
        "db_id": Value("string"),
        "kind": Value("string"),             # incremental | full | tool
        "step": Value("int32"),              # operator position k; num_ops = the end; -1 otherwise
        "num_ops": Value("int32"),
        "difficulty": Value("string"),       # "" when the source does not say
    }
)


@dataclass
class Chunk:
    """One task's output: the kept samples as an Arrow table, and what was dropped."""

    split: str
    n_pairs: int
    table: pa.Table
    digest: bytes
    dropped: Counter[str] = field(default_factory=Counter)  # by kind
    tool_failed: int = 0


def build_samples(
    golden_dir: Path, raw_dir: Path, model_dir: Path, params: TokenizeParams, out_dir: Path
) -> dict[str, Any]:
    """Write the DatasetDict, test_pairs.jsonl and the prompt contract (prompt.json) to out_dir
    atomically; return the metrics."""
    pairs_path = Path(golden_dir) / PAIRS_FILE
    splits = assign_splits(read_pairs(pairs_path), params.split, pairs_path)
    worker = _Worker(pairs_path, Path(raw_dir), Path(model_dir), params)  # fails early
    stats = _Stats(splits)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tokenize-", dir=out_dir.parent) as build_dir:
        files = _write_splits(splits, worker, stats, Path(build_dir))
        stats.check_no_split_is_empty(params)
        datasets = DatasetDict(
            {
                name: Dataset(
                    MemoryMappedTable.from_file(str(files[name])),
                    info=DatasetInfo(features=FEATURES),
                    split=NamedSplit(name),
                    fingerprint=stats.fingerprint(name),  # of the content: same data, same id
                )
                for name in SPLITS
            }
        )
        with atomic_path(out_dir) as tmp:
            datasets.save_to_disk(str(tmp))
            write_jsonl(tmp / TEST_PAIRS_FILE, (p.row for p in splits["test"]))
            write_contract(tmp, build_contract(params, worker.tokenizer.chat_template or ""))
        del datasets  # release the memory maps before the build files go
    return stats.metrics(params)


def _write_splits(
    splits: dict[str, list[Pair]], worker: _Worker, stats: _Stats, build_dir: Path
) -> dict[str, Path]:
    """Stream every chunk's table to its split's Arrow file, in order; return the files."""
    tasks = [
        (name, splits[name][i : i + CHUNK_PAIRS])
        for name in SPLITS
        for i in range(0, len(splits[name]), CHUNK_PAIRS)
    ]
    files = {name: build_dir / f"{name}.arrow" for name in SPLITS}
    total = sum(len(pairs) for pairs in splits.values())
    with contextlib.ExitStack() as stack:
        writers = {
            name: stack.enter_context(pa.ipc.new_stream(str(path), FEATURES.arrow_schema))
            for name, path in files.items()
        }
        bar = stack.enter_context(tqdm(total=total, desc="tokenize", unit="pair", mininterval=1.0))
        for chunk in _run(tasks, worker):
            writers[chunk.split].write_table(chunk.table)
            stats.add(chunk)
            bar.update(chunk.n_pairs)
    return files


# ---------------------------------------------------------------- workers


class _Worker:
    """What a process needs for its chunks: the tokenizer, and schema texts built once per db."""

    def __init__(self, pairs_path: Path, raw_dir: Path, model_dir: Path, params: TokenizeParams):
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        except (OSError, ValueError) as e:
            raise DataError(
                f"{model_dir}: cannot load the tokenizer ({e}); run 'dvc repro download' first"
            ) from None
        self.encoder = ChatEncoder(self.tokenizer, str(model_dir))
        self.pairs_path, self.raw_dir, self.params = pairs_path, raw_dir, params
        self.schemas: dict[str, str] = {}

    def chunk(self, task: tuple[str, list[Pair]]) -> Chunk:
        """Build, encode and filter one chunk's samples, in pair order."""
        split, pairs = task
        built, tool_failed = self._build(pairs)
        encoded = {}  # tool conversations render with the tools' definitions, the others without
        for is_tool, tools in ((False, None), (True, TOOLS)):
            picked = [i for i, (_, _, s) in enumerate(built) if (s.kind == "tool") == is_tool]
            conversations = [built[i][2].messages for i in picked]
            encoded |= dict(zip(picked, self.encoder.encode(conversations, tools), strict=True))
        columns: dict[str, list[Any]] = {name: [] for name in FEATURES}
        dropped: Counter[str] = Counter()
        for i, (pair, num_ops, sample) in enumerate(built):
            enc = encoded[i]
            if len(enc.input_ids) > self.params.max_length:
                dropped[sample.kind] += 1
                continue
            for name, value in (
                ("input_ids", enc.input_ids), ("labels", enc.labels), ("example_id", pair.id),
                ("db_id", pair.db_id), ("kind", sample.kind), ("step", sample.step),
                ("num_ops", num_ops), ("difficulty", str(pair.row.get("difficulty") or "")),
            ):
                columns[name].append(value)
        arrays = {
            name: _list_array(values) if name in ("input_ids", "labels") else pa.array(values)
            for name, values in columns.items()
        }
        table = pa.Table.from_pydict(arrays, schema=FEATURES.arrow_schema)
        return Chunk(split, len(pairs), table, _digest(table), dropped, tool_failed)

    def _build(self, pairs: list[Pair]) -> tuple[list[tuple[Pair, int, Sample]], int]:
        """(pair, number of operators, sample) in pair order, and the tool sessions that failed."""
        built: list[tuple[Pair, int, Sample]] = []
        failed = 0
        for pair in pairs:
            ops = self._ops(pair)
            schema = self._schema(pair.db_id)
            built += [(pair, len(ops), s) for s in text_samples(pair.row, ops, schema, self.params)]
            if has_tool_sample(pair.id, self.params):
                db_path = database_path(self.raw_dir, pair.db_id)
                sample = tool_sample(pair.row, ops, db_path, self.params)
                if sample is None:
                    failed += 1
                else:
                    built.append((pair, len(ops), sample))
        return built, failed

    def _schema(self, db_id: str) -> str:
        if db_id not in self.schemas:
            path = database_path(self.raw_dir, db_id)
            self.schemas[db_id] = schema_text(path, self.params, self.tokenizer)
        return self.schemas[db_id]

    def _ops(self, pair: Pair) -> list[str]:
        """Operators from sqlglot's tokens, never from the text: `|>` may sit in a literal."""
        try:
            return split_operators(pair.row["pipe_sql"])
        except ValueError as e:
            where = f"{self.pairs_path}:{pair.lineno}"
            raise DataError(f"{where}: pipe_sql does not split into operators: {e}") from None


_worker: _Worker | None = None  # the pool's processes inherit it through fork


def _run(tasks: list[tuple[str, list[Pair]]], worker: _Worker) -> Iterator[Chunk]:
    """Chunks in task order, whatever the number of processes (imap keeps the order).

    The worker is built before the fork: a bad model directory fails once, and the processes
    inherit the loaded tokenizer and libraries instead of loading them again.
    """
    global _worker
    processes = min(worker.params.num_proc or os.cpu_count() or 1, max(len(tasks), 1))
    if processes == 1:
        yield from map(worker.chunk, tasks)
        return
    _worker = worker
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(processes, initializer=_one_thread) as pool:
        yield from pool.imap(_chunk, tasks)


def _one_thread() -> None:
    """The processes already use every core: each tokenizes on one thread."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


def _chunk(task: tuple[str, list[Pair]]) -> Chunk:
    assert _worker is not None, "the worker is built before the pool forks"
    return _worker.chunk(task)


def _list_array(rows: list[np.ndarray]) -> pa.ListArray:
    """int32 rows as one Arrow list column, without a Python int per token."""
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum([len(r) for r in rows], out=offsets[1:])
    values = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=pa.int32()))


def _digest(table: pa.Table) -> bytes:
    """A hash of the table's content, for the dataset fingerprint (same data, same hash)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue()).digest()


# ---------------------------------------------------------------- metrics


class _Stats:
    """Counts gathered chunk by chunk, for metrics/tokenize.json and the fingerprints."""

    def __init__(self, splits: dict[str, list[Pair]]) -> None:
        self.splits = splits
        self.samples = {name: Counter[str]() for name in SPLITS}
        self.dropped = {name: Counter[str]() for name in SPLITS}
        self.positions: Counter[int] = Counter()  # operator samples by k
        self.ends = 0                              # end-marker samples
        self.lengths: list[np.ndarray] = []
        self.labelled = 0
        self.tool_failed = 0
        self.hashes = {name: hashlib.sha256() for name in SPLITS}

    def add(self, chunk: Chunk) -> None:
        table = chunk.table
        self.samples[chunk.split].update(table.column("kind").to_pylist())
        self.dropped[chunk.split].update(chunk.dropped)
        steps = table.column("step").to_numpy()
        num_ops = table.column("num_ops").to_numpy()
        self.positions.update(steps[(steps >= 0) & (steps < num_ops)].tolist())
        self.ends += int((steps == num_ops).sum())
        ids = table.column("input_ids").combine_chunks()
        self.lengths.append(np.diff(ids.offsets.to_numpy()))
        labels = table.column("labels").combine_chunks().flatten().to_numpy()
        self.labelled += int((labels != IGNORE).sum())
        self.tool_failed += chunk.tool_failed
        self.hashes[chunk.split].update(chunk.digest)

    def check_no_split_is_empty(self, params: TokenizeParams) -> None:
        """A split left with no sample is an error: datasets cannot save it, eval needs it."""
        for name in SPLITS:
            if not sum(self.samples[name].values()):
                dropped = sum(self.dropped[name].values())
                raise DataError(
                    f"tokenize: no {name} sample is left: {dropped} longer than tokenize.max_length"
                    f"={params.max_length}; raise it, or lower tokenize.schema.max_tokens"
                )

    def fingerprint(self, split: str) -> str:
        return self.hashes[split].hexdigest()[:16]

    def metrics(self, params: TokenizeParams) -> dict[str, Any]:
        lengths = np.concatenate(self.lengths) if self.lengths else np.zeros(0, dtype=np.int64)
        n = len(lengths)
        return {
            "split_by": params.split.by,
            "mode": params.mode,
            "pairs": {name: len(self.splits[name]) for name in SPLITS},
            "databases": {name: len({p.db_id for p in self.splits[name]}) for name in SPLITS},
            "samples": {
                name: {kind: self.samples[name][kind] for kind in KINDS}
                | {"total": sum(self.samples[name].values())}
                for name in SPLITS
            },
            "dropped_for_length": {
                name: {kind: self.dropped[name][kind] for kind in KINDS} for name in SPLITS
            }
            | {"total": sum(sum(c.values()) for c in self.dropped.values())},
            "tool_sessions_failed": self.tool_failed,
            "tokens": {
                "total": int(lengths.sum()),
                "mean": round(float(lengths.mean()), 1) if n else 0.0,
                "p95": int(np.percentile(lengths, 95, method="higher")) if n else 0,
                "max": int(lengths.max()) if n else 0,
                "labelled": self.labelled,
            },
            "samples_by_operator_position": {str(k): c for k, c in sorted(self.positions.items())}
            | {"end": self.ends},
            "fingerprints": {name: self.fingerprint(name) for name in SPLITS},
        }
