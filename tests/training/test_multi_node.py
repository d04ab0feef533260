"""launch: multi_node as two machines on loopback: two stage commands, each its own torchrun with
--nnodes 2 and one process, meeting on 127.0.0.1 over gloo; the checkpoint directory is shared,
as the README asks of real machines, and each "machine" has its own working directory.

What this proves: the rendezvous, world size 2 across two launchers, the ranks' weights equal after
the last step, outputs from rank 0 only, a killed or a stalled machine ending the other within a
bound, both
resuming from the shared checkpoint, and the errors for an unshared checkpoint directory and an
unreachable rendezvous.
What it does not: a real network, NCCL, DeepSpeed across hosts (no GPUs here).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from pipesql.params.train import TrainParams

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[2]
Params = Callable[..., TrainParams]
TIMEOUT_S = 30  # train.nodes.timeout_s here: how long a survivor may wait for a dead peer

# The stage with two test callbacks: each rank saves its trainable weights at the end, and with
# PAUSE_AT_STEP set rank 1 reports that step and stalls there, so the test can kill its machine.
_DRIVER = """
import os, time
from pathlib import Path
import torch
from transformers import TrainerCallback
from pipesql.stage import run_stage
from stages.train import main

OUT = Path(os.environ["TWO_NODES_OUT"])

class Weights(TrainerCallback):
    def on_train_end(self, args, state, control, model=None, **kwargs):
        rank = int(os.environ["RANK"])
        trained = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        torch.save(trained, OUT / f"weights-rank{rank}.pt")

