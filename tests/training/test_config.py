"""Params -> Hugging Face configs, precision from hardware, launch commands, launch config files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

from pipesql.params.base import ParamsError, load_section
from pipesql.params.train import NodesParams, TrainParams, with_node_rank
from pipesql.training.config import (
    device_map,
    lora_config,
    packs,
    quantization_config,
    resolve_precision,
    sft_config,
)
from pipesql.training.launch import CONFIG_DIR, check_request, launch_command, wait_for_rendezvous

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIGS = REPO_ROOT / CONFIG_DIR


def test_repo_params_yaml_train_section_is_valid() -> None:
    params = load_section("train", TrainParams, REPO_ROOT / "params.yaml")
    assert params.launch == "cpu" and params.quantization == "none"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"learning_rate": 0}, "train.learning_rate: must be > 0"),
        ({"optim": {"learning_rate": 1.0e-3}}, "train.optim: unknown key"),
        ({"lora": {"dropout": 1.0}}, "train.lora.dropout: must be < 1"),
        ({"quantization": "3bit"}, "train.quantization"),
        ({"lora": {"rank": 8}}, "train.lora.rank: unknown key"),
        ({"save_steps": 5, "logging_steps": 2}, "save_steps (5) must be a multiple of logging_steps"),
        ({"launch": "cpu", "processes": 2}, "processes must be 1"),
        ({"checkpoint_uri": "gs://bucket/x"}, "train.checkpoint_uri"),
        ({"save_total_limit": 1}, "train.save_total_limit: must be >= 2"),
        ({"nodes": {"count": 2, "rank": 2}}, "train.nodes.rank: 2 is outside the machines 0..1 (train.nodes.count: 2)"),
        ({"nodes": {"profile": "gpu"}}, "train.nodes.profile: 'gpu' starts one process and cannot span machines"),
        ({"nodes": {"profile": "cpu"}}, "train.nodes.profile: 'cpu' starts one process"),
        ({"nodes": {"count": 1}}, "train.nodes.count: must be >= 2"),
        ({"nodes": {"port": 70000}}, "train.nodes.port: must be < 65536"),
    ],
)
def test_bad_params_name_the_key(tmp_path: Path, body: dict, message: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"train": body}))
    with pytest.raises(ParamsError) as info:
        load_section("train", TrainParams, path)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("requested", "on_cpu", "bf16", "expected"),
    [
        ("auto", True, False, "fp32"),
        ("auto", True, True, "fp32"),     # a cpu launch on a GPU machine stays on CPU
        ("auto", False, True, "bf16"),
        ("auto", False, False, "fp16"),
        ("bf16", True, False, "bf16"),    # CPU autocast has bf16
        ("fp32", False, True, "fp32"),
    ],
)
def test_precision_follows_hardware(requested: str, on_cpu: bool, bf16: bool, expected: str) -> None:
    assert resolve_precision(requested, on_cpu, bf16) == expected


@pytest.mark.parametrize(
    ("requested", "on_cpu", "bf16", "message"),
    [
        ("fp16", True, False, "train.precision: fp16 needs a CUDA GPU"),
        ("bf16", False, False, "train.precision: this GPU has no bf16"),
    ],
)
def test_precision_the_hardware_cannot_honour_raises(requested: str, on_cpu: bool, bf16: bool, message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        resolve_precision(requested, on_cpu, bf16)


QUANTIZED_BASE = {"quantization_config": {"quant_method": "gptq", "bits": 4}}


@pytest.mark.parametrize(
    ("overrides", "base_config", "cuda", "flash_attn", "message"),
    [
        ({"launch": "gpu"}, {}, False, False, "train.launch: 'gpu' is a GPU profile, but no CUDA device"),
        ({"launch": "deepspeed_zero2"}, {}, False, True, "train.launch: 'deepspeed_zero2' is a GPU profile"),
        ({"launch": "gpu", "attn_implementation": "flash_attention_2"}, {}, True, False,
         "train.attn_implementation: flash_attention_2 needs the flash-attn package, which is not installed"),
        ({"attn_implementation": "flash_attention_2"}, {}, True, True,
         "train.attn_implementation: flash_attention_2 needs a CUDA GPU"),
        ({"quantization": "4bit"}, QUANTIZED_BASE, False, False,
         "train.quantization: '4bit', but the base model is already quantized (gptq"),
        ({"launch": "gpu", "quantization": "8bit"}, QUANTIZED_BASE, True, False, "train.quantization: '8bit'"),
        ({"launch": "multi_node", "nodes": {"profile": "multi_gpu", "address": "h"}}, {}, False, False,
         "train.nodes.profile: 'multi_gpu' is a GPU profile, but no CUDA device"),
        ({"launch": "multi_node", "nodes": {"profile": "cpu_ddp"}}, {}, False, False,
         "train.nodes.address: launch multi_node needs rank 0's host name or IP"),
    ],
)
def test_requests_this_machine_or_base_cannot_honour_name_the_key(
    tiny_params: Callable[..., TrainParams], overrides: dict, base_config: dict, cuda: bool, flash_attn: bool,
    message: str,
) -> None:
    with pytest.raises(ParamsError, match=re.escape(message)):
        check_request(tiny_params(**overrides), base_config, cuda, flash_attn)


@pytest.mark.parametrize(
    ("overrides", "base_config", "cuda", "flash_attn"),
    [
        ({}, {}, False, False),
        ({"launch": "gpu", "attn_implementation": "flash_attention_2"}, {}, True, True),
        ({"quantization": "none"}, QUANTIZED_BASE, False, False),  # LoRA on the quantized base as it is
        ({"quantization": "4bit"}, {}, False, False),
    ],
)
def test_requests_that_can_run_pass(
    tiny_params: Callable[..., TrainParams], overrides: dict, base_config: dict, cuda: bool, flash_attn: bool
) -> None:
    check_request(tiny_params(**overrides), base_config, cuda, flash_attn)


def test_gpu_weights_load_onto_the_process_device(tiny_params: Callable[..., TrainParams]) -> None:
    assert device_map(tiny_params(launch="gpu"), 0) == {"": 0}
    assert device_map(tiny_params(launch="multi_gpu"), 3) == {"": 3}
    assert device_map(tiny_params(launch="cpu"), 0) is None


def test_lora_config_field_by_field(tiny_params: Callable[..., TrainParams]) -> None:
    config = lora_config(tiny_params(lora={"r": 4, "alpha": 8.0, "modules_to_save": ["embed_tokens"]}))
    assert (config.r, config.lora_alpha, config.lora_dropout) == (4, 8.0, 0.0)
    assert config.target_modules == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert config.modules_to_save == ["embed_tokens"]


def test_quantization_configs(tiny_params: Callable[..., TrainParams]) -> None:
    assert quantization_config(tiny_params(), "fp32") is None
    nf4 = quantization_config(tiny_params(quantization="4bit"), "fp32")
    assert nf4.load_in_4bit and nf4.bnb_4bit_quant_type == "nf4" and nf4.bnb_4bit_use_double_quant
    assert nf4.bnb_4bit_compute_dtype == torch.bfloat16
    assert quantization_config(tiny_params(quantization="4bit"), "fp16").bnb_4bit_compute_dtype == torch.float16
    assert quantization_config(tiny_params(quantization="8bit"), "bf16").load_in_8bit


def test_sft_config_maps_params(tiny_params: Callable[..., TrainParams], tmp_path: Path) -> None:
    params = tiny_params(
        packing=True,
        learning_rate=2.0e-4,
        warmup_fraction=0.1,
        gradient_accumulation_steps=4,
        epochs=2.0,
    )
    args = sft_config(params, tmp_path, "fp32", lr_scale=0.5, is_resuming=True)
    assert not args.activation_checkpointing and args.activation_checkpointing_kwargs is None
    assert args.learning_rate == pytest.approx(1e-4)
    assert args.warmup_steps == 0.1 and args.gradient_accumulation_steps == 4 and args.max_steps == 8
    assert args.packing and args.packing_strategy == "bfd" and args.max_length == 256
    assert args.eval_packing is False and not args.eval_on_start  # resuming: the step-0 eval exists
    assert args.logging_nan_inf_filter is False  # the guard must see NaN
    assert args.use_cpu and not args.bf16 and not args.fp16 and args.report_to == []
    assert args.ddp_timeout == 1800
    across = sft_config(tiny_params(launch="multi_node", nodes={"timeout_s": 45}), tmp_path, "fp32", 1.0, False)
    assert across.ddp_timeout == 45  # a dead peer ends a collective within train.nodes.timeout_s
    unpacked = sft_config(tiny_params(group_by_length=False), tmp_path, "fp32", lr_scale=1.0, is_resuming=False)
    assert unpacked.max_length is None and unpacked.train_sampling_strategy == "random"
    grouped = sft_config(tiny_params(group_by_length=True), tmp_path, "fp32", lr_scale=1.0, is_resuming=False)
    assert grouped.train_sampling_strategy == "group_by_length"
    assert unpacked.eval_on_start
    checkpointed = sft_config(tiny_params(gradient_checkpointing=True), tmp_path, "fp32", lr_scale=1.0, is_resuming=False)
    assert checkpointed.activation_checkpointing and checkpointed.activation_checkpointing_kwargs == {"use_reentrant": False}


@pytest.mark.parametrize(
    ("launch", "processes", "gpus", "expected"),
    [
        ("cpu", None, 0, ["-m", "accelerate.commands.launch", "--config_file", "cpu.yaml"]),
        ("cpu_ddp", None, 0, ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]),
        ("cpu_ddp", 3, 0, ["--nproc_per_node=3"]),
        ("gpu", None, 1, ["--config_file", "gpu.yaml"]),
        ("multi_gpu", None, 4, ["--config_file", "multi_gpu.yaml", "--num_processes", "4"]),
        ("deepspeed_zero2", 2, 8, ["--config_file", "deepspeed_zero2.yaml", "--deepspeed_config_file"]),
        ("deepspeed_zero2", 2, 8, ["--num_processes", "2"]),
    ],
)
def test_launch_commands(launch: str, processes: int | None, gpus: int, expected: list[str]) -> None:
    command = launch_command(launch, processes, "stages.train", ["a", "--b"], CONFIGS, gpus)
    assert command[0] == sys.executable and command[-3:] == ["stages.train", "a", "--b"]
    assert command[-4] in ("-m", "--module")  # the stage runs as a module, as dvc.yaml runs it
    flat = [Path(part).name if part.endswith(".yaml") else part for part in command]
    if launch == "deepspeed_zero2":  # an absolute path: the yaml's relative one holds only at the repo root
        json_path = Path(command[command.index("--deepspeed_config_file") + 1])
        assert json_path.is_absolute() and json_path == CONFIGS / "deepspeed_zero2.json"
    assert all(part in flat for part in expected), flat
    start = flat.index(expected[0])
    assert flat[start:start + len(expected)] == expected


def test_multi_gpu_launch_without_gpus_names_the_key() -> None:
    with pytest.raises(ParamsError, match="train.launch: 'multi_gpu' needs GPUs"):
        launch_command("multi_gpu", None, "stages.train", [], CONFIGS, gpu_count=0)


@pytest.mark.parametrize("profile", ["cpu", "gpu", "multi_gpu", "deepspeed_zero2", "multi_node_gpu", "multi_node_zero2"])
def test_accelerate_configs_load_in_accelerate(profile: str) -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(CONFIGS / f"{profile}.yaml"))
    assert config.mixed_precision == "no"  # train.precision decides, never the launcher
    if profile.startswith("multi_node"):  # the machine values come from train.nodes on the command line
        assert config.num_machines > 1 and config.rdzv_backend == "static"
    if profile.endswith("zero2"):
        assert (REPO_ROOT / config.deepspeed_config["deepspeed_config_file"]).is_file()


def test_deepspeed_json_loads_in_deepspeeds_parser(
    tiny_params: Callable[..., TrainParams], tiny_base: Path, tmp_path: Path
) -> None:
    """The `auto` values are filled as the Trainer fills them, then DeepSpeed's own parser reads it."""
    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers import AutoModelForCausalLM
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    raw = json.loads((CONFIGS / "deepspeed_zero2.json").read_text())
    assert raw["zero_optimization"]["stage"] == 2 and "auto" in json.dumps(raw)
    params = tiny_params(batch_size=4, gradient_accumulation_steps=2, max_grad_norm=0.5)
    args = sft_config(params, tmp_path, "bf16", lr_scale=1.0, is_resuming=False)
    hf_config = HfTrainerDeepSpeedConfig(raw)
    hf_config.trainer_config_process(args)
    hf_config.trainer_config_finalize(args, AutoModelForCausalLM.from_pretrained(tiny_base), num_training_steps=8)
    filled = hf_config.config
    assert "auto" not in json.dumps(filled)
    parsed = DeepSpeedConfig(filled)
    assert parsed.zero_optimization_stage == 2 and parsed.bfloat16_config.enabled
    assert parsed.train_micro_batch_size_per_gpu == 4 and parsed.gradient_accumulation_steps == 2
    assert parsed.gradient_clipping == 0.5


