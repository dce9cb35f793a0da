"""Training losses of a regression head, on standardised targets (see data.targets.TargetScaler).

    mse     mean squared error (the default)
    huber   squared below `delta`, linear above it (torch's huber_loss); on standardised targets
            delta = 1.0 means one training standard deviation
    l1      mean absolute error

Each is the mean over every row and target of an N x K batch, computed in float32 whatever the
dtype of the model's output (bf16 under autocast), as the classification losses are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("mse", "huber", "l1")


def regression_loss(name: str, predictions: torch.Tensor, targets: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """The scalar loss `name` of predictions and targets of the same shape (N x K, or N for one target)."""
    if name not in LOSSES:
        raise ValueError(f"unknown regression loss {name!r}; choose from {', '.join(LOSSES)}")
    predictions = predictions.float()
    targets = targets.to(device=predictions.device, dtype=torch.float32)
    if predictions.shape != targets.shape:
        raise ValueError(f"predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} differ in shape")
    if name == "mse":
        return F.mse_loss(predictions, targets)
    if name == "huber":
        return F.huber_loss(predictions, targets, delta=float(delta))
    return F.l1_loss(predictions, targets)
