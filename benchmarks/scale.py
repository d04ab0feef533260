"""The pipeline at scale: wall time and peak RSS per stage on synthetic data of a given size.

    python -m benchmarks.scale --examples 10000 --databases 200 --out /tmp/scale-10k.json

A fresh project copy (git + DVC) in a temporary directory, its params.yaml set to
`--examples` synthetic examples over `--databases` databases, runs each stage through
`dvc repro --single-item` in order: download@data, download@model (the scratch tokenizer learns
the data), golden_pairs, tokenize, and train up to its first optimizer step (max_steps 1).
Per stage: wall seconds (DVC's own start and hashing included, as a user waits for them),
seconds per example, and peak RSS of the whole process tree (stage, workers and DVC summed,
sampled every 0.2 s), and the 1-minute load average before it (the machine may be shared). Then a `dvc repro` of those stages with nothing to do, timed (`--noop-runs`
times) with that data/raw and its databases in place. `--stages download@data` stops after
the first stages named (a large data/raw and its no-op repro without the hours after it). `--workers` bounds golden_pairs and
tokenize processes (default 1: the figures stay comparable on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

from pipesql.io import write_json

REPO = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("dvc.yaml", "params.yaml", "stages", "src", "configs", ".dvc/config", ".gitignore")
STAGES = ("download@data", "download@model", "golden_pairs", "tokenize", "train")
SAMPLE_S = 0.2


def scale_params(examples: int, databases: int, workers: int) -> dict[str, Any]:
    """Overrides of params.yaml: the synthetic size, bounded processes, one optimizer step."""
    return {
        "download": {"data": {"synthetic": {"n_examples": examples, "n_databases": databases,
                                            "rows_per_table": 10}}},
        "golden_pairs": {"workers": workers},
        "tokenize": {"num_proc": workers},
        "train": {"max_steps": 1, "launch": "cpu"},
    }


def make_project(dest: Path, overrides: dict[str, Any]) -> Path:
    """This repo's pipeline code in a git + DVC project at dest, params.yaml overridden."""
    for name in PROJECT_FILES:
        src, target = REPO / name, dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, target)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    (dest / "params.yaml").write_text(yaml.safe_dump(_merged(params, overrides), sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.email=b@pipesql.local", "-c", "user.name=bench", "commit", "-qm", "copy"]):
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True)
    return dest


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def timed(cmd: list[str], cwd: Path) -> dict[str, Any]:
    """Run cmd; wall seconds and the peak summed RSS of its process tree."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["src", "."]),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    load = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                rss = sum(_rss(p) for p in tree)
            except psutil.NoSuchProcess:
                break
            peak[0] = max(peak[0], rss)
            done.wait(SAMPLE_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = proc.communicate()
    done.set()
    sampler.join()
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{output[-4000:]}")
    ran = [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(peak[0] / 2**20), "ran": ran,
            "load_avg_before": round(load, 1)}


def _rss(p: psutil.Process) -> int:
    try:
        return p.memory_info().rss
    except psutil.NoSuchProcess:
        return 0


def bench_scale(examples: int, databases: int, workers: int = 1, noop_runs: int = 2,
                workdir: Path | None = None, stages_run: tuple[str, ...] = STAGES) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pipesql-scale-", dir=workdir) as tmp:
        project = make_project(Path(tmp) / "proj", scale_params(examples, databases, workers))
        dvc = [sys.executable, "-m", "dvc"]
        stages: dict[str, Any] = {}
        for stage in stages_run:
            print(f"scale: {stage} ...", file=sys.stderr, flush=True)
            record = timed([*dvc, "repro", "--single-item", stage], project)
            record["us_per_example"] = round(record["seconds"] / examples * 1e6, 1)
            stages[stage] = record
            print(f"scale: {stage}: {record}", file=sys.stderr, flush=True)
        metrics = {name: json.loads((project / "metrics" / f"{name}.json").read_text())
                   for name in ("download", "golden_pairs", "tokenize")
                   if (project / "metrics" / f"{name}.json").exists()}
        noop = [timed([*dvc, "repro", *stages_run], project) for _ in range(noop_runs)]
        raw_files = sum(1 for _ in (project / "data/raw/database").rglob("*.sqlite"))
    return {
        "examples": examples,
        "databases": databases,
        "workers": workers,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)},
        "stages": stages,
        "noop_repro": {"runs": [r["seconds"] for r in noop], "ran": sorted({s for r in noop for s in r["ran"]}),
                       "database_files": raw_files},
        "pairs": metrics.get("golden_pairs", {}).get("pairs"),
        "metrics": metrics,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--databases", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--noop-runs", type=int, default=2)
    parser.add_argument("--workdir", type=Path, help="where the temporary project goes")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES),
                        help="the first stages only (each needs those before it)")
    parser.add_argument("--out", type=Path, help="write the result as JSON here too")
    args = parser.parse_args()
    stages = tuple(s for s in STAGES if s in args.stages)
    if stages != STAGES[: len(stages)]:
        parser.error(f"--stages must be the first stages of {', '.join(STAGES)}")
    result = bench_scale(args.examples, args.databases, args.workers, args.noop_runs, args.workdir, stages)
    if args.out:
        write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
