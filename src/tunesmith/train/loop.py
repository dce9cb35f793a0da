"""The training loop, readable top to bottom.

    for each epoch:
        for each batch:
            loss = task.compute_loss(model, batch) / accumulation    (Accelerate scales and syncs)
            backward; every `grad_accumulation` batches: clip, optimizer step, schedule step
            every `log_every` steps: log loss and learning rate
            every `eval_every` steps (or at epoch end): evaluate, keep the best model, maybe stop
            when due (epoch end, checkpoint.every_steps, a new best, SIGINT/SIGTERM): save a checkpoint

Accelerate hides the device, mixed precision and distributed details, so the same loop runs on a
CPU, one GPU, or under `accelerate launch` / `torchrun`.

A step never waits for the device: losses and token counts stay on it (`Pending`) and are read back
once per logged step, evaluation or checkpoint, where a NaN/inf loss is also caught, naming the step it
first appeared at, before anything is saved. Only `train.on_nan: skip` reads each loss at once, since it
must decide before the backward pass.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from tqdm.auto import tqdm

from tunesmith.errors import TrainingError
from tunesmith.train.stopping import EarlyStopper


@dataclass
class LoopState:
    step: int = 0          # optimizer steps taken
    epoch: int = 0         # epochs started
    samples: int = 0       # training examples seen
    tokens: int = 0        # real (non-pad) training tokens seen
    padded_tokens: int = 0 # token positions computed, padding included
    eval_seconds: float = 0.0  # time spent in evaluations during training
    started: float = field(default_factory=time.perf_counter)
    stop_reason: str | None = None
    history: list[dict] = field(default_factory=list)
    batches_in_epoch: int = 0  # batches consumed in the current epoch (a resumed run skips them)
    running_loss: float = 0.0  # summed since the last logged step
    running_batches: int = 0
    nan_skipped: int = 0       # batches skipped for a non-finite loss (train.on_nan: skip)

    def begin_epoch(self, batches_per_epoch: int) -> None:
        if 0 < self.batches_in_epoch < batches_per_epoch:
            return  # resuming inside this epoch
        self.epoch += 1
        self.batches_in_epoch = 0


@dataclass
class LoopPlan:
    steps_per_epoch: int
    total_steps: int
    eval_every: int       # in optimizer steps
    log_every: int
    max_grad_norm: float | None
    on_nan: str = "stop"  # or "skip"
    max_nan_skips: int = 10


def plan_steps(batches_per_epoch: int, settings) -> LoopPlan:
    """Turn epochs / max_steps / eval_every into step counts."""
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / settings.grad_accumulation))
    total = math.ceil(settings.epochs * steps_per_epoch)
    if settings.max_steps is not None:
        total = min(total, settings.max_steps)
    eval_every = steps_per_epoch if settings.eval_every == "epoch" else settings.eval_every
    return LoopPlan(steps_per_epoch, total, eval_every, settings.log_every, settings.max_grad_norm,
                    getattr(settings, "on_nan", "stop"), getattr(settings, "max_nan_skips", 10))


def train_loop(
    *, model, optimizer, schedule, train_loader, accelerator, plan: LoopPlan, stopper: EarlyStopper,
    compute_loss: Callable, evaluate: Callable[[], dict], on_best: Callable[[dict], None], log: Callable[[dict], None],
    checkpoints=None, state: LoopState | None = None,
) -> LoopState:
    """`checkpoints` (train/checkpoint.py) saves the state after steps and restores the data position;
    `state` is the restored LoopState when resuming."""
    state = state or LoopState()
    pending = Pending(accelerator)
    model.train()
    progress = tqdm(total=plan.total_steps, initial=state.step, desc="train", unit="step",
                    disable=not accelerator.is_local_main_process)

    def flush() -> None:  # before anything reads the loss, or saves the weights
        pending.flush(state, checkpoints)

    try:  # the bar is closed on errors too, so an error message starts on its own line
        while state.step < plan.total_steps and state.stop_reason is None:
            state.begin_epoch(len(train_loader))
            for batch in checkpoints.batches(train_loader, state) if checkpoints else train_loader:
                state.batches_in_epoch += 1
                with accelerator.accumulate(model):
                    loss = forward_loss(accelerator, compute_loss, model, batch)
                    # train.on_nan: skip reads the loss now (raises past max_nan_skips); stop checks it at flush()
                    finite = plan.on_nan != "skip" or _skip_if_not_finite(loss, state, plan, checkpoints, log)
                    backward_and_clip(accelerator, model, loss if finite else None, plan.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                if finite:
                    pending.add_loss(loss, state)
                n = accelerator.num_processes  # every rank's batch has this rank's shape, near enough
                state.samples += len(batch["input_ids"]) * n
                state.padded_tokens += batch["input_ids"].numel() * n
                pending.add_tokens(batch)
                if not accelerator.sync_gradients:
                    continue
                schedule.step()
                state.step += 1
                progress.update(1)
                if state.step % plan.log_every == 0 or state.step == plan.total_steps:
                    flush()
                    record = {"type": "train", "step": state.step, "epoch": _epoch(state, plan),
                              "loss": state.running_loss / state.running_batches if state.running_batches else None,
                              "lr": schedule.get_last_lr()[0],
                              "samples": state.samples, "elapsed_s": time.perf_counter() - state.started}
                    state.running_loss, state.running_batches = 0.0, 0
                    progress.set_postfix(loss=f"{record['loss']:.4f}" if record["loss"] is not None else "skipped")
                    log(record)
                if state.step % plan.eval_every == 0 or state.step == plan.total_steps:
                    flush()
                    _evaluate_and_decide(state, plan, stopper, evaluate, on_best, log)
                if checkpoints:
                    checkpoints.after_step(state, before_save=flush)  # saves when due; stops after SIGINT/SIGTERM
                if state.step >= plan.total_steps or state.stop_reason:
                    break
        flush()
    finally:
        progress.close()
    if state.stop_reason is None:
        state.stop_reason = f"finished the budget of {plan.total_steps} steps ({_epoch(state, plan):g} epochs)"
    return state


def forward_loss(accelerator, compute_loss: Callable, model, batch) -> torch.Tensor:
    """The training forward of one batch: bf16 autocast under train.precision bf16 (or auto on such hardware)."""
    with accelerator.autocast():
        return compute_loss(model, batch)


def backward_and_clip(accelerator, model, loss: torch.Tensor | None, max_grad_norm: float | None) -> None:
    """Backward of `loss` (None: a skipped batch) and, at an optimizer step, gradient clipping."""
    if loss is not None:
        accelerator.backward(loss)
    if accelerator.sync_gradients and max_grad_norm:
        accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)


class Pending:
    """Losses and real-token counts of the steps since the last flush, kept on the device (no sync per step).
    Several processes: each flush sums every rank's (one all-reduce), so the logged loss is the mean over all
    the step's batches, as one process with the whole batch would log it."""

    def __init__(self, accelerator=None):
        self.accelerator = accelerator
        self.losses: list[torch.Tensor] = []
        self.where: list[tuple[int, int, int]] = []  # (step, epoch, batch) of each loss, for error messages
        self.tokens: torch.Tensor | int = 0

    def add_loss(self, loss: torch.Tensor, state: LoopState) -> None:
        self.losses.append(loss.detach().float().reshape(()))
        self.where.append((state.step + 1, state.epoch, state.batches_in_epoch))

    def add_tokens(self, batch) -> None:
        mask = batch.get("attention_mask")
        self.tokens = self.tokens + (mask.sum() if mask is not None else batch["input_ids"].numel())

    def flush(self, state: LoopState, checkpoints) -> None:
        """Fold into `state` (one read from the device); a NaN/inf loss raises, naming where it appeared."""
        if not self.losses and isinstance(self.tokens, int):
            return
        losses = torch.stack(self.losses).tolist() if self.losses else []  # waits for the device once
        tokens = int(self.tokens)
        where, self.losses, self.where, self.tokens = self.where, [], [], 0
        for value, (step, epoch, batch) in zip(losses, where):
            if not math.isfinite(value):
                raise TrainingError(_nan_message(value, step, epoch, batch, checkpoints))
        total, count = sum(losses), len(losses)
        if self.accelerator is not None and self.accelerator.num_processes > 1:
            summed = self.accelerator.reduce(torch.tensor([total, count, tokens], dtype=torch.float64,
                                                          device=self.accelerator.device), reduction="sum")
            total, count, tokens = float(summed[0]), int(summed[1]), int(summed[2])
        state.tokens += tokens
        state.running_loss += total
        state.running_batches += count


