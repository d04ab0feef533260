"""End-to-end training of the tiny model on CPU: outputs, resume after SIGKILL, init_from, the
divergence guard and its relaunch under the launcher, gradient checkpointing with LoRA and QLoRA,
packing, QLoRA on bitsandbytes' CPU backend, S3 uploads, two processes, requests refused early.

Each run is a few optimizer steps of a 2-layer, 32-wide model, so the file stays near two minutes
on 2 cores; the subprocess tests pay mostly for imports.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from pipesql.params.base import ParamsError
from pipesql.params.train import TrainParams
from pipesql.prompts.contract import CONTRACT_FILE
from pipesql.training.checkpoints import COMPLETE_MARKER, RUN_RECORD, read_record
from pipesql.training.train import CONFIG_FILE, RollbackPending, TrainingDiverged, train

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[2]
Params = Callable[..., TrainParams]


def run(params: TrainParams, samples: Path, base: Path, root: Path, **kwargs: Any) -> dict[str, Any]:
    return train(params, samples, base, root / "adapter", root / "checkpoints", root / "live", **kwargs)


@pytest.fixture(scope="module")
def short_run(
    tiny_params: Params, tiny_samples: Path, tiny_base: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("short")
    return root, run(tiny_params(), tiny_samples, tiny_base, root)


def test_short_run_learns_and_writes_everything(short_run: tuple[Path, dict]) -> None:
    root, metrics = short_run
    assert metrics["steps"] == 8 and metrics["world_size"] == 1 and metrics["precision"] == "fp32"
    assert metrics["eval_loss"] < metrics["eval_loss_first"] - 0.1, metrics
    assert metrics["rollbacks"] == 0 and metrics["divergence_events"] == []
    assert 0 < metrics["trainable_parameters"] < metrics["parameters"]
    adapter = root / "adapter"
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "chat_template.jinja", CONFIG_FILE):
        assert (adapter / name).is_file(), name
    resolved = json.loads((adapter / CONFIG_FILE).read_text())
    assert resolved["params"]["max_steps"] == 8 and resolved["trainer_args"]["max_steps"] == 8
    checkpoints = sorted(p.name for p in (root / "checkpoints").glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-4", "checkpoint-8"]
    assert all((root / "checkpoints" / c / COMPLETE_MARKER).is_file() for c in checkpoints)


def test_plots_have_one_row_per_logged_step(short_run: tuple[Path, dict]) -> None:
    root, _ = short_run
    plots = root / "live" / "plots" / "metrics"
    for name, steps in {
        "train/loss.tsv": list(range(1, 9)),
        "train/learning_rate.tsv": list(range(1, 9)),
        "train/grad_norm.tsv": list(range(1, 9)),
        "train/token_accuracy.tsv": list(range(1, 9)),
        "eval/loss.tsv": [0, 4, 8],
        "eval/token_accuracy.tsv": [0, 4, 8],
    }.items():
        rows = (plots / name).read_text().splitlines()
        assert rows[0].startswith("step\t") and [int(r.split("\t")[0]) for r in rows[1:]] == steps, name
    assert not list((root / "live").rglob("dvc.yaml"))  # dvc.yaml of the project declares the plots


def test_resume_after_sigkill_ends_at_the_right_step(
    tiny_params: Params, tiny_samples: Path, tiny_base: Path, tmp_path: Path
) -> None:
    params = tiny_params(max_steps=12)
    driver = tmp_path / "driver.py"
    driver.write_text(_DRIVER)
    args = [sys.executable, str(driver), params.model_dump_json(), str(tiny_samples), str(tiny_base), str(tmp_path)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    marker = tmp_path / "checkpoints" / "checkpoint-4" / COMPLETE_MARKER
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "no checkpoint-4 within 120 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "adapter").exists()
    half_written = tmp_path / "checkpoints" / "checkpoint-10"  # what a kill during a save leaves
    half_written.mkdir()
    (half_written / "adapter_model.safetensors").write_bytes(b"partial")

    metrics = run(params, tiny_samples, tiny_base, tmp_path)
    assert metrics["resumed_from_step"] in (4, 8) and metrics["steps"] == 12
    assert not half_written.exists()
    losses = [int(r.split("\t")[0]) for r in (tmp_path / "live/plots/metrics/train/loss.tsv").read_text().splitlines()[1:]]
    assert losses == list(range(1, 13))  # the plots hold the whole run, not only what followed the resume


_DRIVER = """
import sys, time
from pathlib import Path
from transformers import TrainerCallback
from pipesql.params.train import TrainParams
from pipesql.training.train import train

