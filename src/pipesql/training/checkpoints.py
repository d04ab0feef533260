"""Checkpoints a kill cannot corrupt: complete-markers, the run record, the choice of resume point.

The Trainer writes `checkpoint-N/` file by file (weights, optimizer, scheduler, RNG states, trainer
state); a kill in between leaves a directory that looks like a checkpoint and is not one. A marker
written after the last file (and after every process wrote its share) is what makes it one:
unmarked directories are deleted before a run starts, and never resumed, rolled back to or uploaded.

The run record ties the directory to what produced it. DVC keeps the directory across reruns
(`persist: true`), so after a change of params or inputs its checkpoints belong to another run:
they are cleared, not resumed, and params.yaml keeps describing the adapter it produced.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipesql.io import write_json

COMPLETE_MARKER = "pipesql_complete.json"
RUN_RECORD = "pipesql_run.json"
# Params that change how a run is operated, not what it computes: editing one resumes the run.
# Operational keys: changing them keeps the checkpoints. Where the machines meet (and which one a
# given host is) does not change what is trained: a rerun on a new rank 0 resumes.
RESUME_NEUTRAL_KEYS = (
    "resume", "checkpoint_uri", "save_total_limit", "guard.max_rollbacks",
    "nodes.rank", "nodes.address", "nodes.port", "nodes.timeout_s",
)
_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")
_WHOLE_FILE_BYTES = 64 << 20   # larger files (weight shards) are fingerprinted by size, head, tail
_EDGE_BYTES = 1 << 20


@dataclass
class RunRecord:
    """What made the checkpoints in a directory, and the divergence events met on the way.

    `rollback_pending`: the last attempt ended on a divergence; the next launch resumes (whatever
    train.resume says) and clears it.
    """

    fingerprint: str
    events: list[dict[str, Any]] = field(default_factory=list)
    rollback_pending: bool = False

    @property
    def lr_scale(self) -> float:
        """The learning-rate multiplier in force: the product of every rollback's factor so far."""
        return self.events[-1]["lr_scale"] if self.events else 1.0


def checkpoint_step(path: Path) -> int | None:
    found = _CHECKPOINT_NAME.match(Path(path).name)
    return int(found.group(1)) if found else None


def list_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """`checkpoint-N` directories, oldest step first (numeric order: 9 before 10)."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=lambda p: checkpoint_step(p) or 0)


def is_complete(checkpoint: Path) -> bool:
    return (Path(checkpoint) / COMPLETE_MARKER).is_file()


def mark_complete(checkpoint: Path) -> None:
    """Call only once every process has written its files; the marker itself lands atomically."""
    files = sorted(p.name for p in Path(checkpoint).iterdir() if p.name != COMPLETE_MARKER)
    write_json(Path(checkpoint) / COMPLETE_MARKER, {"step": checkpoint_step(checkpoint), "files": files})


def newest_complete(checkpoint_dir: Path) -> Path | None:
    complete = [p for p in list_checkpoints(checkpoint_dir) if is_complete(p)]
    return complete[-1] if complete else None


def remove_incomplete(checkpoint_dir: Path) -> list[Path]:
    """Delete half-written checkpoints (a kill mid-save); returns what was removed."""
    removed = [p for p in list_checkpoints(checkpoint_dir) if not is_complete(p)]
    for path in removed:
        shutil.rmtree(path)
    return removed


def open_run(checkpoint_dir: Path, fingerprint: str, resume: str) -> tuple[RunRecord, str]:
    """Ready the directory for this run (main process only); returns the record and what was done.

    Checkpoints are kept only when resuming is allowed and they were made by the same params and
    inputs; half-written ones are always removed. A pending rollback always resumes: it is the
    same run, relaunched.
    """
    root = Path(checkpoint_dir)
    root.mkdir(parents=True, exist_ok=True)
    previous = read_record(root)
    rolling_back = previous is not None and previous.rollback_pending and previous.fingerprint == fingerprint
    if resume == "never" and not rolling_back:
        note = "train.resume is 'never': starting over"
    elif previous is None:
        note = "no previous run"
    elif previous.fingerprint != fingerprint:
        note = "params or inputs changed since the checkpoints were made: starting over"
    else:
        removed = remove_incomplete(root)
        previous.rollback_pending = False
        write_record(root, previous)
        note = "rolling back" if rolling_back else "same run"
        note += f"; removed {len(removed)} half-written checkpoint(s)" if removed else ""
        return previous, note
    for path in list_checkpoints(root):
        shutil.rmtree(path)
    record = RunRecord(fingerprint)
    write_record(root, record)
    return record, note


def read_record(checkpoint_dir: Path) -> RunRecord | None:
    path = Path(checkpoint_dir) / RUN_RECORD
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return RunRecord(
        fingerprint=data["fingerprint"],
        events=list(data.get("events", [])),
        rollback_pending=bool(data.get("rollback_pending", False)),
    )


def write_record(checkpoint_dir: Path, record: RunRecord) -> None:
    write_json(
        Path(checkpoint_dir) / RUN_RECORD,
        {"fingerprint": record.fingerprint, "events": record.events, "rollback_pending": record.rollback_pending},
    )


def run_fingerprint(params: dict[str, Any], inputs: Iterable[Path]) -> str:
    """Hash of the params that shape the result and of the input files.

    Small files are hashed whole; large ones (weight shards of a hub model, gigabytes) by size,
    first and last MiB, which tells revisions apart without reading them through.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps(_without(params, RESUME_NEUTRAL_KEYS), sort_keys=True).encode())
    for root in inputs:
        root = Path(root)
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            size = path.stat().st_size
            digest.update(f"{path.relative_to(root.parent)}\0{size}\0".encode())
            with path.open("rb") as f:
                if size <= _WHOLE_FILE_BYTES:
                    digest.update(f.read())
                else:
                    digest.update(f.read(_EDGE_BYTES))
                    f.seek(size - _EDGE_BYTES)
                    digest.update(f.read(_EDGE_BYTES))
    return digest.hexdigest()


def _without(params: dict[str, Any], dotted_keys: Iterable[str]) -> dict[str, Any]:
    out = json.loads(json.dumps(params))  # a deep copy of plain data
    for dotted in dotted_keys:
        *parents, last = dotted.split(".")
        node = out
        for key in parents:
            node = node.get(key, {})
        node.pop(last, None)
    return out
