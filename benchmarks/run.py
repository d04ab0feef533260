"""Run every benchmark and write all their results into one JSON file.

Benchmarks
----------
One command, from the repo root, runs them all and writes one file (atomically)::

    python -m benchmarks.run --out benchmarks/results.json
    python -m benchmarks.run --only tokenize generation --runs 5
    python -m benchmarks.run --quick --out /tmp/smoke.json      # smoke-tests the harness only

The benchmarks, in the order they run: `synthetic` (synthetic data generation), `golden_pairs`
(coverage and throughput on synthetic data, plus Spider-train when ../shared/spider-train is
there or --spider names it), `tokenize` (samples/s), `generation` (batched over one-at-a-time),
`train_throughput` (tokens/s grouped by length, in random order and packed, in its own process: data/samples and
models/base when both exist, else small ones built from synthetic data) and `dvc_noop` (a
`dvc repro` with nothing to do, timed only when `dvc status` says nothing would run; otherwise
recorded as skipped with the stages that would). `--runs N` goes to each benchmark that repeats
(train_throughput: --repeats); without it each keeps its own default. `--quick` uses small
sizes and 1 run and marks the file `"quick": true`: never report those figures.

The file holds the machine once (cores, platform, torch threads, CUDA device), the git commit,
and per benchmark: status (ok | error | skipped), params, the command that reproduces it alone,
timestamps, elapsed seconds, the load average before it started, `figures` (its headline
numbers) and `result` (its full summary). A failing benchmark is recorded with its error and
the others still run; the exit status is then 1. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipesql.io import write_json

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SPIDER = REPO.parent / "shared" / "spider-train"   # the team's copy, when present
HEARTBEAT_S = 60.0


class Skipped(Exception):
    """A benchmark that chose not to run; `details` go into its record beside the reason."""

    def __init__(self, reason: str, **details: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details


@dataclass(frozen=True)
class Options:
    quick: bool
    runs: int | None
    spider: Path | None          # given with --spider: it must exist
    samples: Path | None         # given with --samples / --base: they must exist
    base: Path | None
    dvc_repo: Path
    dvc_targets: tuple[str, ...]

    def runs_or(self, default: int) -> int:
        return self.runs or (1 if self.quick else default)


Record = dict[str, Any]


def _module_command(module: str, *args: Any) -> str:
    return shlex.join(["python", "-m", f"benchmarks.{module}", *map(str, args)])


def _harness_command(name: str, o: Options, *extra: str) -> str:
    """This harness, on that one benchmark (for those with no CLI of their own to reproduce them)."""
    args = ["python", "-m", "benchmarks.run", "--only", name, "--out", f"{name}.json"]
    if o.quick:
        args.append("--quick")
    if o.runs:
        args += ["--runs", str(o.runs)]
    return shlex.join([*args, *extra])


# ---------------------------------------------------------------- the benchmarks


def bench_synthetic(o: Options, rec: Record) -> dict[str, Any]:
    from benchmarks.synthetic import bench_synthetic_generation

    n, runs = (2_000 if o.quick else 100_000), o.runs_or(3)
    rec["params"] = {"examples": n, "runs": runs}
    rec["command"] = _module_command("synthetic", "--examples", n, "--runs", runs)
    result = bench_synthetic_generation(n, runs)
    rec["figures"] = {"examples_per_s": result["examples_per_s"]}
    return result


def bench_golden_pairs(o: Options, rec: Record) -> dict[str, Any]:
    from benchmarks import golden_pairs

    n = 200 if o.quick else 20_000
    spider, note = _spider_input(o)
    rec["params"] = {"synthetic_examples": n, "spider": str(spider) if spider else None, "workers": "all cores"}
    rec["command"] = _module_command(
        "golden_pairs", "--synthetic", n, *(["--spider", spider] if spider else [])
    )
    result: dict[str, Any] = {"inputs": ["synthetic"] + (["spider_train"] if spider else [])}
    if note:
        result["spider_note"] = note
    result["synthetic"] = golden_pairs.bench_synthetic(n)
    figures = {"synthetic_queries_per_s": result["synthetic"]["queries_per_s"],
               "synthetic_coverage": result["synthetic"]["coverage"]}
    if spider:
        _progress("golden_pairs: synthetic done; now Spider-train")
        result["spider_train"] = golden_pairs.bench_spider(spider)
        figures |= {"spider_train_queries_per_s": result["spider_train"]["queries_per_s"],
                    "spider_train_coverage": result["spider_train"]["coverage"]}
    rec["figures"] = figures
    return result


def _spider_input(o: Options) -> tuple[Path | None, str | None]:
    """(the Spider-train directory to use or None, why it is not used)."""
    if o.spider is not None:
        if not (o.spider / "gold.tsv").is_file():
            raise FileNotFoundError(f"--spider {o.spider}: no gold.tsv there")
        return o.spider, None
    if not (DEFAULT_SPIDER / "gold.tsv").is_file():
        return None, f"synthetic only: {DEFAULT_SPIDER} not found (give --spider DIR)"
    if o.quick:
        return None, f"synthetic only: {DEFAULT_SPIDER} left out under --quick (give --spider to include it)"
    return DEFAULT_SPIDER, None


def bench_tokenize(o: Options, rec: Record) -> dict[str, Any]:
    from benchmarks import tokenize

    n, runs = (200 if o.quick else 20_000), o.runs_or(3)
    rec["params"] = {"synthetic_examples": n, "runs": runs, "num_proc": "all cores", "model": "scratch tokenizer"}
    rec["command"] = _module_command("tokenize", "--synthetic", n, "--runs", runs)
    result = tokenize.bench(n, None, None, runs)
    rec["figures"] = {"samples_per_s_median": result["samples_per_s_median"]}
    return result


def bench_generation(o: Options, rec: Record) -> dict[str, Any]:
    from benchmarks import generation

    n, runs = (2 if o.quick else 32), o.runs_or(3)
    rec["params"] = {"examples": n, "runs": runs, "model": "default scratch model (untrained), rebuilt"}
    rec["command"] = _module_command("generation", "--examples", n, "--runs", runs)
    with tempfile.TemporaryDirectory(prefix="pipesql-bench-") as tmp:
        raw, model_dir = generation._default_inputs(Path(tmp))   # what its CLI does without --model
        result = generation.bench(model_dir, None, raw, n, runs)
    result["model"] = "default scratch model (untrained)"
    rec["figures"] = {"batched_speedup": result["batched_speedup"],
                      "batched_queries_per_s": result["queries_per_s"]["batched"]}
    return result


def bench_train_throughput(o: Options, rec: Record) -> dict[str, Any]:
    """In its own process (as its CLI): train() sets up torch and accelerate process-wide."""
    import torch

    steps, warmup = (3, 1) if o.quick else (40, 5)
    repeats = o.runs_or(1)
    launch = "gpu" if torch.cuda.is_available() else "cpu"
    samples, base, built_examples = _train_inputs(o)
    rec["params"] = {
        "steps": steps, "warmup": warmup, "repeats": repeats, "launch": launch,
        "samples": str(samples) if built_examples is None else f"built: {built_examples} synthetic examples",
        "base": str(base) if built_examples is None else "built: scratch model at download.model defaults",
    }
    args = ["--steps", steps, "--warmup", warmup, "--repeats", repeats, "--launch", launch]
    if built_examples is None:
        rec["command"] = _module_command("train_throughput", "--samples", samples, "--base", base, *args)
    else:  # the inputs live in a temporary folder: only the harness rebuilds them
        rec["command"] = _harness_command("train_throughput", o)
    for flag, path in (("--samples", samples), ("--base", base)):
        if built_examples is None and not (REPO / path).is_dir():
            raise FileNotFoundError(f"{flag} {path}: not a directory")
    with tempfile.TemporaryDirectory(prefix="pipesql-bench-") as tmp:
        if built_examples is not None:
            _progress(f"train_throughput: building samples and a scratch model from {built_examples} examples")
            samples, base = _build_train_inputs(Path(tmp), built_examples)
        out = Path(tmp) / "train_throughput.json"
        _run_module("train_throughput", ["--samples", samples, "--base", base, *args, "--json", out])
        result = json.loads(out.read_text())
    if built_examples is not None:
        result["samples"], result["base"] = rec["params"]["samples"], rec["params"]["base"]
    rec["figures"] = {
        **{f"{key}_tokens_per_s_best": max(runs) for key, runs in result["tokens_per_s"].items()},
        **{f"{key}_over_first": ratio for key, ratio in list(result["best_over_first"].items())[1:]},
    }
    return result


def _train_inputs(o: Options) -> tuple[Path, Path, int | None]:
    """(samples, base, None) to use as they are, or (_, _, examples) to build small ones from."""
    if o.samples is not None or o.base is not None:   # given: checked once the params are recorded
        return o.samples or REPO / "data" / "samples", o.base or REPO / "models" / "base", None
    samples, base = REPO / "data" / "samples", REPO / "models" / "base"
    if samples.is_dir() and base.is_dir():
        return samples.relative_to(REPO), base.relative_to(REPO), None
    from pipesql.params.download import SyntheticDataParams

    return samples, base, 200 if o.quick else SyntheticDataParams().n_examples


def _build_train_inputs(tmp: Path, n_examples: int) -> tuple[Path, Path]:
    """download -> golden_pairs -> tokenize at default params, as the other benchmarks build them."""
    from benchmarks.tokenize import _golden_pairs
    from pipesql.basemodel import prepare_base_model
    from pipesql.params.download import ModelParams
    from pipesql.params.tokenize import TokenizeParams
    from pipesql.samples import build_samples

    golden, raw = _golden_pairs(n_examples, tmp)
    prepare_base_model(ModelParams(), raw, tmp / "base")
    build_samples(golden, raw, tmp / "base", TokenizeParams(), tmp / "samples")
    return tmp / "samples", tmp / "base"


def bench_dvc_noop(o: Options, rec: Record) -> dict[str, Any]:
    from importlib.metadata import version

    runs = o.runs_or(5)
    repo, targets = o.dvc_repo, list(o.dvc_targets)
    rec["params"] = {"runs": runs, "repo": str(repo), "targets": targets or "all stages",
                     "dvc": version("dvc")}
    extra = [*(["--dvc-repo", str(repo)] if repo != REPO else []),
             *(["--dvc-targets", *targets] if targets else [])]
    rec["command"] = _harness_command("dvc_noop", o, *extra)
    rec["measured"] = shlex.join(["dvc", "repro", *targets])
    status = _dvc(repo, ["status", "--json", *targets])
    would_run = sorted(json.loads(status.stdout or "{}"))
    if would_run:
        raise Skipped(f"dvc status: these stages would run: {', '.join(would_run)}", would_run=would_run)
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = _dvc(repo, ["repro", *targets])
        seconds.append(time.perf_counter() - start)
        if "Running stage" in proc.stdout:
            raise RuntimeError(f"dvc repro ran a stage although dvc status said none would:\n{proc.stdout}")
    result = {"runs": runs, "seconds": [round(s, 3) for s in seconds],
              "median_s": round(statistics.median(seconds), 3)}
    rec["figures"] = {"median_s": result["median_s"]}
    return result


def _dvc(repo: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"dvc {shlex.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc


BENCHMARKS: dict[str, Callable[[Options, Record], dict[str, Any]]] = {
    # Forking benchmarks (pools in golden_pairs and tokenize) run before generation uses torch.
    "synthetic": bench_synthetic,
    "golden_pairs": bench_golden_pairs,
    "tokenize": bench_tokenize,
    "generation": bench_generation,
    "train_throughput": bench_train_throughput,
    "dvc_noop": bench_dvc_noop,
}


# ---------------------------------------------------------------- subprocesses and progress


def _run_module(module: str, args: list[Any]) -> None:
    """`python -m benchmarks.<module> args` in the repo root; its output is echoed to stderr."""
    cmd = [sys.executable, "-m", f"benchmarks.{module}", *map(str, args)]
    tail: collections.deque[bytes] = collections.deque(maxlen=64)
    with subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        assert proc.stdout is not None
        for chunk in iter(lambda: proc.stdout.read1(4096), b""):
            sys.stderr.buffer.write(chunk)
            sys.stderr.buffer.flush()
            tail.append(chunk)
    if proc.returncode != 0:
        text = b"".join(tail).decode(errors="replace").replace("\r", "\n")
        lines = [line for line in text.splitlines() if line.strip()][-15:]
        raise RuntimeError(f"{shlex.join(cmd[1:])} exited {proc.returncode}:\n" + "\n".join(lines))


_START = time.perf_counter()


def _progress(message: str) -> None:
    print(f"[benchmarks {time.perf_counter() - _START:7.1f} s] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _heartbeat(label: str) -> Iterator[None]:
    """A line every HEARTBEAT_S seconds while the block runs: which benchmark, for how long."""
    done, start = threading.Event(), time.perf_counter()

    def beat() -> None:
        while not done.wait(HEARTBEAT_S):
            _progress(f"{label}: still running, {time.perf_counter() - start:.0f} s")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()


# ---------------------------------------------------------------- the harness


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def machine() -> dict[str, Any]:
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _git() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def run_one(name: str, o: Options, label: str) -> Record:
    rec: Record = {"started_at": _now(), "load_average_before": round(os.getloadavg()[0], 2)}
    _progress(f"{label} {name}: started")
    start = time.perf_counter()
    try:
        with _heartbeat(f"{label} {name}"):
            rec["result"] = BENCHMARKS[name](o, rec)
        rec["status"] = "ok"
    except Skipped as skip:
        rec |= {"status": "skipped", "skipped": skip.reason, **skip.details}
    except (Exception, SystemExit) as e:  # benchmarks' CLIs sys.exit on bad input
        message = str(e.code) if isinstance(e, SystemExit) else f"{type(e).__name__}: {e}"
        rec |= {"status": "error", "error": message,
                "traceback": traceback.format_exc().splitlines()[-25:]}
    rec["finished_at"], rec["elapsed_s"] = _now(), round(time.perf_counter() - start, 2)
    detail = {"ok": "", "skipped": f": {rec.get('skipped')}", "error": f": {rec.get('error')}"}[rec["status"]]
    _progress(f"{label} {name}: {rec['status']} in {rec['elapsed_s']:.1f} s{detail}")
    return rec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results.json"), help="the JSON file written")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), metavar="NAME",
                        help=f"run these only (of: {', '.join(BENCHMARKS)})")
    parser.add_argument("--runs", type=int, help="runs for each benchmark that repeats (default: its own)")
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 run: a smoke test, not figures")
    parser.add_argument("--spider", type=Path, help=f"Spider-train for golden_pairs (default: {DEFAULT_SPIDER} if there)")
    parser.add_argument("--samples", type=Path, help="train_throughput's samples (default: data/samples)")
    parser.add_argument("--base", type=Path, help="train_throughput's model (default: models/base)")
    parser.add_argument("--dvc-repo", type=Path, default=REPO, help="where dvc_noop runs dvc (default: this repo)")
    parser.add_argument("--dvc-targets", nargs="+", default=[], metavar="STAGE",
                        help="dvc_noop: time `dvc repro STAGE...` (default: the whole pipeline)")
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    o = Options(
        quick=args.quick, runs=args.runs,
        spider=args.spider.resolve() if args.spider else None,
        samples=args.samples.resolve() if args.samples else None,
        base=args.base.resolve() if args.base else None,
        dvc_repo=args.dvc_repo.resolve(), dvc_targets=tuple(args.dvc_targets),
    )
    names = [name for name in BENCHMARKS if not args.only or name in args.only]

    doc: dict[str, Any] = {
        "quick": args.quick,
        "command": shlex.join(["python", "-m", "benchmarks.run", *(sys.argv[1:] if argv is None else argv)]),
        "started_at": _now(),
        "machine": machine(),
        "git": _git(),
        "benchmarks": {},
    }
    if args.quick:
        doc["note"] = "--quick: small sizes and 1 run, to smoke-test the harness; do not report these figures"
    _progress(f"{len(names)} benchmark(s): {', '.join(names)}" + (" (quick)" if args.quick else ""))
    interrupted = False
    try:
        for i, name in enumerate(names, start=1):
            doc["benchmarks"][name] = run_one(name, o, f"[{i}/{len(names)}]")
    except KeyboardInterrupt:   # keep what finished; name the one cut short
        interrupted = True
        doc["interrupted"] = f"during {name}; not run: {', '.join(names[i:]) or 'none'}"
        _progress(f"interrupted {doc['interrupted']}: writing what has finished")
    doc["finished_at"] = _now()
    doc["elapsed_s"] = round(time.perf_counter() - _START, 1)
    doc["failed"] = [name for name, rec in doc["benchmarks"].items() if rec["status"] == "error"]
    write_json(args.out, doc)
    _progress(f"wrote {args.out}" + (f"; failed: {', '.join(doc['failed'])}" if doc["failed"] else ""))
    if interrupted:
        return 130
    return 1 if doc["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
