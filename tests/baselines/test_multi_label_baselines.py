"""The multi-label baselines: the modal training label set, and TF-IDF + one-vs-rest logistic regression."""

from __future__ import annotations

import numpy as np
import pytest

from multi_label_helpers import topic_rows
from tunesmith.baselines.multi_label import majority_scores, modal_set, tfidf_scores

NAMES = ["food", "music", "sport"]


def matrix(rows):
    return np.array([[float(n in labels) for n in NAMES] for _, labels in rows])


def test_the_modal_set_may_be_empty_and_is_scored_by_hand():
    y_train = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 0], [1, 1, 0]])
    assert modal_set(y_train).tolist() == [0, 0, 0]
    y_eval = np.array([[0, 0, 0], [1, 0, 0]])
    scores = majority_scores(y_train, {"test": y_eval}, NAMES)["test"]
    assert scores["predicts"] == "{no label}"
    assert scores["subset_accuracy"] == 0.5 and scores["micro_f1"] == 0.0 and scores["hamming_loss"] == 1 / 6
    scores = majority_scores(np.array([[1, 0, 1], [1, 0, 1], [0, 0, 0]]), {"test": y_eval}, NAMES)["test"]
    assert scores["predicts"] == "{food, sport}" and scores["micro_f1"] == pytest.approx(2 * 1 / (2 * 1 + 3))


def test_tfidf_one_vs_rest_learns_keyword_topics():
    train, validation, test = topic_rows(120, seed=1), topic_rows(40, seed=2), topic_rows(40, seed=3)
    texts = {"validation": np.array([t for t, _ in validation], dtype=object),
             "test": np.array([t for t, _ in test], dtype=object)}
    out = tfidf_scores(np.array([t for t, _ in train], dtype=object), matrix(train), texts,
                       {"validation": matrix(validation), "test": matrix(test)}, NAMES, metric="micro_f1",
                       tune=True, per_label=True, default=0.5)
    assert out["test"]["micro_f1"] > 0.95 and set(out["test"]["thresholds"]) == set(NAMES)
    assert out["validation"]["thresholds"] == out["test"]["thresholds"]  # chosen once, on validation


def test_tfidf_with_a_single_label():
    train, validation = topic_rows(80, seed=1), topic_rows(30, seed=2)
    y = {"validation": matrix(validation)[:, :1]}
    out = tfidf_scores(np.array([t for t, _ in train], dtype=object), matrix(train)[:, :1],
                       {"validation": np.array([t for t, _ in validation], dtype=object)}, y, ["food"],
                       metric="micro_f1", tune=False, per_label=True, default=0.5)
    assert 0.8 < out["validation"]["micro_f1"] <= 1.0 and out["validation"]["thresholds"] == {"food": 0.5}