def test_launcher_side_imports_no_torch() -> None:
    """The stage's parent process only builds a command line; torch loads in the launched ones."""
    code = "import sys, pipesql.training, pipesql.training.launch; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("packing", "attn", "expected"),
    [("auto", "sdpa", False), ("auto", "eager", False), ("auto", "flash_attention_2", True),
     (True, "sdpa", True), (False, "flash_attention_2", False)],
)
def test_packing_auto_packs_only_with_varlen_attention(
    tiny_params: Callable[..., TrainParams], packing: bool | str, attn: str, expected: bool
) -> None:
    assert packs(tiny_params(packing=packing, attn_implementation=attn)) is expected


def test_samples_are_checked_before_training(
    tiny_params: Callable[..., TrainParams], tiny_samples: Path, tmp_path: Path
) -> None:
    from datasets import load_from_disk

    from pipesql.io import DataError
    from pipesql.training.train import load_samples

    train_set, eval_set, stats = load_samples(tiny_samples, tiny_params(eval_max_samples=4))
    assert train_set.column_names == ["input_ids", "labels"] and len(eval_set) == 4
    assert stats["samples"] == 48 and 0 < stats["labelled_tokens"] < stats["tokens"]
    with pytest.raises(DataError, match="samples not found; run 'dvc repro tokenize' first"):
        load_samples(tmp_path / "missing", tiny_params())
    no_dev = load_from_disk(str(tiny_samples))
    del no_dev["dev"]
    no_dev.save_to_disk(tmp_path / "no_dev")
    with pytest.raises(DataError, match="the 'dev' split is missing or empty"):
        load_samples(tmp_path / "no_dev", tiny_params())