class Slow(TrainerCallback):  # steps after the first checkpoint take long enough to be killed in
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= 4:
            time.sleep(0.5)

params, samples, base, root = TrainParams.model_validate_json(sys.argv[1]), *map(Path, sys.argv[2:])
train(params, samples, base, root / "adapter", root / "checkpoints", root / "live", callbacks=[Slow()])
"""


def test_init_from_starts_at_step_zero_with_the_adapters_weights(
    short_run: tuple[Path, dict], tiny_params: Params, tiny_samples: Path, tiny_base: Path, tmp_path: Path
) -> None:
    root, first = short_run
    params = tiny_params(init_from=str(root / "adapter"), max_steps=2, learning_rate=1.0e-4)
    metrics = run(params, tiny_samples, tiny_base, tmp_path)
    assert metrics["steps"] == 2 and metrics["resumed_from_step"] is None
    assert metrics["eval_loss_first"] == pytest.approx(first["eval_loss"], rel=1e-4)  # its weights
    state = json.loads((tmp_path / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text())
    first_step = next(h for h in state["log_history"] if "loss" in h)
    assert first_step["learning_rate"] == pytest.approx(1e-4)  # a fresh schedule, not the adapter's

    mismatched = tiny_params(init_from=str(root / "adapter"), lora={"r": 4})
    with pytest.raises(ParamsError, match=r"train.lora: does not match the adapter .* r: adapter 8, params 4"):
        run(mismatched, tiny_samples, tiny_base, tmp_path / "other")


class InjectFault(TrainerCallback):
    """Once, before optimizer step `step`: NaN into the adapter, or noise into the embeddings.

    The same object serves every attempt, so the rolled-back run meets no second fault.
    """

    def __init__(self, step: int, kind: str) -> None:
        self.step, self.kind, self.fired = step, kind, False

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any = None, **kwargs: Any
    ) -> None:
        if self.fired or state.global_step != self.step - 1:
            return
        self.fired = True
        with torch.no_grad():
            for name, param in model.named_parameters():
                if self.kind == "nan" and "lora_B" in name:
                    param.fill_(math.nan)
                elif self.kind == "spike" and "embed_tokens" in name:
                    param.add_(torch.randn_like(param) * 20)


@pytest.mark.parametrize(("kind", "reason"), [("nan", "loss is nan"), ("spike", "x its moving average")])
def test_guard_ends_the_attempt_and_the_next_one_recovers(
    kind: str, reason: str, tiny_params: Params, tiny_samples: Path, tiny_base: Path, tmp_path: Path
) -> None:
    """One attempt per call: the trip is recorded and pending; the next call (a relaunch) resumes."""
    guard = {"window": 3, "spike_factor": 2.0, "lr_factor": 0.5, "patience": 1}  # trip on the first spike
    params = tiny_params(max_steps=10, guard=guard)
    with pytest.raises(RollbackPending, match=r"step 6 .* resumes from checkpoint-4 at learning rate x0.5"):
        run(params, tiny_samples, tiny_base, tmp_path, callbacks=[InjectFault(6, kind)])
    record = read_record(tmp_path / "checkpoints")
    assert record.rollback_pending and len(record.events) == 1
    assert not (tmp_path / "adapter").exists()

    metrics = run(params, tiny_samples, tiny_base, tmp_path)
    [event] = metrics["divergence_events"]
    assert event["step"] == 6 and reason in event["reason"]
    assert event["rolled_back_to"] == 4 and event["lr_scale"] == 0.5 and metrics["lr_scale"] == 0.5
    assert metrics["steps"] == 10 and metrics["resumed_from_step"] == 4 and math.isfinite(metrics["train_loss"])
    assert metrics["eval_loss"] < metrics["eval_loss_first"]
    weights = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert not (tmp_path / "checkpoints" / "checkpoint-6").exists()  # the diverged step is never saved
    record = json.loads((tmp_path / "checkpoints" / RUN_RECORD).read_text())
    assert record["events"] == metrics["divergence_events"] and not record["rollback_pending"]
    state = json.loads((tmp_path / "checkpoints" / "checkpoint-8" / "trainer_state.json").read_text())
    scale = {h["step"]: h["learning_rate"] / _cosine(1.0e-2, h["step"], 10) for h in state["log_history"] if "loss" in h}
    assert scale == pytest.approx({1: 1, 2: 1, 3: 1, 4: 1, 5: 0.5, 6: 0.5, 7: 0.5, 8: 0.5})  # halved after step 4


def test_a_rollback_relaunches_under_the_launcher(
    tiny_params: Params, tiny_samples: Path, tiny_base: Path, tmp_path: Path
) -> None:
    """The stage under accelerate launch, a NaN injected in the first launch: a second launch
    resumes from checkpoint-4 at half the rate and finishes; metrics/train.json has the event."""
    params = tiny_params(max_steps=10)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"train": params.model_dump(mode="json")}))
    (tmp_path / "nan_once.py").write_text(_NAN_ONCE)
    command = [
        sys.executable, "-m", "nan_once", str(tiny_samples), str(tiny_base), "models/adapter",
        "--checkpoints", "checkpoints/train", "--launch-configs", str(REPO_ROOT / "configs" / "accelerate"),
    ]
    proc = subprocess.run(command, cwd=tmp_path, env=_stage_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("accelerate.commands.launch") == 2 and "relaunching after divergence rollback 1" in proc.stdout
    metrics = json.loads((tmp_path / "metrics" / "train.json").read_text())
    assert metrics["steps"] == 10 and metrics["rollbacks"] == 1 and metrics["resumed_from_step"] == 4
    [event] = metrics["divergence_events"]
    assert event["step"] == 6 and event["reason"] == "loss is nan" and event["lr_scale"] == 0.5


_NAN_ONCE = """
import json, math
from pathlib import Path
import torch
from transformers import TrainerCallback
from pipesql.stage import run_stage
from stages.train import main

