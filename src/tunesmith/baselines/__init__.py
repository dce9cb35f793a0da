"""Baselines: the reference points a fine-tuned model's numbers are read against.

    majority   always predict the most frequent training class
    tfidf      word + character n-gram TF-IDF features and a logistic regression whose C is chosen
               by cross-validation on the training set (scikit-learn; seconds on CPU)
    scratch    the same architecture, randomly initialised, trained with the same recipe and budget
               (a second training run, written to RUN/baselines/scratch; off by default)

The recipe's `baselines:` section chooses them:

    baselines: {majority: true, tfidf: true, scratch: false, cv_folds: 5}   # the default
    baselines: [tfidf, scratch]      # exactly these
    baselines: false                 # none

Results land in eval.json as `baselines: {split: {name: metrics}}`, next to the fine-tuned model's.
The section itself is tunesmith.config.baselines; the scratch run and the collection of every baseline
of a run are recipes (recipes/baselines.py, recipes/scratch.py).
"""

from __future__ import annotations

import numpy as np

from tunesmith.baselines.majority import majority_scores
from tunesmith.baselines.tfidf import texts_of, tfidf_scores
from tunesmith.config.baselines import BaselinesSpec


def text_baselines(spec: BaselinesSpec, splits, labels, *, metric: str = "macro_f1", seed: int = 0,
                   positive: int | None = None) -> dict:
    """Majority and TF-IDF baselines of a labelled-text task -> {held-out split: {name: metrics}}.

    `splits` is a LabelledSplits (frames with text[, text_pair], label); `labels` its LabelMap;
    `positive` the positive class id of a binary task (adds PR-AUC to the TF-IDF scores).
    """
    frames = splits.frames()
    held_out = [name for name in frames if name != "train"]
    y_train = np.asarray(labels.encode(frames["train"], source="train"))
    y_eval = {name: np.asarray(labels.encode(frames[name], source=name)) for name in held_out}
    out: dict[str, dict] = {name: {} for name in held_out}
    if spec.majority:
        for name, scores in majority_scores(y_train, y_eval, labels.names).items():
            out[name]["majority"] = scores
    if spec.tfidf:
        scores = tfidf_scores(texts_of(frames["train"]), y_train, {n: texts_of(frames[n]) for n in held_out},
                              y_eval, labels.names, metric=metric, folds=spec.cv_folds, seed=seed,
                              positive=positive)
        for name, split_scores in scores.items():
            out[name]["tfidf"] = split_scores
    return out