NODES = {"count": 3, "rank": 1, "address": "10.0.0.1", "port": 29501, "timeout_s": 60}


def test_node_rank_from_the_command_line_is_validated_as_the_key(tmp_path: Path) -> None:
    params = TrainParams(launch="multi_node", nodes={"count": 2, "address": "h"})
    assert with_node_rank(params, 1, tmp_path / "params.yaml").nodes.rank == 1
    with pytest.raises(ParamsError, match=r"params.yaml: train.nodes.rank: 2 is outside the machines 0..1"):
        with_node_rank(params, 2, tmp_path / "params.yaml")


def test_multi_node_cpu_ddp_is_torchrun_with_this_machines_place() -> None:
    from torch.distributed.run import get_args_parser

    nodes = NodesParams(profile="cpu_ddp", **NODES)
    command = launch_command("multi_node", 1, "stages.train", ["a"], CONFIGS, 0, nodes)
    assert command[1:3] == ["-m", "torch.distributed.run"] and command[-3:] == ["-m", "stages.train", "a"]
    args = get_args_parser().parse_args(command[3:])
    assert (args.nnodes, args.nproc_per_node, args.node_rank) == ("3", "1", 1)
    assert (args.master_addr, args.master_port, args.rdzv_backend) == ("10.0.0.1", 29501, "static")
    assert (args.rdzv_conf, args.max_restarts) == ("timeout=60", 0)


