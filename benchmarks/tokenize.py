"""Tokenize throughput (samples/s) on a large synthetic set, at the default params.

    python -m benchmarks.tokenize --synthetic 20000 --runs 3
    python -m benchmarks.tokenize --synthetic 20000 --model models/base --num-proc 2

Synthetic examples go through golden_pairs first (not timed); the tokenizer is the scratch one
trained on that data (as `download` builds it) unless --model names a model directory. Only
`build_samples` is timed: splitting, schema text, conversations, tool calls, encoding, writing.
Target: 5,000 samples/s on 2 cores. Prints a JSON summary (and writes it with --json).
"""

from __future__ import annotations

import argparse
import os
import json
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from pipesql.golden import build_golden_pairs
from pipesql.params.download import SyntheticDataParams
from pipesql.params.golden_pairs import GoldenPairsParams
from pipesql.params.tokenize import TokenizeParams
from pipesql.samples import build_samples
from pipesql.sources.raw import write_raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, default=20_000, help="examples to generate")
    parser.add_argument("--model", type=Path, help="a model directory (default: scratch tokenizer)")
    parser.add_argument("--num-proc", type=int, default=None, help="default: all cores")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args()
    summary = bench(args.synthetic, args.model, args.num_proc, args.runs)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


def bench(
    n_examples: int, model_dir: Path | None, num_proc: int | None, runs: int
) -> dict[str, Any]:
    params = TokenizeParams(num_proc=num_proc)
    with tempfile.TemporaryDirectory() as tmp:
        golden, raw = _golden_pairs(n_examples, Path(tmp))
        model = model_dir or _scratch_tokenizer(raw, Path(tmp) / "model")
        timings = []
        for run in range(runs):
            load = os.getloadavg()[0]
            cpu = _cpu_s()
            start = time.perf_counter()
            metrics = build_samples(golden, raw, model, params, Path(tmp) / f"samples-{run}")
            timings.append((time.perf_counter() - start, _cpu_s() - cpu, load))
    samples = sum(counts["total"] for counts in metrics["samples"].values())
    rates = [round(samples / wall) for wall, _, _ in timings]
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "num_proc": num_proc or os.cpu_count(),
        "model": str(model_dir) if model_dir else "scratch tokenizer (vocab 4096)",
        "examples": n_examples,
        "pairs": sum(metrics["pairs"].values()),
        "samples": samples,
        "tokens_mean": metrics["tokens"]["mean"],
        "tokens_p95": metrics["tokens"]["p95"],
        "seconds": [round(wall, 2) for wall, _, _ in timings],
        "samples_per_s": rates,
        "samples_per_s_median": statistics.median(rates),
        # CPU time over all processes: samples per CPU-second is what an idle core would do,
        # whatever else shared the machine; the load average says how much else did.
        "samples_per_cpu_s": [round(samples / cpu) for _, cpu, _ in timings],
        "load_average_before": [round(load, 2) for _, _, load in timings],
    }


def _cpu_s() -> float:
    """User + system time of this process and of its finished children (the pool's workers)."""
    usages = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usages)


def _golden_pairs(n_examples: int, tmp: Path) -> tuple[Path, Path]:
    from pipesql.sources.synthetic import generate_synthetic

    examples, dbs = generate_synthetic(SyntheticDataParams(n_examples=n_examples), 0, tmp / "gen")
    write_raw(tmp / "raw", examples, dbs)
    result = build_golden_pairs(examples, tmp / "raw", GoldenPairsParams(), total=len(examples))
    result.write(tmp / "golden")
    return tmp / "golden", tmp / "raw"


def _scratch_tokenizer(raw_dir: Path, out_dir: Path) -> Path:
    from pipesql.basemodel.scratch import tokenizer_corpus, train_tokenizer
    from pipesql.params.download import ScratchModelParams

    defaults = ScratchModelParams()
    texts, _ = tokenizer_corpus(raw_dir)
    tokenizer = train_tokenizer(texts, defaults.vocab_size, defaults.max_position_embeddings)
    tokenizer.save_pretrained(out_dir)
    return out_dir


if __name__ == "__main__":
    main()
