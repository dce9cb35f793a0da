"""Losses of a multi-label head (N x L logits, one independent yes/no per label) and their positive weights.

    bce     binary cross-entropy with logits (torch's BCEWithLogitsLoss), mean over rows and labels;
            `pos_weight` (L) multiplies each label's positive term
    focal   focal BCE (Lin et al., 2017): each element's BCE times (1 - p_t) ** gamma, where p_t is the
            probability given to the true answer; gamma 0 is plain BCE. `pos_weight` weighs positives as in bce

The labels are float multi-hot (0.0 / 1.0); integer labels are converted, never passed to BCE as they are.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from tunesmith.errors import RecipeError


def multi_label_loss(kind: str, logits: torch.Tensor, labels: torch.Tensor, *, pos_weight: torch.Tensor | None = None,
                     gamma: float = 2.0) -> torch.Tensor:
    """The mean loss of N x L `logits` against N x L 0/1 `labels` (cast to the logits' float type)."""
    logits = logits.float()
    labels = labels.to(logits.dtype).reshape(logits.shape)
    weight = None if pos_weight is None else pos_weight.to(logits.device, logits.dtype)
    element = F.binary_cross_entropy_with_logits(logits, labels, pos_weight=weight, reduction="none")
    if kind == "bce":
        return element.mean()
    if kind == "focal":
        p = torch.sigmoid(logits)
        p_true = labels * p + (1 - labels) * (1 - p)
        return ((1 - p_true) ** gamma * element).mean()
    raise ValueError(f"unknown multi-label loss {kind!r}")


def count_pos_weight(y: np.ndarray, cap: float) -> np.ndarray:
    """negatives / positives of each label in the N x L training matrix, capped at `cap` (a label without a
    positive gets the cap; a label that is always positive gets its ratio, 0, raised to a floor of 1/cap)."""
    y = np.asarray(y, dtype=np.float64)
    positives = y.sum(axis=0)
    negatives = len(y) - positives
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(positives > 0, negatives / np.maximum(positives, 1), cap)
    return np.clip(ratio, 1.0 / cap, cap).astype(np.float32)


def resolve_pos_weight(setting, y_train: np.ndarray, names: list[str], cap: float) -> np.ndarray | None:
    """The recipe's multi_label.pos_weight as an L-vector: None (none), the counts, or the explicit map (labels
    not named keep 1.0; a name that is not a label is a RecipeError)."""
    if setting == "none":
        return None
    if setting == "counts":
        return count_pos_weight(y_train, cap)
    unknown = sorted(set(setting) - set(names))
    if unknown:
        raise RecipeError(f"multi_label.pos_weight: '{unknown[0]}' is not a label of the training data; labels "
                          f"are {', '.join(names)}")
    bad = [name for name, weight in setting.items() if not weight > 0]
    if bad:
        raise RecipeError(f"multi_label.pos_weight: the weight of '{bad[0]}' must be a positive number")
    return np.asarray([float(setting.get(name, 1.0)) for name in names], dtype=np.float32)
