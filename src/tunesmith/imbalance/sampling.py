"""Re-sampling the training set each epoch, determined by the seed and the epoch number.

With class counts n_c, the largest n_max, the smallest n_min and the recipe's `ratio` r (the wanted
minority:majority ratio; 1.0 = balanced):

- oversample: each class is drawn as if it had t_c = max(n_c, r * n_max) rows: an epoch is
  len(dataset) draws *with replacement* (weighted random sampling), class c drawn with probability
  t_c / sum(t). The number of steps per epoch does not change.
- undersample: each epoch keeps t_c = min(n_c, ceil(n_min / r)) rows of class c, drawn without
  replacement (a fresh draw each epoch, so over several epochs most majority rows are seen); the
  epoch has sum(t) rows, so it is shorter.

The draws come from the sampler's own `generator` (a torch.Generator seeded with the seed), which each
epoch advances, exactly as a shuffling RandomSampler does: the same seed gives the same epochs, and a
checkpoint that saves and restores that generator (train/checkpoint.py finds it) resumes the same order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


def target_counts(counts: Sequence[int], method: str, ratio: float = 1.0) -> np.ndarray:
    """How many rows of each class an epoch is built as if it had (see the module docstring)."""
    n = np.asarray(counts, dtype=np.float64)
    if method == "oversample":
        return np.maximum(n, ratio * n.max())
    if method == "undersample":
        present = n[n > 0]
        return np.minimum(n, math.ceil(present.min() / ratio))
    raise ValueError(f"unknown resampling method {method!r}")


class ClassResampler(Sampler[int]):
    """Indices of one epoch, re-sampled towards the target class balance."""

    def __init__(self, labels: Sequence[int], method: str, *, ratio: float = 1.0, seed: int = 0):
        self.labels = np.asarray(labels, dtype=np.int64)
        self.method = method
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        counts = np.bincount(self.labels, minlength=int(self.labels.max()) + 1 if len(self.labels) else 0)
        self.counts = counts
        self.targets = target_counts(counts, method, ratio)
        self.by_class = [np.flatnonzero(self.labels == c) for c in range(len(counts))]
        if method == "oversample":
            per_row = np.zeros(len(self.labels))
            for c, rows in enumerate(self.by_class):
                if len(rows):
                    per_row[rows] = self.targets[c] / len(rows)
            self.row_weights = torch.as_tensor(per_row / per_row.sum(), dtype=torch.float64)
            self.size = len(self.labels)
        else:
            self.size = int(sum(int(t) for t in self.targets))

    def class_probabilities(self) -> np.ndarray:
        """The expected share of each class in an epoch."""
        return self.targets / self.targets.sum()

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        generator = self.generator
        if self.method == "oversample":
            order = torch.multinomial(self.row_weights, self.size, replacement=True, generator=generator).tolist()
        else:
            kept = []
            for c, rows in enumerate(self.by_class):
                take = int(self.targets[c])
                if take:
                    pick = torch.randperm(len(rows), generator=generator)[:take].numpy()
                    kept.append(rows[pick])
            kept = np.concatenate(kept) if kept else np.empty(0, dtype=np.int64)
            order = kept[torch.randperm(len(kept), generator=generator).numpy()].tolist()
        return iter(order)