class NanOnce(TrainerCallback):  # NaN into the adapter before step 6 while the run record has no event
    def on_step_begin(self, args, state, control, model=None, **kwargs):
        record = json.loads((Path(args.output_dir) / "pipesql_run.json").read_text())
        if state.global_step == 5 and not record["events"]:
            with torch.no_grad():
                for name, param in model.named_parameters():
                    if "lora_B" in name:
                        param.fill_(math.nan)

if __name__ == "__main__":
    run_stage(lambda: main([NanOnce()]))
"""


def _stage_env(cwd: Path) -> dict[str, str]:
    """The stage run as dvc.yaml runs it, from another cwd; the caller's PYTHONPATH kept after."""
    env = {k: v for k, v in os.environ.items() if k != "PIPESQL_TRAIN_LAUNCHED"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(cwd), str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    return env


def _cosine(peak: float, step: int, total: int) -> float:
    """The rate transformers logs for optimizer step `step` of a warmup-free cosine schedule."""
    return peak * 0.5 * (1 + math.cos(math.pi * (step - 1) / total))


def test_guard_stops_with_a_clear_message_when_rollbacks_run_out(
    tiny_params: Params, tiny_samples: Path, tiny_base: Path, tmp_path: Path
) -> None:
    params = tiny_params(guard={"max_rollbacks": 0})
    with pytest.raises(TrainingDiverged, match=r"diverged 1 times.*step 3: loss is nan.*train.learning_rate"):
        run(params, tiny_samples, tiny_base, tmp_path, callbacks=[InjectFault(3, "nan")])
    assert not (tmp_path / "adapter").exists()
    assert not read_record(tmp_path / "checkpoints").rollback_pending  # nothing for the stage to relaunch


def test_packing_gives_the_same_first_step_loss(
    tiny_params: Params, tiny_samples: Path, tiny_base: Path, tmp_path: Path
) -> None:
    """One batch holds the same 4 samples either way; any attention across samples would show."""
    from datasets import load_from_disk

    four = tmp_path / "four"
    splits = load_from_disk(str(tiny_samples))
    splits["train"] = splits["train"].select(range(4))
    splits.save_to_disk(four)
    shutil.copy(tiny_samples / CONTRACT_FILE, four / CONTRACT_FILE)  # the adapter carries it
    first_losses = {}
    for packing in (False, True):
        params = tiny_params(packing=packing, max_steps=1)
        run(params, four, tiny_base, tmp_path / str(packing))
        state = json.loads((tmp_path / str(packing) / "checkpoints/checkpoint-1/trainer_state.json").read_text())
        first_losses[packing] = next(h["loss"] for h in state["log_history"] if "loss" in h)
    assert first_losses[True] == pytest.approx(first_losses[False], rel=1e-5)


def test_packed_length_shorter_than_a_sample_names_the_key(
    tiny_params: Params, tiny_samples: Path, tiny_base: Path, tmp_path: Path
) -> None:
    with pytest.raises(ParamsError, match="train.packed_length: 16 is shorter than the longest training sample"):
        run(tiny_params(packing=True, packed_length=16), tiny_samples, tiny_base, tmp_path)


@pytest.fixture(scope="module")
def base64(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model 64 wide: bitsandbytes' CPU kernels need one quantization block (64)."""
    base = tmp_path_factory.mktemp("base64")
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    config = AutoConfig.from_pretrained(tiny_base)
    config.hidden_size, config.intermediate_size = 64, 128
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config).save_pretrained(base)
    tokenizer.save_pretrained(base)
    return base


@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_quantized_base_trains_on_bitsandbytes_cpu_backend(
    quantization: str, tiny_params: Params, tiny_samples: Path, base64: Path, tmp_path: Path
) -> None:
    params = tiny_params(quantization=quantization, max_steps=4)
    metrics = run(params, tiny_samples, base64, tmp_path)
    assert metrics["steps"] == 4 and math.isfinite(metrics["train_loss"])
    assert metrics["eval_loss"] < metrics["eval_loss_first"]


class FirstStepGradients(TrainerCallback):
    """LoRA B set to small seeded values before training (at zero, A's gradient is zero too);
    every trainable weight's gradient kept at the first optimizer step."""

    def __init__(self) -> None:
        self.grads: dict[str, torch.Tensor] = {}
        self.checkpointing: bool | None = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any = None, **kwargs: Any
    ) -> None:
        self.checkpointing = model.get_base_model().is_activation_checkpointing
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.05)

    def on_pre_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any = None, **kwargs: Any
    ) -> None:
        if not self.grads:
            self.grads = {
                name: (param.grad.detach().float().clone() if param.grad is not None else None)
                for name, param in model.named_parameters() if param.requires_grad
            }


