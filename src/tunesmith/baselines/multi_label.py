"""Baselines of a multi-label task, scored with the task's own metrics on every held-out split:

    majority      always predict the most frequent training label set (the modal set; it may be the empty set)
    tfidf         the TF-IDF features of baselines/tfidf.py and one logistic regression per label
                  (OneVsRestClassifier); C from C_GRID chosen on validation by the threshold metric, the decision
                  thresholds chosen on validation as the fine-tuned model's are (or threshold.value when not tuned)
"""

from __future__ import annotations

import time
import warnings
from collections import Counter

import numpy as np

from tunesmith.baselines.tfidf import make_features
from tunesmith.evaluation.multi_label import fast_score, multi_label_metrics
from tunesmith.evaluation.multi_label_thresholds import tune_thresholds

C_GRID = (1.0, 10.0, 100.0)
SHOWN = ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss", "mean_average_precision")


def modal_set(y_train: np.ndarray) -> np.ndarray:
    """The most frequent row of the N x L training matrix (ties: the first seen)."""
    counts = Counter(tuple(int(v) for v in row) for row in np.asarray(y_train))
    return np.asarray(counts.most_common(1)[0][0], dtype=np.float64)


def majority_scores(y_train: np.ndarray, y_eval: dict, names: list[str]) -> dict:
    """{split: metrics of always predicting the modal training set, with `predicts` naming it}."""
    mode = modal_set(y_train)
    shown = ", ".join(n for n, v in zip(names, mode) if v) or "no label"
    out = {}
    for split, y in y_eval.items():
        scores = multi_label_metrics(y, np.tile(mode, (len(y), 1)), 0.5, names)
        out[split] = {"predicts": f"{{{shown}}}", **{k: scores[k] for k in SHOWN if k in scores}}
    return out


def _fit(x, y, c: float, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    model = OneVsRestClassifier(LogisticRegression(C=c, max_iter=2000, random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "label not present in all training examples": a constant predictor
        model.fit(x, y)
    return model


def label_probs(model, x, width: int) -> np.ndarray:
    """N x `width` probabilities (one-vs-rest over a single label answers N x 2: the positive column is kept)."""
    probs = model.predict_proba(x)
    return probs[:, -width:] if probs.shape[1] != width else probs


def tfidf_scores(texts_train, y_train: np.ndarray, texts: dict, y_eval: dict, names: list[str], *, metric: str,
                 tune: bool, per_label: bool, default: float, seed: int = 0) -> dict:
    """{split: metrics of TF-IDF + one-vs-rest logistic regression}; `texts`/`y_eval` hold the held-out
    splits, validation among them (C and the thresholds are chosen there)."""
    start = time.perf_counter()
    features = make_features()
    x_train = features.fit_transform(texts_train)
    x_eval = {split: features.transform(t) for split, t in texts.items()}
    y_fit = np.asarray(y_train).astype(np.int64)
    y_fit = y_fit[:, 0] if y_fit.shape[1] == 1 else y_fit
    best = None
    for c in C_GRID:
        model = _fit(x_train, y_fit, c, seed)
        probs = label_probs(model, x_eval["validation"], len(names))
        cuts = (tune_thresholds(probs, y_eval["validation"], metric, per_label=per_label, default=default) if tune
                else np.full(len(names), default))
        score = fast_score(y_eval["validation"], probs >= cuts, metric)
        if best is None or score > best[0]:
            best = (score, c, model, cuts)
    _, c, model, cuts = best
    seconds = round(time.perf_counter() - start, 3)
    out = {}
    for split, x in x_eval.items():
        scores = multi_label_metrics(y_eval[split], label_probs(model, x, len(names)), cuts, names)
        out[split] = {**{k: scores[k] for k in SHOWN if k in scores}, "C": c, "features": int(x_train.shape[1]),
                      "thresholds": {n: float(t) for n, t in zip(names, cuts)}, "fit_s": seconds}
    return out
