"""Training throughput and loss curves of batching modes, on the same samples, model and seed.

    python -m benchmarks.train_throughput --samples data/samples --base models/base --steps 40
    python -m benchmarks.train_throughput ... --modes grouped random --repeats 3 --json out.json
    python -m benchmarks.train_throughput ... --modes grouped --losses own trl --repeats 3
    python -m benchmarks.train_throughput ... --launch gpu --attn flash_attention_2

Modes, all through `train()`: `grouped` batches samples of similar length and shuffles the
batches (trainer.ShuffledLengthBatches), `random` batches them in random order, `packed` packs
`--packed-batch-size` rows of `--packed-length` tokens into one padding-free sequence per step.
Losses: `auto` is what the trainer picks for the device, `trl` forces TRL's own loss and metrics
(its fused head), `own` the trainer's labelled-positions loss (see training/trainer.py); the
choice is made by setting `trainer.LABELLED_ONLY_DEVICES` for the run.
Tokens per second counts real (non-padding) tokens, as TRL's `num_tokens` does, between the end
of the warm-up steps and the last step: model loading, dataset preparation and evaluation are
outside the window. With --repeats, the modes alternate and ratios compare each mode's best
run (other load on the machine only ever slows a run down). Each mode's loss curve (every
step, first run) is in the summary: two checkouts run with the same arguments can be compared
step by step. Prints a JSON summary (and writes it with --json).
"""

from __future__ import annotations

import os
import sys

# benchmarks/tokenize.py would shadow the stdlib `tokenize` (imported by inspect, linecache),
# since Python puts the script's folder first on sys.path.
if sys.path and os.path.realpath(sys.path[0]) == os.path.dirname(os.path.realpath(__file__)):
    del sys.path[0]

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments  # noqa: E402

from pipesql.params.train import TrainParams  # noqa: E402
from pipesql.training import trainer as trainer_module  # noqa: E402
from pipesql.training.train import train  # noqa: E402


class Throughput(TrainerCallback):
    """(seconds, tokens) at each training log from step `warmup` on, and every step's loss."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.marks: list[tuple[float, float]] = []
        self.losses: list[float] = []

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if not logs or "loss" not in logs:
            return
        self.losses.append(float(logs["loss"]))
        if state.global_step >= self.warmup:
            self.marks.append((time.perf_counter(), logs["num_tokens"]))

    def tokens_per_s(self) -> float:
        (t0, n0), (t1, n1) = self.marks[0], self.marks[-1]
        return (n1 - n0) / (t1 - t0)


MODES = ("grouped", "random", "packed")
LOSS_DEVICES = {"auto": trainer_module.LABELLED_ONLY_DEVICES, "trl": ("cpu", "cuda", "xpu"), "own": ()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, required=True, help="a tokenize-stage DatasetDict")
    parser.add_argument("--base", type=Path, required=True, help="a model directory")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--losses", nargs="+", choices=list(LOSS_DEVICES), default=["auto"])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the timing")
    parser.add_argument("--batch-size", type=int, default=8, help="samples per step, unpacked")
    parser.add_argument("--packed-batch-size", type=int, default=1, help="packed rows per step")
    parser.add_argument("--packed-length", type=int, default=2048)
    parser.add_argument("--launch", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "flash_attention_2", "eager"])
    parser.add_argument("--repeats", type=int, default=1, help="runs per mode, interleaved")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args()

    variants = [(mode, loss) for mode in args.modes for loss in args.losses]
    runs: dict[str, list[float]] = {f"{mode}/{loss}": [] for mode, loss in variants}
    curves: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for mode, loss in variants:
            tokens_per_s, losses = _measure(args, mode, loss)
            runs[f"{mode}/{loss}"].append(tokens_per_s)
            curves.setdefault(f"{mode}/{loss}", losses)
    best = {key: max(values) for key, values in runs.items()}
    first = next(iter(runs))
    summary = {
        "device": torch.cuda.get_device_name() if args.launch == "gpu" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "samples": str(args.samples),
        "base": str(args.base),
        "steps": args.steps,
        "warmup": args.warmup,
        "batch_size": args.batch_size,
        "packed_batch_size": args.packed_batch_size,
        "packed_length": args.packed_length,
        "tokens_per_s": runs,
        "best_over_first": {key: round(best[key] / best[first], 3) for key in runs},
        "loss_curves": {key: [round(v, 4) for v in losses] for key, losses in curves.items()},
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


def _measure(args: argparse.Namespace, mode: str, loss: str) -> tuple[float, list[float]]:
    trainer_module.LABELLED_ONLY_DEVICES = LOSS_DEVICES[loss]
    packing = mode == "packed"
    params = TrainParams.model_validate({
        "launch": args.launch,
        "attn_implementation": args.attn,
        "packing": packing,
        "group_by_length": mode == "grouped",
        "packed_length": args.packed_length,
        "max_steps": args.steps,
        "batch_size": args.packed_batch_size if packing else args.batch_size,
        "logging_steps": 1,
        "eval_steps": args.steps,
        "save_steps": args.steps,
        "eval_max_samples": 8,
        "guard": {"enabled": False},
    })
    meter = Throughput(args.warmup)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        train(params, args.samples, args.base, root / "adapter", root / "checkpoints", callbacks=[meter])
    return round(meter.tokens_per_s(), 1), meter.losses


if __name__ == "__main__":
    main()
