"""Training losses for imbalanced classification: (weighted) cross-entropy and focal loss, both with
optional label smoothing.

For logits z (N x C), gold ids y, class weights w (default all 1) and smoothing e, the soft target
of row i is q_i = (1 - e) * onehot(y_i) + e / C, p_i = softmax(z_i), and

    cross-entropy:  l_i = - sum_c q_ic * log p_ic
    focal:          l_i = - sum_c q_ic * (1 - p_ic) ** gamma * log p_ic     (Lin et al., 2017)

reduced as the weighted mean  L = sum_i w_{y_i} * l_i / sum_i w_{y_i}  -- PyTorch's convention for
`cross_entropy(weight=...)`. With gamma = 0 focal loss is cross-entropy; without weights and
smoothing, cross-entropy equals `torch.nn.functional.cross_entropy`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class ImbalanceLoss:
    """A callable (logits, labels) -> scalar loss holding its class weights."""

    def __init__(self, kind: str = "ce", *, weights=None, gamma: float = 2.0, label_smoothing: float = 0.0):
        if kind not in ("ce", "focal"):
            raise ValueError(f"unknown loss {kind!r}")
        self.kind = kind
        self.gamma = float(gamma)
        self.label_smoothing = float(label_smoothing)
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        n_classes = logits.shape[-1]
        log_p = F.log_softmax(logits, dim=-1)
        target = F.one_hot(labels, n_classes).to(log_p.dtype)
        if self.label_smoothing:
            target = target * (1.0 - self.label_smoothing) + self.label_smoothing / n_classes
        terms = -log_p
        if self.kind == "focal" and self.gamma:
            terms = terms * (1.0 - log_p.exp()).clamp(min=0).pow(self.gamma)
        per_example = (target * terms).sum(-1)
        if self.weights is None:
            return per_example.mean()
        if self.weights.device != logits.device:
            self.weights = self.weights.to(logits.device)
        w = self.weights[labels]
        return (w * per_example).sum() / w.sum()

    def describe(self) -> dict:
        out = {"loss": self.kind, "label_smoothing": self.label_smoothing}
        if self.kind == "focal":
            out["gamma"] = self.gamma
        if self.weights is not None:
            out["class_weights"] = [round(float(w), 6) for w in self.weights.cpu()]
        return out
