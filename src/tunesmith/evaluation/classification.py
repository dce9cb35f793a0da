"""Classification metrics from scikit-learn: accuracy, macro-F1, balanced accuracy, per-class P/R/F1,
confusion matrix, and (binary, given probabilities) PR-AUC of the positive class."""

from __future__ import annotations

import numpy as np

# Metrics that early stopping may watch; "loss" is minimised, the others maximised.
# pr_auc exists for binary tasks only (PR-AUC of the positive class).
METRIC_NAMES = ("accuracy", "macro_f1", "weighted_f1", "balanced_accuracy", "pr_auc", "loss")
BOUNDED_METRICS = ("accuracy", "macro_f1", "weighted_f1", "balanced_accuracy", "pr_auc")  # always in [0, 1]


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, names: list[str],
                           probs: np.ndarray | None = None, positive: int | None = None) -> dict:
    """Metrics of predicted ids `y_pred`; with N x C `probs` of a binary task and the `positive`
    class id, also `pr_auc` (average precision of the positive class; NaN when y_true has none)."""
    # imported here: scikit-learn costs ~40 MB of memory in every process, language-model runs included
    from sklearn.metrics import (accuracy_score, average_precision_score, confusion_matrix, f1_score,
                                 precision_recall_fscore_support)

    labels = list(range(len(names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    present = support > 0  # balanced accuracy: the mean recall over the classes that occur
    extra = {}
    if probs is not None and positive is not None and len(names) == 2:
        is_pos = np.asarray(y_true) == positive
        extra["pr_auc"] = (float(average_precision_score(is_pos, np.asarray(probs)[:, positive]))
                           if is_pos.any() else float("nan"))
        extra["positive_label"] = names[positive]
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        **extra,
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(names, precision, recall, f1, support)
        },
        "confusion_matrix": {
            "labels": list(names),
            "matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        },
        "n": int(len(y_true)),
    }


def majority_baseline(y_train: np.ndarray, y_eval: np.ndarray, names: list[str]) -> dict:
    """What always predicting the most frequent training class scores on y_eval."""
    majority = int(np.bincount(y_train, minlength=len(names)).argmax())
    scores = classification_metrics(y_eval, np.full_like(y_eval, majority), names)
    return {"predicts": names[majority], "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"],
            "balanced_accuracy": scores["balanced_accuracy"]}


def metric_mode(name: str) -> str:
    return "min" if name == "loss" or name.endswith("loss") else "max"
