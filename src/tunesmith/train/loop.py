"""The training loop, readable top to bottom.

    for each epoch:
        for each batch:
            loss = task.compute_loss(model, batch) / accumulation    (Accelerate scales and syncs)
            backward; every `grad_accumulation` batches: clip, optimizer step, schedule step
            every `log_every` steps: log loss and learning rate
            every `eval_every` steps (or at epoch end): evaluate, keep the best model, maybe stop

Accelerate hides the device, mixed precision and distributed details, so the same loop runs on a
CPU, one GPU, or under `accelerate launch` / `torchrun`.
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
    stop_reason: str | None = None
    history: list[dict] = field(default_factory=list)


@dataclass
class LoopPlan:
    steps_per_epoch: int
    total_steps: int
    eval_every: int       # in optimizer steps
    log_every: int
    max_grad_norm: float | None


def plan_steps(batches_per_epoch: int, settings) -> LoopPlan:
    """Turn epochs / max_steps / eval_every into step counts."""
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / settings.grad_accumulation))
    total = math.ceil(settings.epochs * steps_per_epoch)
    if settings.max_steps is not None:
        total = min(total, settings.max_steps)
    eval_every = steps_per_epoch if settings.eval_every == "epoch" else settings.eval_every
    return LoopPlan(steps_per_epoch, total, eval_every, settings.log_every, settings.max_grad_norm)


def train_loop(
    *, model, optimizer, schedule, train_loader, accelerator, plan: LoopPlan, stopper: EarlyStopper,
    compute_loss: Callable, evaluate: Callable[[], dict], on_best: Callable[[dict], None], log: Callable[[dict], None],
) -> LoopState:
    state = LoopState()
    model.train()
    progress = tqdm(total=plan.total_steps, desc="train", unit="step", disable=not accelerator.is_local_main_process)
    started = time.perf_counter()
    running_loss, running_batches = 0.0, 0
    while state.step < plan.total_steps and state.stop_reason is None:
        state.epoch += 1
        for batch in train_loader:
            with accelerator.accumulate(model):
                loss = compute_loss(model, batch)
                _check_finite(loss, state.step + 1)
                accelerator.backward(loss)
                if accelerator.sync_gradients and plan.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), plan.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            running_loss += loss.item()
            running_batches += 1
            state.samples += len(batch["input_ids"]) * accelerator.num_processes
            if not accelerator.sync_gradients:
                continue
            schedule.step()
            state.step += 1
            progress.update(1)
            if state.step % plan.log_every == 0 or state.step == plan.total_steps:
                record = {"type": "train", "step": state.step, "epoch": _epoch(state, plan),
                          "loss": running_loss / running_batches, "lr": schedule.get_last_lr()[0],
                          "samples": state.samples, "elapsed_s": time.perf_counter() - started}
                running_loss, running_batches = 0.0, 0
                progress.set_postfix(loss=f"{record['loss']:.4f}")
                log(record)
            if state.step % plan.eval_every == 0 or state.step == plan.total_steps:
                _evaluate_and_decide(state, plan, stopper, evaluate, on_best, log)
            if state.step >= plan.total_steps or state.stop_reason:
                break
    progress.close()
    if state.stop_reason is None:
        state.stop_reason = f"finished the budget of {plan.total_steps} steps ({_epoch(state, plan):g} epochs)"
    return state


def _evaluate_and_decide(state, plan, stopper, evaluate, on_best, log) -> None:
    if state.history and state.history[-1]["step"] == state.step:
        return  # already evaluated at this step
    metrics = evaluate()
    record = {"type": "eval", "split": "validation", "step": state.step, "epoch": _epoch(state, plan), **metrics}
    value = metrics.get(stopper.metric)
    if value is None or not math.isfinite(value):
        raise TrainingError(f"validation {stopper.metric} is {value} at step {state.step}")
    record["is_best"] = stopper.update(value, state.step)
    state.history.append(record)
    log(record)
    if record["is_best"]:
        on_best(record)
    state.stop_reason = stopper.reason


def _check_finite(loss: torch.Tensor, step: int) -> None:
    if not torch.isfinite(loss.detach()).all():
        raise TrainingError(
            f"the training loss became {loss.item()} at step {step}; lower train.lr, set train.max_grad_norm, "
            "or check the data. The best model so far is kept in the run directory"
        )


def _epoch(state: LoopState, plan: LoopPlan) -> float:
    return round(state.step / plan.steps_per_epoch, 4)