@pytest.mark.parametrize("quantization", ["none", "4bit"])
def test_gradient_checkpointing_reaches_every_lora_weight(
    quantization: str, tiny_params: Params, tiny_samples: Path, base64: Path, tmp_path: Path
) -> None:
    """LoRA only (the hub recipe: no module trained in full, so the embedding's output needs no
    grad): with checkpointing on, each LoRA weight gets a non-zero gradient at the first step,
    and loss and gradients equal the run without checkpointing."""
    runs = {}
    for checkpointing in (False, True):
        params = tiny_params(quantization=quantization, gradient_checkpointing=checkpointing, max_steps=1,
                             lora={"modules_to_save": []})
        grads = FirstStepGradients()
        metrics = run(params, tiny_samples, base64, tmp_path / str(checkpointing), callbacks=[grads])
        assert grads.checkpointing is checkpointing
        runs[checkpointing] = (metrics["train_loss"], grads.grads)
    (loss, grads), (loss_plain, grads_plain) = runs[True], runs[False]
    assert grads and all("lora_" in name for name in grads)
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values()), [n for n, g in grads.items() if g is None or not g.any()]
    assert loss == pytest.approx(loss_plain, rel=1e-6)
    assert all(torch.allclose(grads[n], grads_plain[n], rtol=1e-4, atol=1e-6) for n in grads)


