"""Optimizers and learning-rate schedules by name (a new one is one registry line)."""

from __future__ import annotations

import math

import torch
from transformers import get_scheduler

from tunesmith.config.recipe import TrainSpec

# `fused` is passed only where torch has a fused kernel (one kernel over all parameters instead of a Python
# loop over tensors): on the reference CPU it cut a MiniLM AdamW step from ~300 ms to ~240 ms (docs/benchmarks.md)
OPTIMIZERS = {
    "adamw": lambda params, t, fused: torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay, fused=fused),
    "adam": lambda params, t, fused: torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay, fused=fused),
    "sgd": lambda params, t, fused: torch.optim.SGD(params, lr=t.lr, momentum=t.momentum,
                                                    weight_decay=t.weight_decay, fused=fused),
    "rmsprop": lambda params, t, fused: torch.optim.RMSprop(params, lr=t.lr, momentum=t.momentum,
                                                            weight_decay=t.weight_decay),
}

SCHEDULES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}

_NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight", "ln_")


def build_optimizer(model: torch.nn.Module, settings: TrainSpec) -> torch.optim.Optimizer:
    """Weight decay on weight matrices only: biases and norm weights are not decayed (as in BERT)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if any(key in name for key in _NO_DECAY) else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": settings.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return OPTIMIZERS[settings.optimizer](groups, settings, can_fuse(decay + no_decay))


def can_fuse(params) -> bool | None:
    """torch's fused optimizer kernels take floating-point parameters on a CPU or a CUDA device
    (None lets torch choose its default for anything else)."""
    if params and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params):
        return True
    return None


def warmup_steps(settings: TrainSpec, total_steps: int) -> int:
    if settings.warmup >= 1:
        return int(settings.warmup)
    return math.ceil(settings.warmup * total_steps)


def build_schedule(optimizer, settings: TrainSpec, total_steps: int):
    return get_scheduler(
        SCHEDULES[settings.schedule], optimizer,
        num_warmup_steps=warmup_steps(settings, total_steps), num_training_steps=total_steps,
    )
