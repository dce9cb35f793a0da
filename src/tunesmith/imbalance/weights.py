"""Per-class loss weights from the training class counts.

Every scheme is scaled so that the average *training example* weighs 1 (sum_c n_c * w_c = N): the
loss keeps the scale of plain cross-entropy, so learning rates carry over. Only ratios matter to
the (weighted-mean) loss; the scaling makes the numbers in eval.json readable.

- inverse:           w_c ∝ 1 / n_c            (scikit-learn's "balanced": N / (C * n_c))
- sqrt_inverse:      w_c ∝ 1 / sqrt(n_c)
- effective_number:  w_c ∝ (1 - beta) / (1 - beta ** n_c)   (Cui et al., 2019, "Class-Balanced Loss")
- explicit:          {label: weight}; labels left out weigh 1 (before scaling)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tunesmith.errors import RecipeError


def class_weights(scheme, counts: Sequence[int], names: Sequence[str], *, beta: float = 0.999,
                  label_ids: Mapping[str, int] | None = None) -> np.ndarray:
    """Weights (float64, one per class id) for `scheme` given training `counts` per class id.

    `label_ids` maps label text to class id for explicit weights (default: the names' own order).
    """
    n = np.asarray(counts, dtype=np.float64)
    if (n <= 0).any():
        empty = names[int(np.flatnonzero(n <= 0)[0])]
        raise RecipeError(f"imbalance.class_weights: class '{empty}' has no training examples")
    if isinstance(scheme, Mapping):
        raw = np.ones(len(n))
        ids = dict(label_ids) if label_ids is not None else {name: i for i, name in enumerate(names)}
        for label, weight in scheme.items():
            if label not in ids:
                raise RecipeError(f"imbalance.class_weights: unknown label '{label}'; labels are {', '.join(names)}")
            raw[ids[label]] = float(weight)
    elif scheme == "inverse":
        raw = 1.0 / n
    elif scheme == "sqrt_inverse":
        raw = 1.0 / np.sqrt(n)
    elif scheme == "effective_number":
        raw = (1.0 - beta) / (1.0 - np.power(beta, n))
    else:
        raise RecipeError(f"imbalance.class_weights: unknown scheme {scheme!r}")
    return raw * n.sum() / float((raw * n).sum())


def focal_alpha(alpha, names: Sequence[str], positive: int | None,
                label_ids: Mapping[str, int] | None = None) -> np.ndarray:
    """Focal loss's alpha as per-class weights: a number is the positive class's weight (the other
    class gets 1 - alpha, as in Lin et al., 2017); a mapping gives each label's weight (others 1)."""
    if isinstance(alpha, Mapping):
        ids = dict(label_ids) if label_ids is not None else {name: i for i, name in enumerate(names)}
        out = np.ones(len(names))
        for label, weight in alpha.items():
            if label not in ids:
                raise RecipeError(f"imbalance.alpha: unknown label '{label}'; labels are {', '.join(names)}")
            out[ids[label]] = float(weight)
        return out
    if len(names) != 2 or positive is None:
        raise RecipeError("imbalance.alpha: a single number needs a binary task; give {label: weight} instead")
    out = np.full(2, 1.0 - float(alpha))
    out[positive] = float(alpha)
    return out
