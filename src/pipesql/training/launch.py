"""Launch profiles: how the train stage re-runs itself as one or more training processes.

    cpu              accelerate launch, configs/accelerate/cpu.yaml (one process)
    cpu_ddp          torchrun --nproc_per_node N (gloo): several CPU processes
    gpu              accelerate launch, configs/accelerate/gpu.yaml (one process)
    multi_gpu        accelerate launch, configs/accelerate/multi_gpu.yaml (DDP, one process per GPU)
    deepspeed_zero2  accelerate launch, configs/accelerate/deepspeed_zero2.yaml + .json (ZeRO-2)
    multi_node       train.nodes.profile on each of train.nodes.count machines: torchrun's static
                     rendezvous at train.nodes.address:port (cpu_ddp), or accelerate launch with
                     configs/accelerate/multi_node_gpu.yaml (DDP) / multi_node_zero2.yaml (ZeRO-2)

Why torchrun for several CPU processes: measured here, `accelerate launch --cpu --num_processes
2` and a MULTI_CPU accelerate config without mpirun each start one process, while torchrun
starts two that the Trainer joins over gloo (world size 2). GPUs use accelerate's own profiles.

The stage's own process stays as the supervisor (`supervise`): a divergence ends the training
processes (one attempt each), and a rollback is a fresh launch that resumes from the newest
complete checkpoint at the lowered rate. Nothing of the diverged attempt (its model, optimizer,
DeepSpeed engine, CUDA memory) lives on into the next.

No torch import here: the parent process only builds a command line and checks the request.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipesql.params.base import ParamsError
from pipesql.params.train import NodesParams, TrainParams
from pipesql.training.checkpoints import read_record

LAUNCHED_ENV = "PIPESQL_TRAIN_LAUNCHED"  # set in the children, so they train instead of relaunching
CONFIG_DIR = Path("configs/accelerate")
DEFAULT_CPU_PROCESSES = 2
CPU_LAUNCHES = ("cpu", "cpu_ddp")
ROLLBACK_EXIT = 75  # a training process's status after recording a divergence (EX_TEMPFAIL)
MULTI_NODE_CONFIGS = {"multi_gpu": "multi_node_gpu", "deepspeed_zero2": "multi_node_zero2"}


def profile(params: TrainParams) -> str:
    """The profile each machine's processes run: train.launch, or train.nodes.profile across machines."""
    return params.nodes.profile if params.launch == "multi_node" else params.launch


def profile_key(params: TrainParams) -> str:
    """The key an error about the profile names."""
    return "train.nodes.profile" if params.launch == "multi_node" else "train.launch"


def uses_cpu(params: TrainParams) -> bool:
    return profile(params) in CPU_LAUNCHES


def check_request(
    params: TrainParams, base_config: Mapping[str, Any], cuda_available: bool, flash_attn_installed: bool
) -> None:
    """What this machine or this base cannot honour, as one error naming the key; before any load.

    Called by the stage before it launches and again by `train` in every process (which may be
    called directly), so a bad request never gets as far as loading weights.
    """
    if not uses_cpu(params) and not cuda_available:
        raise ParamsError(
            f"params.yaml: {profile_key(params)}: {profile(params)!r} is a GPU profile, but no CUDA device is"
            " visible; use cpu (or cpu_ddp) on this machine"
        )
    if params.launch == "multi_node" and not params.nodes.address:
        raise ParamsError(
            "params.yaml: train.nodes.address: launch multi_node needs rank 0's host name or IP,"
            " as every machine reaches it (127.0.0.1 for machines on one host)"
        )
    if params.attn_implementation == "flash_attention_2":
        if uses_cpu(params):
            raise ParamsError(
                "params.yaml: train.attn_implementation: flash_attention_2 needs a CUDA GPU;"
                " use sdpa with a cpu launch"
            )
        if not flash_attn_installed:
            raise ParamsError(
                "params.yaml: train.attn_implementation: flash_attention_2 needs the flash-attn"
                " package, which is not installed (pip install flash-attn --no-build-isolation); or use sdpa"
            )
    quantized = base_config.get("quantization_config")
    if quantized and params.quantization != "none":
        method = quantized.get("quant_method", "unknown method") if isinstance(quantized, Mapping) else quantized
        raise ParamsError(
            f"params.yaml: train.quantization: {params.quantization!r}, but the base model is already"
            f" quantized ({method}, in its config.json quantization_config); set train.quantization:"
            " none to train LoRA on it as it is, or start from an unquantized base"
        )


def check_machine(params: TrainParams, base_dir: Path) -> None:
    """`check_request` with this machine's CUDA and flash-attn, and base_dir's config.json."""
    import importlib.util

    config_path = Path(base_dir) / "config.json"
    base_config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    cuda = False
    if not uses_cpu(params):
        import torch  # only for a GPU profile: a cpu launch keeps this process light

        cuda = torch.cuda.is_available()
    check_request(params, base_config, cuda, importlib.util.find_spec("flash_attn") is not None)


def is_launched() -> bool:
    return os.environ.get(LAUNCHED_ENV) == "1"


