"""Decision thresholds for binary classifiers.

A binary model predicts the positive class when P(positive) >= t (argmax is t = 0.5). `tune_threshold`
tries every distinct cut of the validation probabilities (the midpoints between neighbouring
distinct values) and keeps the one with the best metric; ties go to the cut closest to 0.5. The
chosen threshold is stored in the model's config.json as `tunesmith_threshold` so that `predict`
and `evaluate` apply it after reloading.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CONFIG_KEY = "tunesmith_threshold"
POSITIVE_KEY = "tunesmith_positive_label"


def decide(probs: np.ndarray, threshold: float | None = None, positive: int | None = None) -> np.ndarray:
    """Class ids from N x C probabilities: argmax, or for a binary model with a threshold,
    `positive` when P(positive) >= threshold."""
    probs = np.asarray(probs)
    if threshold is None or positive is None or probs.ndim != 2 or probs.shape[1] != 2:
        return probs.argmax(-1)
    return np.where(probs[:, positive] >= threshold, positive, 1 - positive)


def _score(tp, fp, fn, tn, metric: str):
    """`metric` from confusion counts (numbers or arrays) of the positive class."""
    tp, fp, fn, tn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn, tn))
    n_pos, n_neg = tp + fn, tn + fp
    n = n_pos + n_neg
    with np.errstate(invalid="ignore", divide="ignore"):
        f1_pos = np.nan_to_num(2 * tp / (2 * tp + fp + fn))
        f1_neg = np.nan_to_num(2 * tn / (2 * tn + fn + fp))
        recall_pos = np.nan_to_num(tp / n_pos)
        recall_neg = np.nan_to_num(tn / n_neg)
        if metric == "positive_f1":
            return f1_pos
        if metric == "macro_f1":
            return (f1_pos + f1_neg) / 2
        if metric == "weighted_f1":
            return np.nan_to_num((n_pos * f1_pos + n_neg * f1_neg) / n)
        if metric == "accuracy":
            return np.nan_to_num((tp + tn) / n)
        if metric == "balanced_accuracy":
            present = (n_pos > 0).astype(np.float64) + (n_neg > 0)
            return np.nan_to_num((recall_pos + recall_neg) / present)
    raise ValueError(f"unknown threshold metric {metric!r}")


def threshold_scores(p_pos: np.ndarray, is_pos: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds, `metric` at each) over every distinct cut of the scores, the first cut
    predicting no positive at all."""
    p_pos = np.asarray(p_pos, dtype=np.float64)
    is_pos = np.asarray(is_pos, dtype=bool)
    values = np.unique(p_pos)[::-1]  # distinct, descending
    below = np.append(values[1:], 0.0)
    thresholds = np.concatenate([[(1.0 + values[0]) / 2 if len(values) else 0.5], (values + below) / 2])
    order = np.argsort(-p_pos, kind="stable")
    sorted_pos = is_pos[order]
    cut = np.searchsorted(-p_pos[order], -values, side="right")  # rows with p >= each value
    tp = np.concatenate([[0], np.cumsum(sorted_pos)[cut - 1]]) if len(cut) else np.zeros(1)
    fp = np.concatenate([[0], cut]) - tp
    n_pos = is_pos.sum()
    return thresholds, _score(tp, fp, n_pos - tp, len(is_pos) - n_pos - fp, metric)


def score_at(p_pos, is_pos, metric: str, threshold: float) -> float:
    """`metric` when predicting positive for p >= threshold."""
    pred = np.asarray(p_pos, dtype=np.float64) >= threshold
    is_pos = np.asarray(is_pos, dtype=bool)
    tp, fp = (pred & is_pos).sum(), (pred & ~is_pos).sum()
    fn, tn = (~pred & is_pos).sum(), (~pred & ~is_pos).sum()
    return float(_score(tp, fp, fn, tn, metric))


def tune_threshold(p_pos: np.ndarray, is_pos: np.ndarray, metric: str) -> dict:
    """The best threshold for `metric` on these scores, with the metric there and at 0.5."""
    thresholds, scores = threshold_scores(p_pos, is_pos, metric)
    best = scores.max()
    candidates = np.flatnonzero(np.isclose(scores, best, rtol=0, atol=1e-12))
    chosen = candidates[np.argmin(np.abs(thresholds[candidates] - 0.5))]
    return {"value": float(thresholds[chosen]), "metric": metric, "score": float(best),
            "score_at_0.5": score_at(p_pos, is_pos, metric, 0.5)}


def write_threshold(model_dir: str | Path, record: dict) -> None:
    """Add `tunesmith_threshold` to the model's config.json (atomically)."""
    from tunesmith.artifacts import write_text_atomic

    path = Path(model_dir) / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config[CONFIG_KEY] = record
    write_text_atomic(path, json.dumps(config, indent=2, sort_keys=True) + "\n")


def read_threshold(config) -> dict | None:
    """The stored threshold record of a loaded model config (or a config dict), if any."""
    record = config.get(CONFIG_KEY) if isinstance(config, dict) else getattr(config, CONFIG_KEY, None)
    return record if isinstance(record, dict) and "value" in record and "label" in record else None
