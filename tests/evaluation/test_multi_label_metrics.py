"""Multi-label losses, metrics and thresholds against hand computation, torch and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tunesmith.errors import RecipeError
from tunesmith.evaluation.multi_label import fast_score, metric_mode, multi_label_metrics
from tunesmith.evaluation.multi_label_losses import count_pos_weight, multi_label_loss, resolve_pos_weight
from tunesmith.evaluation.multi_label_thresholds import GRID, tune_thresholds

NAMES = ["a", "b", "c"]
Y = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0], [1, 1, 0]])
PROBS = np.array([[0.9, 0.2, 0.4], [0.1, 0.8, 0.6], [0.3, 0.1, 0.2], [0.7, 0.3, 0.1]])


def test_bce_is_torchs_bce_with_logits_with_and_without_pos_weight():
    logits = torch.tensor([[0.5, -1.0, 2.0], [-0.3, 0.0, 1.5]])
    labels = torch.tensor([[1, 0, 1], [0, 1, 0]])  # integers: cast to float, never passed to BCE as they are
    weight = torch.tensor([2.0, 1.0, 0.5])
    expected = torch.nn.BCEWithLogitsLoss()(logits, labels.float())
    assert multi_label_loss("bce", logits, labels).item() == pytest.approx(expected.item(), abs=1e-7)
    expected = torch.nn.BCEWithLogitsLoss(pos_weight=weight)(logits, labels.float())
    assert multi_label_loss("bce", logits, labels, pos_weight=weight).item() == pytest.approx(expected.item(), abs=1e-7)


def test_focal_bce_by_hand():
    logits, labels = torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0, 0.0]])
    p = 1 / (1 + math.exp(-2.0))  # the second element: label 0, so p_true = 1 - p
    by_hand = (0.5 ** 2 * math.log(2) + p ** 2 * -math.log(1 - p)) / 2
    assert multi_label_loss("focal", logits, labels, gamma=2.0).item() == pytest.approx(by_hand, rel=1e-6)
    assert multi_label_loss("focal", logits, labels, gamma=0.0).item() == pytest.approx(
        multi_label_loss("bce", logits, labels).item(), rel=1e-7)


def test_count_pos_weight_is_negatives_over_positives_capped():
    y = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0]])
    np.testing.assert_allclose(count_pos_weight(y, 10.0), [1 / 3, 3.0, 10.0], rtol=1e-6)
    np.testing.assert_allclose(count_pos_weight(y, 2.0), [0.5, 2.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(resolve_pos_weight({"c": 4.0}, y, NAMES, 10.0), [1.0, 1.0, 4.0])
    assert resolve_pos_weight("none", y, NAMES, 10.0) is None


def test_an_unknown_label_in_pos_weight_is_a_recipe_error():
    with pytest.raises(RecipeError) as caught:
        resolve_pos_weight({"sports": 2.0}, Y, NAMES, 10.0)
    assert str(caught.value) == "multi_label.pos_weight: 'sports' is not a label of the training data; labels are a, b, c"


def test_metrics_by_hand():
    m = multi_label_metrics(Y, PROBS, 0.5, NAMES)
    # at 0.5: predicted [[1,0,0],[0,1,1],[0,0,0],[1,0,0]]; per label tp/fp/fn a 2/0/0, b 1/0/1, c 0/1/1
    assert m["micro_f1"] == pytest.approx(6 / 9)
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert m["samples_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1 + 2 / 3) / 4)  # the empty row predicted empty: 1
    assert m["subset_accuracy"] == pytest.approx(0.25)
    assert m["hamming_loss"] == pytest.approx(3 / 12)
    assert m["mean_average_precision"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert m["per_label"]["b"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2,
                                   "threshold": 0.5}
    assert m["n"] == 4
    for metric in ("micro_f1", "macro_f1", "samples_f1"):
        assert fast_score(Y, PROBS >= 0.5, metric) == pytest.approx(m[metric])
    assert metric_mode("hamming_loss") == "min" and metric_mode("loss") == "min" and metric_mode("micro_f1") == "max"


def test_per_label_thresholds_and_the_mean_ap_skips_labels_without_positives():
    m = multi_label_metrics(Y, PROBS, [0.95, 0.5, 0.05], NAMES)
    assert [r["threshold"] for r in m["per_label"].values()] == [0.95, 0.5, 0.05]
    assert m["per_label"]["a"]["recall"] == 0.0 and m["per_label"]["c"]["recall"] == 1.0
    y = Y.copy()
    y[:, 2] = 0
    assert multi_label_metrics(y, PROBS, 0.5, NAMES)["mean_average_precision"] == pytest.approx(1.0)


# label a: positives at 0.3, negatives at 0.1; label b: positives at 0.9, negatives at 0.7
TUNE_P = np.array([[0.3, 0.9], [0.3, 0.7], [0.1, 0.9], [0.1, 0.7]])
TUNE_Y = np.array([[1, 1], [1, 0], [0, 1], [0, 0]])


def test_a_global_threshold_is_the_best_grid_value_closest_to_the_default():
    # t in (0.1, 0.3]: a perfect, b all predicted (tp 4, fp 2): micro-F1 0.8, better than any other cut
    np.testing.assert_allclose(tune_thresholds(TUNE_P, TUNE_Y, "micro_f1", per_label=False), [0.30, 0.30])


@pytest.mark.parametrize("metric", ["micro_f1", "macro_f1", "samples_f1"])
def test_per_label_thresholds_separate_each_label(metric):
    cuts = tune_thresholds(TUNE_P, TUNE_Y, metric, per_label=True)
    np.testing.assert_allclose(cuts, [0.30, 0.71])  # the perfect cuts closest to 0.5
    assert fast_score(TUNE_Y, TUNE_P >= cuts, metric) == 1.0


def test_a_label_without_validation_positives_keeps_the_default():
    y = TUNE_Y.copy()
    y[:, 1] = 0
    cuts = tune_thresholds(TUNE_P, y, "macro_f1", per_label=True, default=0.4)
    assert cuts[1] == 0.4 and cuts[0] in GRID


def test_a_single_label_is_scored_as_its_positive_class():
    y, probs = np.array([[1], [0], [1], [0]]), np.array([[0.9], [0.6], [0.2], [0.1]])
    m = multi_label_metrics(y, probs, 0.5, ["x"])  # predicted 1, 1, 0, 0: tp 1, fp 1, fn 1
    assert m["micro_f1"] == m["macro_f1"] == pytest.approx(0.5) and m["per_label"]["x"]["support"] == 2
    assert m["samples_f1"] == pytest.approx((1 + 0 + 0 + 1) / 4) and m["subset_accuracy"] == 0.5