def launch_command(
    launch: str,
    processes: int | None,
    module: str,
    module_args: list[str],
    config_dir: Path = CONFIG_DIR,
    gpu_count: int = 0,
    nodes: NodesParams | None = None,
) -> list[str]:
    """The command that runs `python -m module module_args` under the profile; pure, for tests.

    `processes` null means one for cpu and gpu, two for cpu_ddp, and every visible GPU
    (`gpu_count`) for multi_gpu and deepspeed_zero2; for multi_node, `nodes` says where this
    machine stands and `processes` counts this machine's.
    """
    if launch == "multi_node":
        if nodes is None:
            raise ValueError("launch_command: launch multi_node needs the train.nodes params")
        return _multi_node_command(nodes, processes, module, module_args, config_dir, gpu_count)
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
    if launch == "deepspeed_zero2":  # the yaml's relative path holds only from the repo root
        command += ["--deepspeed_config_file", str((Path(config_dir) / f"{launch}.json").resolve())]
    if launch in ("multi_gpu", "deepspeed_zero2"):
        n = processes or gpu_count
        if n < 1:
            raise ParamsError(f"params.yaml: train.launch: {launch!r} needs GPUs and none is visible")
        command += ["--num_processes", str(n)]
    return [*command, "--module", module, *module_args]


def _multi_node_command(
    nodes: NodesParams, processes: int | None, module: str, module_args: list[str], config_dir: Path, gpu_count: int
) -> list[str]:
    """This machine's launcher, joining the others at nodes.address:port.

    No restarts (max_restarts 0): a machine that fails ends the run on every machine, and the
    rerun resumes from the shared checkpoint. The rendezvous waits nodes.timeout_s for them all.
    """
    meet = {"rdzv_conf": f"timeout={nodes.timeout_s}", "max_restarts": "0"}
    if nodes.profile == "cpu_ddp":
        n = processes or DEFAULT_CPU_PROCESSES
        where = {"nnodes": nodes.count, "nproc_per_node": n, "node_rank": nodes.rank,
                 "master_addr": nodes.address, "master_port": nodes.port, **meet}
        return [sys.executable, "-m", "torch.distributed.run", *(f"--{k}={v}" for k, v in where.items()),
                "-m", module, *module_args]
    config = Path(config_dir) / f"{MULTI_NODE_CONFIGS[nodes.profile]}.yaml"
    if not config.is_file():
        raise ParamsError(f"params.yaml: train.nodes.profile: {config} not found (run from the repo root)")
    n = processes or gpu_count
    if n < 1:
        raise ParamsError(f"params.yaml: train.nodes.profile: {nodes.profile!r} needs GPUs and none is visible")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
    if nodes.profile == "deepspeed_zero2":
        command += ["--deepspeed_config_file", str((Path(config_dir) / "deepspeed_zero2.json").resolve())]
    where = {"num_machines": nodes.count, "machine_rank": nodes.rank, "main_process_ip": nodes.address,
             "main_process_port": nodes.port, "num_processes": n * nodes.count, **meet}  # all machines'
    for key, value in where.items():
        command += [f"--{key}", str(value)]
    return [*command, "--module", module, *module_args]


def wait_for_rendezvous(nodes: NodesParams, poll_s: float = 1.0) -> None:
    """Rank 0's address must resolve; the other ranks wait (bounded) until something answers there.

    Checked before launching, so that a wrong address or a rank 0 that never starts is one error
    naming the keys, not a launcher's timeout deep in its own log.
    """
    host, port = str(nodes.address), nodes.port
    try:
        socket.getaddrinfo(host, port)
    except socket.gaierror as e:
        raise ParamsError(f"params.yaml: train.nodes.address: {host!r} does not resolve here ({e})") from None
    if nodes.rank == 0:
        return
    deadline = time.monotonic() + nodes.timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=max(0.1, min(5.0, deadline - time.monotonic()))):
                return
        except OSError as e:
            if time.monotonic() + poll_s >= deadline:
                raise ParamsError(
                    f"params.yaml: train.nodes.address: nothing answers at {host}:{port} after"
                    f" {nodes.timeout_s}s (train.nodes.timeout_s; last: {e}); start rank 0's machine"
                    " and check that train.nodes.address and train.nodes.port reach it from here"
                ) from None
            time.sleep(poll_s)


def multi_node_failure(nodes: NodesParams, status: int) -> str:
    """What the stage says when this machine's processes fail: on several machines, often another's fault."""
    return (
        f"error: training ended with status {status} on machine {nodes.rank} of {nodes.count}"
        f" (rendezvous {nodes.address}:{nodes.port}): a machine that fails, is killed or does not join"
        f" within train.nodes.timeout_s ({nodes.timeout_s}s) ends the run on every machine; the log"
        " above names the peer. Rerun the stage on every machine to resume from the newest complete checkpoint"
    )


def child_env() -> dict[str, str]:
    return {**os.environ, LAUNCHED_ENV: "1"}


def supervise(command: list[str], checkpoint_dir: Path, max_rollbacks: int) -> int:
    """Run the training command; relaunch it while its processes end on a recorded divergence.

    The training processes record the event in the run record (`rollback_pending`) before they
    exit, and the relaunched ones resume from the newest complete checkpoint at the lowered rate
    the record holds. The status is read from the record, not the exit code: launchers (accelerate,
    torchrun) report a failed child as their own status 1. At most max_rollbacks relaunches: the
    training processes stop on their own past that, with the events listed. SIGTERM is passed on
    to the launcher (SIGINT from a terminal reaches the whole process group already).
    """
    for relaunches in range(max_rollbacks + 1):
        if relaunches:
            print(f"relaunching after divergence rollback {relaunches}:", " ".join(command), flush=True)
        status = _wait(subprocess.Popen(command, env=child_env()))
        record = read_record(Path(checkpoint_dir))
        if status == 0 or record is None or not record.rollback_pending:
            return status
    return status


def _wait(process: subprocess.Popen[bytes]) -> int:
    def forward(signum: int, frame: Any) -> None:
        process.send_signal(signum)

    previous_term = signal.signal(signal.SIGTERM, forward)
    previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return process.wait()
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)