RECORD_KEYS = ("type", "split", "step", "epoch", "train_s", "is_best")  # what the loop adds to an evaluation's metrics


def recorded_evaluation(state: LoopState, step: int | None) -> dict | None:
    """The validation metrics the loop's evaluation at `step` returned (its own keys removed), or None."""
    for record in state.history:
        if record["step"] == step:
            return {key: value for key, value in record.items() if key not in RECORD_KEYS}
    return None


def _evaluate_and_decide(state, plan, stopper, evaluate, on_best, log) -> None:
    if state.history and state.history[-1]["step"] == state.step:
        return  # already evaluated at this step
    eval_started = time.perf_counter()
    train_seconds = eval_started - state.started - state.eval_seconds  # training time so far, evaluations excluded
    metrics = evaluate()
    state.eval_seconds += time.perf_counter() - eval_started
    record = {"type": "eval", "split": "validation", "step": state.step, "epoch": _epoch(state, plan),
              "train_s": round(train_seconds, 3), **metrics}
    value = metrics.get(stopper.metric)
    if value is None or not math.isfinite(value):
        raise TrainingError(f"validation {stopper.metric} is {value} at step {state.step}")
    record["is_best"] = stopper.update(value, state.step)
    state.history.append(record)
    log(record)
    if record["is_best"]:
        on_best(record)
    state.stop_reason = stopper.reason


