"""Trainer callbacks: the divergence guard, checkpoint complete-markers, S3 uploads, dvclive plots.

The guard's decision is a pure function of the logged loss, grad norm and recent losses
(`divergence_reason`), testable without a model; the callbacks only wire such functions to the
Trainer's events. Each runs on every process: logged values are already reduced across
processes, so every rank reaches the same verdict without talking to the others.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from accelerate import PartialState
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.integrations import DVCLiveCallback

from pipesql.params.train import GuardParams
from pipesql.training.checkpoints import COMPLETE_MARKER, is_complete, mark_complete

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- divergence guard


def divergence_reason(
    loss: float, grad_norm: float | None, recent: Sequence[float], spike_factor: float, window: int
) -> str | None:
    """Why this logged step counts as diverged, or None when it is healthy.

    1. a non-finite loss or grad norm: the optimizer step has already written NaN into weights
       (a skipped fp16 step, where it has not, is told apart first: `scaler_skipped`);
    2. a loss above spike_factor times the mean of the last `window` healthy losses (checked
       only once that many exist: early losses fall fast and would make a poor baseline).
    """
    if not math.isfinite(loss):
        return f"loss is {loss}"
    if grad_norm is not None and not math.isfinite(grad_norm):
        return f"grad norm is {grad_norm}"
    if len(recent) >= window:
        average = moving_average(recent, window)
        if loss > spike_factor * average:
            return f"loss {loss:.4g} is {loss / average:.1f}x its moving average {average:.4g}"
    return None


def scaler_skipped(loss: float, grad_norm: float | None, loss_scaling: bool) -> bool:
    """A logged step whose update the fp16 loss scaler skipped: finite loss, overflowed gradients.

    The scaler found inf/NaN in the scaled gradients, applied nothing and lowered its scale: the
    weights are untouched, so this is routine fp16 overflow, not divergence.
    """
    return loss_scaling and math.isfinite(loss) and grad_norm is not None and not math.isfinite(grad_norm)


def skipped_steps(history: Sequence[dict[str, Any]]) -> int:
    """Logged steps in a trainer's history whose update the fp16 loss scaler skipped."""
    return sum(
        1 for h in history
        if "loss" in h and scaler_skipped(float(h["loss"]), h.get("grad_norm"), loss_scaling=True)
    )


def moving_average(values: Sequence[float], window: int) -> float:
    tail = values[-window:]
    return sum(tail) / len(tail)


class DivergenceGuard(TrainerCallback):
    """Stops training at the first diverged log, before that step's checkpoint is written.

    A non-finite loss or grad norm trips it at once. A loss spike trips it only when it lasts
    `patience` logged steps in a row: one hard batch is not divergence (grouping by length puts
    the longest samples, tool calls among them, first in each group of batches, and their loss
    stands well above the average), while a diverging run stays up. No checkpoint is saved
    during a streak, so the rollback target is never a step that was already spiking.

    With `loss_scaling` (fp16), a finite loss with a non-finite grad norm is a step the scaler
    skipped: counted and logged, never a trip. A NaN loss still trips at once.

    The caller (`train`) then ends the attempt; the stage relaunches from the newest complete
    checkpoint, which this guard has vetted: checkpoints are saved only on logged steps
    (save_steps is a multiple of logging_steps) and the guard runs on the log, ahead of the save.
    """

    def __init__(self, params: GuardParams, loss_scaling: bool = False) -> None:
        self.params = params
        self.loss_scaling = loss_scaling
        self.tripped: dict[str, Any] | None = None
        self.skipped = 0  # scaler-skipped logged steps in this attempt
        self._recent: list[float] = []
        self._streak = 0  # spiking logged steps in a row

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.tripped = None
        self._streak = 0
        # The history restored with a checkpoint is the healthy past, whatever came after it.
        self._recent = [h["loss"] for h in state.log_history if "loss" in h][-self.params.window:]
        follow_learning_rate(kwargs.get("optimizer"), kwargs.get("lr_scheduler"), args.learning_rate)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.global_step >= state.max_steps:
            control.should_log = True  # the final checkpoint and adapter are vetted like the rest

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self.params.enabled or not logs or "loss" not in logs:
            return  # evaluation logs carry no training loss
        loss, grad_norm = float(logs["loss"]), logs.get("grad_norm")
        grad_norm = None if grad_norm is None else float(grad_norm)
        p = self.params
        if scaler_skipped(loss, grad_norm, self.loss_scaling):
            self.skipped += 1
            logger.info("step %d: the fp16 loss scaler skipped the update (grad norm %s); %d skipped so far",
                        state.global_step, grad_norm, self.skipped)
            return  # not a healthy loss for the baseline either: it did not move the weights
        reason = divergence_reason(loss, grad_norm, self._recent, p.spike_factor, p.window)
        if reason is None:
            self._recent = (self._recent + [loss])[-p.window:]
            self._streak = 0
            return
        finite = math.isfinite(loss) and (grad_norm is None or math.isfinite(grad_norm))
        self._streak += 1
        if finite and self._streak < p.patience:
            control.should_save = False  # a spike that lasts must not leave a checkpoint behind
            return
        if finite and p.patience > 1:
            reason += f", {self._streak} logged steps in a row"
        self.tripped = {
            "step": state.global_step,
            "reason": reason,
            "loss": _json_number(loss),
            "grad_norm": None if grad_norm is None else _json_number(grad_norm),
        }
        logger.warning("divergence at step %d: %s; stopping to roll back", state.global_step, reason)
        control.should_training_stop = True
        control.should_save = False       # this step's weights are the diverged ones
        control.should_evaluate = False


