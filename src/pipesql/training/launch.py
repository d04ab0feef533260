"""Launch profiles: how the train stage re-runs itself as one or more training processes.

    cpu              accelerate launch, configs/accelerate/cpu.yaml (one process)
    cpu_ddp          torchrun --nproc_per_node N (gloo): several CPU processes
    gpu              accelerate launch, configs/accelerate/gpu.yaml (one process)
    multi_gpu        accelerate launch, configs/accelerate/multi_gpu.yaml (DDP, one process per GPU)
    deepspeed_zero2  accelerate launch, configs/accelerate/deepspeed_zero2.yaml + .json (ZeRO-2)

Why torchrun for several CPU processes: measured here, `accelerate launch --cpu --num_processes
2` and a MULTI_CPU accelerate config without mpirun each start one process, while torchrun
starts two that the Trainer joins over gloo (world size 2). GPUs use accelerate's own profiles.

No torch import here: the parent process only builds a command line.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pipesql.params.base import ParamsError

LAUNCHED_ENV = "PIPESQL_TRAIN_LAUNCHED"  # set in the children, so they train instead of relaunching
CONFIG_DIR = Path("configs/accelerate")
DEFAULT_CPU_PROCESSES = 2


def is_launched() -> bool:
    return os.environ.get(LAUNCHED_ENV) == "1"


def launch_command(
    launch: str,
    processes: int | None,
    module: str,
    module_args: list[str],
    config_dir: Path = CONFIG_DIR,
    gpu_count: int = 0,
) -> list[str]:
    """The command that runs `python -m module module_args` under the profile; pure, for tests.

    `processes` null means one for cpu and gpu, two for cpu_ddp, and every visible GPU
    (`gpu_count`) for multi_gpu and deepspeed_zero2.
    """
    if launch == "cpu_ddp":
        n = processes or DEFAULT_CPU_PROCESSES
        return [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
            "-m", module, *module_args,
        ]
    config = Path(config_dir) / f"{launch}.yaml"
    if not config.is_file():
        raise ParamsError(f"params.yaml: train.launch: {config} not found (run from the repo root)")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
    if launch in ("multi_gpu", "deepspeed_zero2"):
        n = processes or gpu_count
        if n < 1:
            raise ParamsError(f"params.yaml: train.launch: {launch!r} needs GPUs and none is visible")
        command += ["--num_processes", str(n)]
    return [*command, "--module", module, *module_args]


def child_env() -> dict[str, str]:
    return {**os.environ, LAUNCHED_ENV: "1"}
