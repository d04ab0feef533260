"""The divergence guard's decisions and checkpoint bookkeeping, without training anything."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from transformers import TrainerControl, TrainerState, TrainingArguments, get_cosine_schedule_with_warmup

from pipesql.params.train import GuardParams
from pipesql.training.callbacks import (
    DivergenceGuard,
    divergence_reason,
    follow_learning_rate,
    moving_average,
    scaler_skipped,
    skipped_steps,
)
from pipesql.training.checkpoints import (
    COMPLETE_MARKER,
    RunRecord,
    list_checkpoints,
    mark_complete,
    newest_complete,
    open_run,
    read_record,
    run_fingerprint,
    write_record,
)

HEALTHY = [2.0, 1.9, 1.8, 1.7]


@pytest.mark.parametrize(
    ("loss", "grad_norm", "recent", "expected"),
    [
        (1.6, 0.8, HEALTHY, None),
        (math.nan, 0.8, HEALTHY, "loss is nan"),
        (math.inf, None, HEALTHY, "loss is inf"),
        (1.6, math.nan, HEALTHY, "grad norm is nan"),
        (1.6, math.inf, HEALTHY, "grad norm is inf"),
        (9.0, 0.8, HEALTHY, "loss 9 is 4.9x its moving average 1.85"),
        (5.5, 0.8, HEALTHY, None),              # 2.97x: under the factor
        (9.0, 0.8, HEALTHY[:3], None),          # too few losses for a baseline yet
        (9.0, 0.8, [100.0, *HEALTHY], "loss 9 is 4.9x"),  # only the last `window` count
    ],
)
def test_divergence_reason(loss: float, grad_norm: float | None, recent: list[float], expected: str | None) -> None:
    reason = divergence_reason(loss, grad_norm, recent, spike_factor=3.0, window=4)
    assert reason == expected if expected is None else reason.startswith(expected)


def test_moving_average_uses_the_tail() -> None:
    assert moving_average([10.0, 1.0, 2.0, 3.0], 3) == 2.0
    assert moving_average([4.0], 3) == 4.0


def test_guard_stops_before_the_diverged_step_is_saved(tmp_path: Path) -> None:
    guard = DivergenceGuard(GuardParams(window=2, spike_factor=3.0, patience=1))
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    state, control = TrainerState(), TrainerControl()
    guard.on_train_begin(args, state, control)
    for step, loss in enumerate([2.0, 1.8, 1.7], start=1):
        state.global_step = step
        guard.on_log(args, state, control, logs={"loss": loss, "grad_norm": 1.0})
        guard.on_log(args, state, control, logs={"eval_loss": 50.0})  # evaluation logs are not watched
    assert guard.tripped is None and not control.should_training_stop
    state.global_step, control.should_save = 4, True
    guard.on_log(args, state, control, logs={"loss": 6.0, "grad_norm": 1.0})
    assert guard.tripped == {"step": 4, "reason": guard.tripped["reason"], "loss": 6.0, "grad_norm": 1.0}
    assert "3.4x its moving average 1.75" in guard.tripped["reason"]
    assert control.should_training_stop and not control.should_save and not control.should_evaluate


def _log(guard: DivergenceGuard, args: TrainingArguments, step: int, loss: float) -> TrainerControl:
    state, control = TrainerState(global_step=step), TrainerControl(should_save=True)
    guard.on_log(args, state, control, logs={"loss": loss, "grad_norm": 1.0})
    return control


def test_a_spike_trips_the_guard_only_when_it_lasts(tmp_path: Path) -> None:
    """One hard batch is not divergence; `patience` spiking logs in a row are, and save nothing."""
    guard = DivergenceGuard(GuardParams(window=2, spike_factor=3.0, patience=3))
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    guard.on_train_begin(args, TrainerState(), TrainerControl())
    for step, loss in [(1, 2.0), (2, 1.8)]:
        assert _log(guard, args, step, loss).should_save
    blip = _log(guard, args, 3, 9.0)
    assert guard.tripped is None and not blip.should_training_stop and not blip.should_save
    assert _log(guard, args, 4, 1.7).should_save  # back to normal: the streak is over
    for step in (5, 6):
        control = _log(guard, args, step, 9.0)
        assert guard.tripped is None and not control.should_save  # spiking: no checkpoint kept
    control = _log(guard, args, 7, 9.0)
    assert guard.tripped is not None and guard.tripped["step"] == 7 and control.should_training_stop
    assert "3 logged steps in a row" in guard.tripped["reason"]
    assert "moving average 1.75" in guard.tripped["reason"]  # spikes never enter the baseline


def test_a_nan_trips_the_guard_at_once_whatever_the_patience(tmp_path: Path) -> None:
    guard = DivergenceGuard(GuardParams(window=2, patience=5))
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    guard.on_train_begin(args, TrainerState(), TrainerControl())
    control = _log(guard, args, 1, math.nan)
    assert guard.tripped is not None and guard.tripped["reason"] == "loss is nan" and control.should_training_stop


@pytest.mark.parametrize(
    ("loss", "grad_norm", "loss_scaling", "skipped"),
    [
        (1.6, math.inf, True, True),     # fp16 overflow: the scaler applied nothing
        (1.6, math.nan, True, True),
        (1.6, 0.8, True, False),
        (math.nan, math.inf, True, False),  # a NaN loss is divergence, scaler or not
        (1.6, math.inf, False, False),   # no scaler: the step wrote inf into the weights
        (1.6, None, True, False),
    ],
)
def test_scaler_skipped(loss: float, grad_norm: float | None, loss_scaling: bool, skipped: bool) -> None:
    assert scaler_skipped(loss, grad_norm, loss_scaling) is skipped


def test_skipped_fp16_steps_are_counted_not_divergence(tmp_path: Path) -> None:
    """Injected logs as an fp16 run writes them: overflowed steps go on, a NaN loss trips at once."""
    guard = DivergenceGuard(GuardParams(window=2, patience=5), loss_scaling=True)
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    guard.on_train_begin(args, TrainerState(), TrainerControl())
    history = []
    for step, (loss, grad_norm) in enumerate([(2.0, 1.0), (2.0, math.inf), (1.9, math.inf), (1.8, 0.9)], start=1):
        control = TrainerControl(should_save=True)
        logs = {"loss": loss, "grad_norm": grad_norm}
        guard.on_log(args, TrainerState(global_step=step), control, logs=logs)
        history.append({**logs, "step": step})
        assert guard.tripped is None and not control.should_training_stop and control.should_save
    assert guard.skipped == 2 and skipped_steps(history) == 2
    control = TrainerControl()
    guard.on_log(args, TrainerState(global_step=5), control, logs={"loss": math.nan, "grad_norm": math.inf})
    assert guard.tripped is not None and guard.tripped["reason"] == "loss is nan" and control.should_training_stop

    strict = DivergenceGuard(GuardParams(window=2, patience=5))  # bf16/fp32: no scaler to skip a step
    strict.on_train_begin(args, TrainerState(), TrainerControl())
    strict.on_log(args, TrainerState(global_step=1), TrainerControl(), logs={"loss": 2.0, "grad_norm": math.inf})
    assert strict.tripped is not None and strict.tripped["reason"] == "grad norm is inf"


def test_guard_rebuilds_its_baseline_from_restored_history(tmp_path: Path) -> None:
    guard = DivergenceGuard(GuardParams(window=2, spike_factor=3.0, patience=1))
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    state = TrainerState(log_history=[{"loss": 1.0, "step": 1}, {"eval_loss": 2.0, "step": 1}, {"loss": 1.0, "step": 2}])
    guard.on_train_begin(args, state, TrainerControl())
    state.global_step = 3
    guard.on_log(args, state, TrainerControl(), logs={"loss": 3.5})
    assert guard.tripped is not None and guard.tripped["step"] == 3


def test_disabled_guard_lets_nan_through(tmp_path: Path) -> None:
    guard = DivergenceGuard(GuardParams(enabled=False))
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    control = TrainerControl()
    guard.on_log(args, TrainerState(), control, logs={"loss": math.nan})
    assert guard.tripped is None and not control.should_training_stop


def test_restored_schedule_follows_the_lowered_learning_rate() -> None:
    params = [torch.nn.Parameter(torch.zeros(2))]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    scheduler = get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=2, num_training_steps=10)
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    before = scheduler.get_last_lr()[0]
    follow_learning_rate(optimizer, scheduler, 5e-4)
    assert scheduler.base_lrs == [5e-4]
    assert scheduler.get_last_lr()[0] == pytest.approx(before / 2)
    optimizer.step()
    scheduler.step()
    reference = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=5e-4)
    ref_scheduler = get_cosine_schedule_with_warmup(reference, num_warmup_steps=2, num_training_steps=10)
    for _ in range(5):
        reference.step()
        ref_scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(ref_scheduler.get_last_lr()[0])
    follow_learning_rate(optimizer, scheduler, 5e-4)  # already agrees: unchanged
    assert scheduler.base_lrs == [5e-4]


def _checkpoint(root: Path, step: int, complete: bool) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"weights")
    if complete:
        mark_complete(path)
    return path


def test_newest_complete_skips_half_written_and_sorts_numerically(tmp_path: Path) -> None:
    _checkpoint(tmp_path, 9, complete=True)
    ten = _checkpoint(tmp_path, 10, complete=True)
    _checkpoint(tmp_path, 12, complete=False)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-9", "checkpoint-10", "checkpoint-12"]
    assert newest_complete(tmp_path) == ten
    assert (ten / COMPLETE_MARKER).read_text().count("adapter_model.safetensors") == 1


def test_open_run_keeps_the_same_run_and_drops_half_written(tmp_path: Path) -> None:
    record, _ = open_run(tmp_path, "fp-1", "auto")
    record.events.append({"step": 3, "lr_scale": 0.5})
    write_record(tmp_path, record)
    _checkpoint(tmp_path, 4, complete=True)
    _checkpoint(tmp_path, 8, complete=False)
    record, note = open_run(tmp_path, "fp-1", "auto")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-4"]
    assert "removed 1 half-written" in note and record.lr_scale == 0.5


@pytest.mark.parametrize("resume", ["auto", "never"])
def test_a_pending_rollback_resumes_whatever_resume_says(tmp_path: Path, resume: str) -> None:
    open_run(tmp_path, "fp-1", "auto")
    write_record(tmp_path, RunRecord("fp-1", [{"step": 6, "lr_scale": 0.5}], rollback_pending=True))
    _checkpoint(tmp_path, 4, complete=True)
    record, note = open_run(tmp_path, "fp-1", resume)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-4"] and "rolling back" in note
    assert record.lr_scale == 0.5 and not record.rollback_pending
    assert read_record(tmp_path) == record  # cleared on disk: the launch after this one is no rollback
    _, note = open_run(tmp_path, "fp-1", resume)
    assert ("starting over" in note) == (resume == "never")


@pytest.mark.parametrize(
    ("fingerprint", "resume", "note"),
    [("fp-2", "auto", "params or inputs changed"), ("fp-1", "never", "'never'")],
)
def test_open_run_starts_over(tmp_path: Path, fingerprint: str, resume: str, note: str) -> None:
    open_run(tmp_path, "fp-1", "auto")
    _checkpoint(tmp_path, 4, complete=True)
    record, said = open_run(tmp_path, fingerprint, resume)
    assert list_checkpoints(tmp_path) == [] and note in said
    assert record == RunRecord(fingerprint) and read_record(tmp_path) == RunRecord(fingerprint)


def test_fingerprint_follows_params_and_inputs_but_not_operational_keys(tmp_path: Path) -> None:
    data = tmp_path / "samples"
    data.mkdir()
    (data / "a.arrow").write_bytes(b"1234")
    params = {"seed": 0, "resume": "auto", "guard": {"max_rollbacks": 3, "lr_factor": 0.5}}
    base = run_fingerprint(params, [data])
    assert run_fingerprint({**params, "resume": "never"}, [data]) == base
    assert run_fingerprint({**params, "guard": {"max_rollbacks": 9, "lr_factor": 0.5}}, [data]) == base
    assert run_fingerprint({**params, "guard": {"max_rollbacks": 3, "lr_factor": 0.1}}, [data]) != base
    assert run_fingerprint({**params, "seed": 1}, [data]) != base
    nodes = {"profile": "cpu_ddp", "count": 2, "rank": 0, "address": "a", "port": 1, "timeout_s": 5}
    across = run_fingerprint({**params, "nodes": nodes}, [data])
    moved = {**nodes, "rank": 1, "address": "b", "port": 2, "timeout_s": 9}  # a rerun on other hosts
    assert run_fingerprint({**params, "nodes": moved}, [data]) == across
    assert run_fingerprint({**params, "nodes": {**nodes, "count": 3}}, [data]) != across
    (data / "a.arrow").write_bytes(b"1235")
    assert run_fingerprint(params, [data]) != base
