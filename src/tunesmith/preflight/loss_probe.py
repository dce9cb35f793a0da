"""The first-steps probe: on one fixed batch, the loss must fall over a few optimizer steps.

A model that cannot lower the loss of the very batch it is stepping on (dropout off, the run's optimizer and
peak learning rate, no warm-up) will not learn the task either: the learning rate is far too low for the method
(it barely moves), far too high (it rises, or turns nan), or no gradient reaches the weights that matter. The
trainable weights are copied first and put back afterwards, and the probe's optimizer is thrown away, so the run
starts from exactly the weights it would have started from. The copy is parked in an unnamed temporary file, not
in memory: under full fine-tuning a second copy of every weight beside the probe's gradients and Adam moments
was the run's highest memory mark (+540 MB for a 135M model); if the file cannot be written, the copy stays in
memory.

`preflight.loss_probe: auto` (the default) runs it for runs projected (one timed probe step x the planned
steps) to train longer than `preflight.probe_minutes`: a long run is where finding out after the fact costs most.
"""

from __future__ import annotations

import math
import tempfile
import time

import torch

from tunesmith.data.findings import Finding
from tunesmith.train.optim import build_optimizer
from tunesmith.train.safetensors_parts import tensor_bytes

MIN_FALL = 0.02  # the last probe loss must be at least 2% below the first
MAX_RISE = 0.05  # ... and a rise of more than 5% means the rate is too high


def probe_losses(context, batch: dict, steps: int, minutes: float | None) -> tuple[list[float], float]:
    """(losses before each step and after the last, seconds of the first step); with `minutes`, stops after one
    step when the projected run is shorter. The trainable weights are restored before returning."""
    model = context.model
    trainable = [p for p in model.parameters() if p.requires_grad]
    saved = ParkedWeights(trainable)
    optimizer = build_optimizer(model, context.recipe.train)
    was_training = model.training
    eval_but_checkpointed(model)
    losses, first_step = [], 0.0
    try:
        for step in range(steps):
            started = time.perf_counter()
            loss = context.task.compute_loss(model, batch)
            losses.append(float(loss.detach()))
            if not math.isfinite(losses[-1]) or step == steps - 1:
                break
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if step == 0:
                first_step = time.perf_counter() - started
                if minutes is not None and first_step * context.total_steps < minutes * 60:
                    break
    finally:
        saved.restore()
        for param in trainable:
            param.grad = None
        del optimizer
        model.train(was_training)
    return losses, first_step


def eval_but_checkpointed(model) -> None:
    """Dropout off (eval mode: the fixed batch's loss moves only with the weights), but the layers under
    `method.gradient_checkpointing` still recompute their activations in the backward pass: transformers
    checkpoints a layer only while that layer is in training mode, and a probe step without it held every
    layer's activations (4.0 GB for smollm2 at one block of 2,048 tokens, against 2.3 GB in training). Only the
    checkpointed layer itself is set to training; the modules inside it (their dropout) stay in eval mode."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    model.eval()
    for module in model.modules():
        if isinstance(module, GradientCheckpointingLayer) and module.gradient_checkpointing:
            module.training = True


class ParkedWeights:
    """The values of `params`, written to an unnamed temporary file and read back into the same storage by
    `restore` (exactly: the bytes themselves). A parameter that is not a contiguous CPU tensor, or all of them
    when the file cannot be written (disk full), is kept as a copy in memory instead."""

    def __init__(self, params: list[torch.Tensor]):
        self.params = params
        self.in_memory: dict[int, torch.Tensor] = {}
        self.file = None
        try:
            self.file = tempfile.TemporaryFile(prefix="tunesmith-probe-")
            for index, param in enumerate(params):
                if parkable(param):
                    self.file.write(tensor_bytes(param))
                else:
                    self.in_memory[index] = param.detach().clone()
        except OSError:
            if self.file is not None:
                self.file.close()
            self.file = None
            self.in_memory = {index: param.detach().clone() for index, param in enumerate(params)}

    def restore(self) -> None:
        with torch.no_grad():
            if self.file is not None:
                self.file.seek(0)
            for index, param in enumerate(self.params):
                if index in self.in_memory:
                    param.copy_(self.in_memory[index])
                else:
                    self.file.readinto(tensor_bytes(param))
        if self.file is not None:
            self.file.close()
        self.in_memory = {}


def parkable(param: torch.Tensor) -> bool:
    return param.device.type == "cpu" and param.is_contiguous() and param.numel() > 0



def check_loss_falls(context) -> list[Finding]:
    spec = context.recipe.preflight
    if spec.loss_probe is False:
        return []
    minutes = spec.probe_minutes if spec.loss_probe == "auto" else None
    losses, first_step = probe_losses(context, context.fixed_batch("train"), spec.probe_steps, minutes)
    lr, method = context.recipe.train.lr, context.recipe.method.name
    if len(losses) == 1 and math.isfinite(losses[0]) and spec.probe_steps > 1:
        return [Finding("loss_probe_skipped", "info", f"the loss probe stopped after one step: the run is projected "
                        f"at ~{first_step * context.total_steps / 60:.1f} min, under preflight.probe_minutes "
                        f"{spec.probe_minutes:g} (preflight.loss_probe: true runs it always)")]
    first, last = losses[0], losses[-1]
    trace = " -> ".join(f"{x:.4g}" for x in (losses[0], losses[len(losses) // 2], losses[-1]))
    where = f"on one fixed batch over {len(losses) - 1} steps at train.lr {lr:g} (method {method})"
    if not math.isfinite(last):
        return [Finding("loss_not_falling", "warning", f"the loss became {last} {where}: the learning rate is "
                        f"likely too high", examples=losses)]
    if last > first * (1 + MAX_RISE):
        return [Finding("loss_not_falling", "warning", f"the loss rose ({trace}) {where}: the learning rate is "
                        f"likely too high for the method", examples=losses)]
    if last > first * (1 - MIN_FALL):
        return [Finding("loss_not_falling", "warning", f"the loss barely moved ({trace}) {where}: the learning "
                        f"rate is likely too low for the method, or no gradient reaches the weights that matter",
                        examples=losses)]
    return []