def _skip_if_not_finite(loss: torch.Tensor, state: LoopState, plan: LoopPlan, checkpoints, log) -> bool:
    """train.on_nan: skip. True for a finite loss; a NaN/inf one is skipped (no gradient from it), counted
    and logged, up to train.max_nan_skips; one more stops the run."""
    if torch.isfinite(loss.detach()).all():
        return True
    step, value = state.step + 1, loss.detach().float().mean().item()
    if state.nan_skipped < plan.max_nan_skips:
        state.nan_skipped += 1
        log({"type": "skip", "step": step, "epoch": state.epoch, "batch": state.batches_in_epoch,
             "reason": f"loss is {value}", "skipped": state.nan_skipped})
        return False
    raise TrainingError(
        f"the training loss was not finite in {state.nan_skipped + 1} batches, more than train.max_nan_skips "
        f"({plan.max_nan_skips}); the last at step {step} (epoch {state.epoch}); {_saved(checkpoints)}. "
        f"Lower train.lr, set train.max_grad_norm, or check the data")


def _nan_message(value: float, step: int, epoch: int, batch: int, checkpoints) -> str:
    return (f"the training loss became {value} at step {step} (epoch {epoch}, batch {batch}); "
            f"{_saved(checkpoints)}. Lower train.lr, set train.max_grad_norm, check the data, or skip such "
            f"batches with train.on_nan: skip")


def _saved(checkpoints) -> str:
    """What a stopped run still has, for error messages."""
    return checkpoints.last_good() if checkpoints else "the best model so far is kept in the run directory"


def _epoch(state: LoopState, plan: LoopPlan) -> float:
    return round(state.step / plan.steps_per_epoch, 4)