def test_checkpoints_upload_to_s3(
    s3_server: Any, monkeypatch: pytest.MonkeyPatch, tiny_params: Params, tiny_samples: Path, tiny_base: Path, tmp_path: Path
) -> None:
    import s3fs

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    s3_server.create_bucket("runs")
    params = tiny_params(checkpoint_uri="s3://runs/tiny", max_steps=4, save_steps=2)
    metrics = run(params, tiny_samples, tiny_base, tmp_path)
    assert metrics["checkpoint_uploads"] == 2 and metrics["checkpoint_upload_failures"] == 0
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    for step in (2, 4):
        names = {Path(p).name for p in fs.ls(f"runs/tiny/checkpoint-{step}")}
        assert {COMPLETE_MARKER, "adapter_model.safetensors", "optimizer.pt", "trainer_state.json"} <= names


def test_two_cpu_processes_through_the_stage(
    tiny_params: Params, tiny_samples: Path, tiny_base: Path, tmp_path: Path
) -> None:
    """`launch: cpu_ddp` runs torchrun; the Trainer's world size, over gloo, is really 2."""
    params = tiny_params(launch="cpu_ddp", max_steps=4, batch_size=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"train": params.model_dump(mode="json")}))
    command = [
        sys.executable, "-m", "stages.train", str(tiny_samples), str(tiny_base),
        "models/adapter", "--checkpoints", "checkpoints/train", "--plots", "dvclive/train",
    ]
    proc = subprocess.run(command, cwd=tmp_path, env=_stage_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "torch.distributed.run" in proc.stdout
    metrics = json.loads((tmp_path / "metrics" / "train.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 4
    assert (tmp_path / "models" / "adapter" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "checkpoints" / "train" / "checkpoint-4" / "rng_state_1.pth").is_file()  # rank 1 saved


def test_a_gpu_launch_without_cuda_stops_before_launching(tiny_params: Params, tiny_samples: Path, tiny_base: Path,
                                                          tmp_path: Path) -> None:
    params = tiny_params(launch="gpu")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"train": params.model_dump(mode="json")}))
    command = [sys.executable, "-m", "stages.train", str(tiny_samples), str(tiny_base), "models/adapter",
               "--checkpoints", "checkpoints/train"]
    proc = subprocess.run(command, cwd=tmp_path, env=_stage_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "launching" not in proc.stdout
    assert proc.stderr.strip().splitlines()[-1].startswith("error: params.yaml: train.launch: 'gpu' is a GPU profile")


def test_quantizing_a_quantized_base_stops_before_any_weight_loads(
    tiny_params: Params, tiny_samples: Path, tiny_base: Path, tmp_path: Path
) -> None:
    """config.json alone, no weights: the error must come from the check, not from loading."""
    base = tmp_path / "gptq"
    base.mkdir()
    config = json.loads((tiny_base / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "gptq", "bits": 4}
    (base / "config.json").write_text(json.dumps(config))
    with pytest.raises(ParamsError, match=r"train.quantization: '4bit', but the base model is already quantized \(gptq"):
        run(tiny_params(quantization="4bit"), tiny_samples, base, tmp_path)
    assert not (tmp_path / "checkpoints").exists()