def _json_number(value: float) -> float | str:
    """NaN and inf as text: JSON has no literal for them, and metrics files must stay valid JSON."""
    return value if math.isfinite(value) else str(value)


def follow_learning_rate(optimizer: Any, scheduler: Any, learning_rate: float) -> None:
    """Make a restored schedule follow `learning_rate`.

    A resumed scheduler keeps the base rate it was saved with; after a rollback the run must go
    on at the lowered one. Scaling base rates and current rates alike keeps the schedule's shape
    (warmup, decay) and its position. A no-op when they already agree.
    """
    base_lrs = getattr(scheduler, "base_lrs", None)
    if optimizer is None or not base_lrs:
        return
    ratio = learning_rate / base_lrs[0]
    if math.isclose(ratio, 1.0, rel_tol=1e-9):
        return
    scheduler.base_lrs = [lr * ratio for lr in base_lrs]
    for group in optimizer.param_groups:
        group["lr"] *= ratio
        if "initial_lr" in group:
            group["initial_lr"] *= ratio
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]  # what the Trainer logs


# ---------------------------------------------------------------- checkpoints


class CompleteMarkers(TrainerCallback):
    """Marks each checkpoint complete once every process has written its part.

    The Trainer calls on_save after the whole checkpoint (weights, optimizer, scheduler, per-rank
    RNG states, trainer state); the barrier waits for the other ranks' RNG files.
    """

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        PartialState().wait_for_everyone()
        if state.is_world_process_zero:
            mark_complete(Path(args.output_dir) / f"checkpoint-{state.global_step}")
        PartialState().wait_for_everyone()


class UploadCheckpoints(TrainerCallback):
    """Copies each complete checkpoint to `uri/checkpoint-N/` from the main process.

    Placed after CompleteMarkers. A failed upload is logged and counted, not raised: losing a
    long run to a network hiccup would cost more than the missing copy.
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")
        self.uploaded: list[str] = []
        self.failed: list[str] = []

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero:
            return
        local = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not is_complete(local):
            return
        remote = f"{self.uri}/{local.name}"
        try:
            upload_checkpoint(local, remote)
        except Exception as e:  # noqa: BLE001  (s3fs/botocore raise many types)
            logger.warning("train.checkpoint_uri: upload of %s to %s failed: %s", local, remote, e)
            self.failed.append(remote)
        else:
            self.uploaded.append(remote)


def upload_checkpoint(local: Path, remote: str) -> None:
    """Files first, the marker last: a remote checkpoint with a marker is whole, like a local one.

    s3fs reads credentials and the endpoint (AWS_ENDPOINT_URL) from the environment, as DVC does.
    """
    import s3fs

    fs = s3fs.S3FileSystem()
    files = sorted(p for p in local.rglob("*") if p.is_file() and p.name != COMPLETE_MARKER)
    for path in [*files, local / COMPLETE_MARKER]:
        fs.put_file(str(path), f"{remote}/{path.relative_to(local).as_posix()}")


# ---------------------------------------------------------------- plots


class LivePlots(DVCLiveCallback):
    """dvclive through the Hugging Face integration, with the optimizer step on the x axis.

    Two departures from the stock callback: it counts log calls as steps, so each evaluation
    shifts the axis; and it appends to whatever a killed or rolled-back run left. Here every
    (re)start rebuilds the files from the trainer state's history, which a checkpoint restores,
    so a resumed run plots its whole past and a rolled-back one its healthy branch only.
    No dvc.yaml is written: the project's dvc.yaml declares these plots (dvclive #456).
    """

    PLOTTED = {
        "loss": "train/loss",
        "grad_norm": "train/grad_norm",
        "learning_rate": "train/learning_rate",
        "mean_token_accuracy": "train/token_accuracy",
        "eval_loss": "eval/loss",
        "eval_mean_token_accuracy": "eval/token_accuracy",
    }

    def __init__(self, plots_dir: Path) -> None:
        super().__init__()
        self.plots_dir = Path(plots_dir)

    def setup(self, args: TrainingArguments, state: TrainerState, model: Any) -> None:
        from dvclive import Live

        self._initialized = True
        if not state.is_world_process_zero:
            return
        # resume=False clears the plot files; the history below writes them again
        self.live = Live(
            dir=str(self.plots_dir), resume=False, report=None, save_dvc_exp=False, dvcyaml=None
        )
        for logs in state.log_history:
            self._log(logs["step"], logs)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._initialized:
            self.setup(args, state, model)
        if state.is_world_process_zero and logs:
            self._log(state.global_step, logs)

    def _log(self, step: int, logs: dict[str, Any]) -> None:
        values = {name: logs[key] for key, name in self.PLOTTED.items() if key in logs}
        if not values:
            return
        self.live.step = step
        for name, value in values.items():
            self.live.log_metric(name, float(value))
        self.live.next_step()
