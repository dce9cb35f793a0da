"""The majority-class baseline: always predict the most frequent training class.

The scoring itself is `evaluation.classification.majority_baseline` (also used on its own); this module
applies it to every held-out split.
"""

from __future__ import annotations

import numpy as np

from tunesmith.evaluation.classification import majority_baseline


def majority_scores(y_train: np.ndarray, y_eval: dict[str, np.ndarray], names: list[str]) -> dict[str, dict]:
    """{split: {"predicts", "accuracy", "macro_f1"}} for each held-out split's label ids."""
    return {split: majority_baseline(np.asarray(y_train), np.asarray(y), names) for split, y in y_eval.items()}