class Stall(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if os.environ.get("RANK") == "1" and state.global_step == int(os.environ.get("PAUSE_AT_STEP", 0)):
            (OUT / "rank1-paused").write_text(str(os.getpid()))
            time.sleep(600)

if __name__ == "__main__":
    run_stage(lambda: main([Weights(), Stall()]))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_nodes(
    params: Params, samples: Path, base: Path, root: Path, ranks: tuple[int, ...] = (0, 1), shared_dir: bool = True,
    timeout_s: int = TIMEOUT_S, save_steps: int = 4, rank1_steps: int = 4, **env: str,
) -> list[subprocess.Popen[str]]:
    """Stage commands, as two machines would run them: the same params.yaml, --node-rank on rank 1;
    the checkpoint directory shared, or (shared_dir False) each machine's own."""
    shared = root / "shared"
    shared.mkdir(exist_ok=True)
    (shared / "two_nodes.py").write_text(_DRIVER)
    port = _free_port()
    nodes = []
    for rank in ranks:
        cwd = root / f"node{rank}"
        cwd.mkdir(exist_ok=True)
        steps = rank1_steps if rank else 4
        train = params(launch="multi_node", processes=1, max_steps=steps, batch_size=2, save_steps=save_steps, nodes={
            "profile": "cpu_ddp", "count": 2, "address": "127.0.0.1", "port": port, "timeout_s": timeout_s,
        })
        (cwd / "params.yaml").write_text(yaml.safe_dump({"train": train.model_dump(mode="json")}))
        command = [
            sys.executable, "-m", "two_nodes", str(samples), str(base), "models/adapter",
            "--checkpoints", str(shared / "checkpoints") if shared_dir else "checkpoints", "--plots", "dvclive/train",
            "--launch-configs", str(REPO_ROOT / "configs" / "accelerate"), *(["--node-rank", "1"] if rank else []),
        ]
        node_env = {k: v for k, v in os.environ.items() if k != "PIPESQL_TRAIN_LAUNCHED"}
        node_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(shared), str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p
        )
        node_env.update(TWO_NODES_OUT=str(shared), **env)
        nodes.append(subprocess.Popen(command, cwd=cwd, env=node_env, text=True, start_new_session=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    return nodes


def _finish(node: subprocess.Popen[str], timeout: float) -> str:
    try:
        out, _ = node.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(node.pid, signal.SIGKILL)
        out, _ = node.communicate()
        pytest.fail(f"node did not end within {timeout}s:\n{out[-3000:]}")
    return out


def test_two_machines_on_loopback_train_as_one(
    tiny_params: Params, tiny_samples: Path, tiny_base: Path, tmp_path: Path
) -> None:
    nodes = _start_nodes(tiny_params, tiny_samples, tiny_base, tmp_path)
    outputs = [_finish(node, 240) for node in nodes]
    for node, out in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, out[-3000:]
    assert "--nnodes=2" in outputs[0] and "--node_rank=1" in outputs[1]
    node0, node1, shared = tmp_path / "node0", tmp_path / "node1", tmp_path / "shared"
    metrics = json.loads((node0 / "metrics" / "train.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 4
    # outputs written once, by rank 0; rank 1 wrote only its part of each checkpoint
    assert (node0 / "models" / "adapter" / "adapter_model.safetensors").is_file()
    assert (node0 / "dvclive" / "train" / "plots").is_dir()
    assert sorted(p.name for p in node1.iterdir()) == ["params.yaml"]
    assert (shared / "checkpoints" / "checkpoint-4" / "rng_state_1.pth").is_file()
    # the ranks' weights are the same after the last step, and the adapter holds them
    ranks = [torch.load(shared / f"weights-rank{r}.pt") for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys() and ranks[0]
    for name, weight in ranks[0].items():
        assert torch.equal(weight, ranks[1][name]), name
    saved = load_file(node0 / "models" / "adapter" / "adapter_model.safetensors")
    lora_b = [n for n in ranks[0] if "lora_B" in n]
    assert lora_b and all(ranks[0][n].abs().sum() > 0 for n in lora_b)  # trained, not the zero init
    for name in (n for n in ranks[0] if "lora_" in n):
        assert torch.equal(saved[name.replace(".default", "")], ranks[0][name]), name


def test_a_killed_machine_ends_the_other_with_a_clear_error_and_both_resume(
    tiny_params: Params, tiny_samples: Path, tiny_base: Path, tmp_path: Path
) -> None:
    """...and the rerun on both machines resumes from the last complete checkpoint (step 2)."""
    nodes = _start_nodes(tiny_params, tiny_samples, tiny_base, tmp_path, save_steps=2, PAUSE_AT_STEP="3")
    paused = tmp_path / "shared" / "rank1-paused"
    deadline = time.monotonic() + 240
    while not paused.is_file():
        if time.monotonic() > deadline or any(node.poll() is not None for node in nodes):
            for node in nodes:
                os.killpg(node.pid, signal.SIGKILL)
            pytest.fail("rank 1 never reached step 3:\n" + "\n".join(n.communicate()[0][-2000:] for n in nodes))
        time.sleep(0.2)
    # machine 1 goes away: its stage and launcher, and its training process (torchrun starts that
    # in a session of its own)
    os.killpg(nodes[1].pid, signal.SIGKILL)
    os.kill(int(paused.read_text()), signal.SIGKILL)
    killed = time.monotonic()
    out = _finish(nodes[0], TIMEOUT_S + 60)
    nodes[1].communicate()
    assert time.monotonic() - killed < TIMEOUT_S, out[-3000:]  # gloo sees the closed socket (~5 s here)
    assert nodes[0].returncode == 1, out[-3000:]
    assert "Connection closed by peer [127.0.0.1]" in out  # the log names the peer
    last = out.strip().splitlines()[-1]
    assert last.startswith("error: training ended with status 1 on machine 0 of 2 (rendezvous 127.0.0.1:"), out[-3000:]
    assert not (tmp_path / "node0" / "models").exists()


def test_checkpoints_each_machine_sees_alone_stop_the_run(
    tiny_params: Params, tiny_samples: Path, tiny_base: Path, tmp_path: Path
) -> None:
    """Each rank writes its part of a checkpoint into the directory: it must be one for all."""
    nodes = _start_nodes(tiny_params, tiny_samples, tiny_base, tmp_path, shared_dir=False)
    outputs = [_finish(node, 240) for node in nodes]
    assert [node.returncode for node in nodes] == [1, 1], outputs[1][-3000:]
    assert "checkpoints: rank 1 does not see rank 0's checkpoint directory; train.launch multi_node needs" in outputs[1]
    assert not (tmp_path / "node0" / "models").exists()


def test_an_unreachable_rendezvous_stops_the_stage_before_launching(
    tiny_params: Params, tiny_samples: Path, tiny_base: Path, tmp_path: Path
) -> None:
    """Rank 1 alone: nothing answers at rank 0's address, so after train.nodes.timeout_s it stops."""
    [node] = _start_nodes(tiny_params, tiny_samples, tiny_base, tmp_path, ranks=(1,), timeout_s=3)
    out = _finish(node, 60)
    assert node.returncode == 1 and "launching" not in out, out[-3000:]
    assert out.strip().splitlines()[-1].startswith(
        f"error: params.yaml: train.nodes.address: nothing answers at 127.0.0.1:"), out[-3000:]
    assert "after 3s (train.nodes.timeout_s" in out


def test_params_that_differ_between_machines_stop_the_run_naming_the_key(
    tiny_params: Params, tiny_samples: Path, tiny_base: Path, tmp_path: Path
) -> None:
    nodes = _start_nodes(tiny_params, tiny_samples, tiny_base, tmp_path, rank1_steps=6)
    outputs = [_finish(node, 240) for node in nodes]
    assert [node.returncode for node in nodes] == [1, 1], outputs[1][-3000:]
    assert "error: params.yaml: train.max_steps: 6 on this machine, 4 on rank 0's; every machine needs" in outputs[1]


def test_rank_0_alone_waits_for_the_others_a_bounded_time(
    tiny_params: Params, tiny_samples: Path, tiny_base: Path, tmp_path: Path
) -> None:
    [node] = _start_nodes(tiny_params, tiny_samples, tiny_base, tmp_path, ranks=(0,), timeout_s=3)
    out = _finish(node, 60)
    assert node.returncode == 1 and "1/2 clients joined" in out, out[-3000:]  # torchrun's rendezvous
    assert out.strip().splitlines()[-1].startswith("error: training ended with status 1 on machine 0 of 2")


def test_a_stalled_machine_ends_the_other_after_the_collective_timeout(
    tiny_params: Params, tiny_samples: Path, tiny_base: Path, tmp_path: Path
) -> None:
    """Rank 1 alive but stuck (no closed connection to notice): rank 0's next collective gives up
    after train.nodes.timeout_s, and its stage stops instead of hanging."""
    timeout_s = 20
    nodes = _start_nodes(tiny_params, tiny_samples, tiny_base, tmp_path, timeout_s=timeout_s, PAUSE_AT_STEP="2")
    paused = tmp_path / "shared" / "rank1-paused"
    try:
        deadline = time.monotonic() + 240
        while not paused.is_file() and time.monotonic() < deadline and nodes[0].poll() is None:
            time.sleep(0.2)
        assert paused.is_file(), "rank 1 never reached step 2"
        stalled = time.monotonic()
        out = _finish(nodes[0], timeout_s + 60)
        waited = time.monotonic() - stalled
    finally:
        os.killpg(nodes[1].pid, signal.SIGKILL)
        if paused.is_file():
            os.kill(int(paused.read_text()), signal.SIGKILL)
        nodes[1].communicate()
    assert nodes[0].returncode == 1, out[-3000:]
    assert timeout_s - 5 < waited < timeout_s + 60, (waited, out[-3000:])
    assert "timed out" in out.lower(), out[-3000:]  # gloo's own words, before the stage's line
    assert out.strip().splitlines()[-1].startswith("error: training ended with status 1 on machine 0 of 2")
