"""What the classification task needs from the `imbalance:` section once the training labels are known:
the training loss, the positive class of a binary task, the stored decision threshold, and the
"predictions collapsed to one class" check."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tunesmith.errors import RecipeError
from tunesmith.config.imbalance import ImbalanceSpec
from tunesmith.imbalance.losses import ImbalanceLoss
from tunesmith.imbalance.threshold import decide
from tunesmith.imbalance.weights import class_weights, focal_alpha


@dataclass
class ImbalanceSetup:
    spec: ImbalanceSpec
    names: list[str]
    counts: np.ndarray                 # training examples per class id
    positive: int | None               # binary tasks: the class PR-AUC and the threshold are about
    loss: ImbalanceLoss | None         # None: the model's own cross-entropy
    augment_classes: list[int] = field(default_factory=list)

    def summary(self) -> dict:
        out = {"measures": self.spec.active, "train_counts": dict(zip(self.names, map(int, self.counts)))}
        if self.loss is not None:
            out.update(self.loss.describe())
            if "class_weights" in out:
                out["class_weights"] = dict(zip(self.names, out["class_weights"]))
        if self.positive is not None:
            out["positive"] = self.names[self.positive]
        if self.augment_classes:
            out["augment_classes"] = [self.names[c] for c in self.augment_classes]
        return out


def label_id(labels, value, key: str) -> int:
    found = labels.id_of(value)
    if found is None:
        raise RecipeError(f"{key}: unknown label '{value}'; labels are {', '.join(labels.names)}")
    return found


def positive_class(spec: ImbalanceSpec, labels, counts: np.ndarray) -> int | None:
    """The positive class of a binary task: `imbalance.positive`, else the rarer training class
    (the second one on a tie). None for tasks of more than two classes."""
    if len(labels) != 2:
        if spec.positive is not None:
            raise RecipeError("imbalance.positive: only binary tasks have a positive class")
        return None
    if spec.positive is not None:
        return label_id(labels, spec.positive, "imbalance.positive")
    return 0 if counts[0] < counts[1] else 1


def build_setup(spec: ImbalanceSpec, labels, y_train: np.ndarray, stop_metric: str) -> ImbalanceSetup:
    """Check the section against the labels and build the loss (raises RecipeError)."""
    names = labels.names
    counts = np.bincount(np.asarray(y_train, dtype=np.int64), minlength=len(names))
    positive = positive_class(spec, labels, counts)
    binary = len(names) == 2
    if spec.threshold.tune and not binary:
        raise RecipeError(f"imbalance.threshold.tune: threshold tuning is for binary tasks; this one has "
                          f"{len(names)} classes")
    if stop_metric == "pr_auc" and not binary:
        raise RecipeError(f"train.early_stopping.metric: pr_auc is defined for binary tasks; this one has "
                          f"{len(names)} classes")

    def ids_of(mapping, key):
        return {k: label_id(labels, k, f"{key}.{k}") for k in mapping}

    weights = None
    if spec.class_weights is not None:
        scheme = spec.class_weights
        label_ids = ids_of(scheme, "imbalance.class_weights") if isinstance(scheme, dict) else None
        weights = class_weights(scheme, counts, names, beta=spec.beta, label_ids=label_ids)
    elif spec.alpha is not None:
        label_ids = ids_of(spec.alpha, "imbalance.alpha") if isinstance(spec.alpha, dict) else None
        weights = focal_alpha(spec.alpha, names, positive, label_ids=label_ids)
    loss = (ImbalanceLoss(spec.loss, weights=weights, gamma=spec.gamma, label_smoothing=spec.label_smoothing)
            if spec.custom_loss or spec.alpha is not None else None)

    augment = []
    if spec.augment.probability:
        if spec.augment.classes is not None:
            augment = sorted({label_id(labels, c, "imbalance.augment.classes") for c in spec.augment.classes})
        else:
            majority = int(counts.argmax())
            augment = [c for c in range(len(names)) if c != majority]
    return ImbalanceSetup(spec, names, counts, positive, loss, augment)


def predict_ids(probs: np.ndarray, threshold: dict | None, positive: int | None) -> np.ndarray:
    """Class ids from probabilities, applying a binary threshold record when there is one."""
    value = threshold.get("value") if threshold else None
    return decide(probs, value, positive)


def collapse_message(y_true: np.ndarray, y_pred: np.ndarray, names: list[str], share: float) -> str | None:
    """A warning when one class takes at least `share` of the predictions while the classes that
    occur in `y_true` are mostly not predicted (each gets under a tenth of its support)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_pred) < 10:
        return None
    k = len(names)
    predicted = np.bincount(y_pred, minlength=k)
    support = np.bincount(y_true, minlength=k)
    top = int(predicted.argmax())
    top_share = predicted[top] / len(y_pred)
    if top_share < share or support[top] / len(y_true) >= share:
        return None
    starved = [c for c in range(k) if c != top and support[c] > 0 and predicted[c] < 0.1 * support[c]]
    if not starved:
        return None
    others = ", ".join(f"'{names[c]}' {int(predicted[c])} times for {int(support[c])} true" for c in starved)
    return (f"predictions collapsed towards '{names[top]}' ({top_share:.1%} of {len(y_pred)} predictions; "
            f"it is {support[top] / len(y_true):.1%} of the true labels); predicted {others}. "
            f"See the imbalance: section (class_weights, resample, threshold)")