@pytest.mark.parametrize("profile", ["multi_gpu", "deepspeed_zero2"])
def test_multi_node_gpu_profiles_are_accelerate_with_this_machines_place(profile: str) -> None:
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    nodes = NodesParams(profile=profile, **NODES)
    command = launch_command("multi_node", None, "stages.train", ["a"], CONFIGS, 4, nodes)
    args = launch_command_parser().parse_args(command[3:])
    config = load_config_from_file(args.config_file)
    assert config.distributed_type == ("DEEPSPEED" if profile == "deepspeed_zero2" else "MULTI_GPU")
    assert config.rdzv_backend == "static"  # the rank is the machine's own, not its joining order
    assert (args.num_machines, args.machine_rank, args.num_processes) == (3, 1, 12)  # 4 GPUs x 3 machines
    assert (args.main_process_ip, args.main_process_port) == ("10.0.0.1", 29501)
    assert (args.rdzv_conf, args.max_restarts) == ("timeout=60", 0)
    assert args.module and args.training_script == "stages.train" and args.training_script_args == ["a"]
    if profile == "deepspeed_zero2":
        assert Path(args.deepspeed_config_file) == CONFIGS / "deepspeed_zero2.json"
        assert config.deepspeed_config["deepspeed_multinode_launcher"] == "standard"  # torchrun per machine


