"""train stage: a LoRA/QLoRA adapter for models/base, fine-tuned on data/samples with TRL.

    python -m stages.train data/samples models/base models/adapter \\
        --checkpoints checkpoints/train --plots dvclive/train

Started plainly, it checks the request against this machine and runs the launcher `train.launch`
names (accelerate launch with configs/accelerate/<launch>.yaml, or torchrun for several CPU
processes), relaunching it after a divergence rollback; the launched processes train (one attempt
each), and only the main one writes metrics/train.json. With launch multi_node every machine runs
this same command, with the same params.yaml; the machines other than rank 0 add --node-rank and
write nothing but their part of each checkpoint (so they run the command, not dvc, which would
look for outputs they never write).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipesql.io import write_metrics
from pipesql.params.base import load_section
from pipesql.params.train import TrainParams, with_node_rank
from pipesql.prompts.contract import read_contract
from pipesql.stage import run_stage
from pipesql.training.launch import (
    CONFIG_DIR,
    ROLLBACK_EXIT,
    check_machine,
    is_launched,
    launch_command,
    multi_node_failure,
    profile,
    supervise,
    wait_for_rendezvous,
)

if TYPE_CHECKING:
    from transformers import TrainerCallback


def main(callbacks: Sequence[TrainerCallback] = ()) -> None:
    """`callbacks` reach the Trainer in the launched processes (a test's fault injection)."""
    parser = argparse.ArgumentParser(description="Fine-tune the base model on the samples.")
    parser.add_argument("samples_dir", type=Path)
    parser.add_argument("base_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--checkpoints", type=Path, required=True, help="kept across reruns")
    parser.add_argument("--plots", type=Path, help="dvclive directory for per-step plots")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--launch-configs", type=Path, default=CONFIG_DIR)
    parser.add_argument("--node-rank", type=int, help="this machine's train.nodes.rank (launch multi_node)")
    args = parser.parse_args()
    params = load_section("train", TrainParams, args.params)
    if args.node_rank is not None:
        params = with_node_rank(params, args.node_rank, args.params)

    if not is_launched():
        read_contract(args.samples_dir)  # before any launch: the adapter must carry it
        check_machine(params, args.base_dir)
        gpus = 0
        if profile(params) in ("multi_gpu", "deepspeed_zero2") and params.processes is None:
            import torch

            gpus = torch.cuda.device_count()
        module = sys.modules["__main__"].__spec__.name  # stages.train, or a test's driver around it
        command = launch_command(
            params.launch, params.processes, module, sys.argv[1:], args.launch_configs, gpus, params.nodes
        )
        multi_node = params.launch == "multi_node"
        if multi_node:
            wait_for_rendezvous(params.nodes)
        print("launching:", " ".join(command), flush=True)
        status = supervise(command, args.checkpoints, params.guard.max_rollbacks)
        sys.exit(multi_node_failure(params.nodes, status) if multi_node and status else status)

    from accelerate import PartialState

    from pipesql.training.train import RollbackPending, TrainingDiverged, train

    try:
        metrics = train(params, args.samples_dir, args.base_dir, args.out_dir, args.checkpoints, args.plots, callbacks)
    except RollbackPending as e:
        print(f"rolling back: {e}", flush=True)
        sys.exit(ROLLBACK_EXIT)
    except TrainingDiverged as e:
        sys.exit(f"error: {e}")
    if PartialState().is_main_process:
        write_metrics("train", metrics)
        print(f"step {metrics['steps']}: eval loss {metrics['eval_loss_first']:.3f} ->"
              f" {metrics['eval_loss']:.3f}, {metrics['tokens_per_s']} tokens/s,"
              f" {metrics['rollbacks']} rollback(s)")


if __name__ == "__main__":
    run_stage(main)
