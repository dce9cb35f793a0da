"""Multi-label metrics from scikit-learn, on N x L 0/1 gold labels and N x L sigmoid probabilities cut at
per-label thresholds:

    micro_f1                F1 over every (row, label) decision pooled
    macro_f1                the mean of the labels' F1 (a label without gold or predicted positives scores 0)
    samples_f1              the mean over rows of each row's F1 (a row with no gold and no predicted label: 1)
    subset_accuracy         the share of rows whose predicted set is exactly the gold set
    hamming_loss            the share of wrong (row, label) decisions (lower is better)
    mean_average_precision  the mean over labels with a gold positive of their average precision (threshold-free)
    per_label               {label: precision, recall, f1, support, threshold}
"""

from __future__ import annotations

import numpy as np

METRIC_NAMES = ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss", "mean_average_precision",
                "loss")
BOUNDED_METRICS = ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss",
                   "mean_average_precision")
THRESHOLD_METRICS = ("micro_f1", "macro_f1", "samples_f1")  # what threshold tuning may maximise


def metric_mode(name: str) -> str:
    return "min" if name in ("loss", "hamming_loss") else "max"


def decide(probs: np.ndarray, thresholds) -> np.ndarray:
    """N x L 0/1 predictions: a label is predicted when its probability is >= its threshold."""
    probs = np.asarray(probs, dtype=np.float64)
    return (probs >= np.broadcast_to(np.asarray(thresholds, dtype=np.float64), probs.shape[1:])).astype(np.int64)


def multi_label_metrics(y_true: np.ndarray, probs: np.ndarray, thresholds, names: list[str]) -> dict:
    """Every metric above (loss excepted) of `probs` cut at `thresholds` (one per label, or one for all)."""
    from sklearn.metrics import (accuracy_score, average_precision_score, f1_score, hamming_loss,
                                 precision_recall_fscore_support)

    y_true = np.asarray(y_true).astype(np.int64).reshape(-1, len(names))
    probs = np.asarray(probs, dtype=np.float64).reshape(-1, len(names))
    y_pred = decide(probs, thresholds)
    cuts = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (len(names),))
    if not len(y_true):
        return {"n": 0}
    flat = len(names) == 1  # scikit-learn reads one 0/1 column as a binary task: score its positive class
    gold, pred, only = (y_true[:, 0], y_pred[:, 0], {"labels": [1]}) if flat else (y_true, y_pred, {})
    precision, recall, f1, support = precision_recall_fscore_support(gold, pred, average=None, zero_division=0,
                                                                     **only)
    with_positives = [k for k in range(len(names)) if y_true[:, k].any()]
    average_precision = [float(average_precision_score(y_true[:, k], probs[:, k])) for k in with_positives]
    return {
        "micro_f1": float(f1_score(gold, pred, average="micro", zero_division=0, **only)),
        "macro_f1": float(f1_score(gold, pred, average="macro", zero_division=0, **only)),
        "samples_f1": (fast_score(y_true, y_pred, "samples_f1") if flat
                       else float(f1_score(y_true, y_pred, average="samples", zero_division=1))),
        "subset_accuracy": float(accuracy_score(gold, pred)),
        "hamming_loss": float(hamming_loss(gold, pred)),
        "mean_average_precision": float(np.mean(average_precision)) if average_precision else float("nan"),
        "per_label": {name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s),
                             "threshold": float(t)}
                      for name, p, r, f, s, t in zip(names, precision, recall, f1, support, cuts)},
        "n": int(len(y_true)),
    }


def fast_score(y_true: np.ndarray, y_pred: np.ndarray, metric: str) -> float:
    """micro_f1, macro_f1 or samples_f1 in numpy, as multi_label_metrics computes them (for threshold search)."""
    y_true, y_pred = np.asarray(y_true, dtype=bool), np.asarray(y_pred, dtype=bool)
    axis = {"micro_f1": None, "macro_f1": 0, "samples_f1": 1}[metric]
    tp = (y_true & y_pred).sum(axis=axis)
    wrong = (y_true ^ y_pred).sum(axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(2 * tp + wrong > 0, 2 * tp / np.maximum(2 * tp + wrong, 1), 1.0 if metric == "samples_f1"
                      else 0.0)
    return float(np.mean(f1))