def test_multi_node_gpu_profile_without_gpus_names_the_key() -> None:
    nodes = NodesParams(profile="multi_gpu", **NODES)
    with pytest.raises(ParamsError, match="train.nodes.profile: 'multi_gpu' needs GPUs"):
        launch_command("multi_node", None, "stages.train", [], CONFIGS, 0, nodes)


def test_an_unreachable_rendezvous_is_a_bounded_wait_then_an_error_naming_host_and_port() -> None:
    import socket
    import time

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nodes = NodesParams(profile="cpu_ddp", count=2, rank=1, address="127.0.0.1", port=port, timeout_s=2)
    started = time.monotonic()
    with pytest.raises(ParamsError, match=rf"^params.yaml: train.nodes.address: nothing answers at 127.0.0.1:{port}"
                                          r" after 2s \(train.nodes.timeout_s"):
        wait_for_rendezvous(nodes, poll_s=0.2)
    assert 1.5 < time.monotonic() - started < 10


def test_a_listening_rendezvous_passes_and_rank_0_only_resolves() -> None:
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        wait_for_rendezvous(NodesParams(profile="cpu_ddp", rank=1, address="127.0.0.1", port=port, timeout_s=2))
    wait_for_rendezvous(NodesParams(profile="cpu_ddp", rank=0, address="127.0.0.1", port=port, timeout_s=2))
    with pytest.raises(ParamsError, match=r"train.nodes.address: 'no-such-host.invalid' does not resolve"):
        wait_for_rendezvous(NodesParams(profile="cpu_ddp", rank=0, address="no-such-host.invalid", timeout_s=2))


def test_param_differences_name_every_differing_leaf() -> None:
    from pipesql.training.train import param_differences

    rank0 = {"max_steps": 4, "nodes": {"count": 2, "port": 1}, "lora": {"r": 8}}
    mine = {"max_steps": 6, "nodes": {"count": 2, "port": 2}, "lora": {"r": 8}}
    assert param_differences(rank0, mine) == {"max_steps": (6, 4), "nodes.port": (2, 1)}
    assert param_differences(rank0, rank0) == {}
