"""regression_metrics against hand computations, metric directions, several targets and constant predictions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tunesmith.evaluation.regression import METRIC_NAMES, metric_mode, regression_metrics

TRUE = np.array([1.0, 2.0, 3.0, 4.0])
PRED = np.array([1.5, 2.0, 2.0, 5.0])  # errors 0.5, 0, -1, 1


def test_values_match_hand_computation():
    scores = regression_metrics(TRUE, PRED, ["score"])
    assert scores["mse"] == pytest.approx((0.25 + 0 + 1 + 1) / 4)
    assert scores["rmse"] == pytest.approx(math.sqrt(2.25 / 4))
    assert scores["mae"] == pytest.approx((0.5 + 0 + 1 + 1) / 4)
    assert scores["r2"] == pytest.approx(1 - 2.25 / 5.0)  # total sum of squares of 1..4 around 2.5 is 5
    dt, dp = TRUE - TRUE.mean(), PRED - PRED.mean()
    assert scores["pearson"] == pytest.approx(float(dt @ dp / math.sqrt((dt @ dt) * (dp @ dp))))
    # ranks of PRED with the tie averaged: 1, 2.5, 2.5, 4 -> Pearson of the ranks
    rt, rp = np.array([1, 2, 3, 4.0]), np.array([1, 2.5, 2.5, 4])
    assert scores["spearman"] == pytest.approx(float(np.corrcoef(rt, rp)[0, 1]))
    assert scores["n"] == 4 and scores["warnings"] == [] and "per_target" not in scores


def test_a_column_vector_is_one_target():
    assert regression_metrics(TRUE.reshape(-1, 1), PRED.reshape(-1, 1), ["score"]) == regression_metrics(
        TRUE, PRED, ["score"])


def test_directions():
    assert {name: metric_mode(name) for name in METRIC_NAMES} == {
        "pearson": "max", "spearman": "max", "mse": "min", "rmse": "min", "mae": "min", "r2": "max", "loss": "min"}
    assert metric_mode("validation_loss") == "min"


def test_several_targets_average_the_per_target_scores():
    truth = np.column_stack([TRUE, 10 * TRUE])
    pred = np.column_stack([PRED, 10 * TRUE[::-1]])
    scores = regression_metrics(truth, pred, ["a", "b"])
    a, b = scores["per_target"]["a"], scores["per_target"]["b"]
    assert a == {k: v for k, v in regression_metrics(TRUE, PRED, ["a"]).items() if k not in ("n", "warnings")}
    assert b["pearson"] == pytest.approx(-1.0) and b["spearman"] == pytest.approx(-1.0)
    assert b["mse"] == pytest.approx(100 * (9 + 1 + 1 + 9) / 4)
    for key in ("pearson", "spearman", "mse", "rmse", "mae", "r2"):
        assert scores[key] == pytest.approx((a[key] + b[key]) / 2)


def test_constant_prediction_gives_zero_correlation_with_a_warning_and_valid_json():
    scores = regression_metrics(TRUE, np.full(4, 2.5), ["score"])
    assert scores["pearson"] == 0.0 and scores["spearman"] == 0.0
    assert scores["r2"] == pytest.approx(0.0) and scores["mse"] == pytest.approx(1.25)
    assert scores["warnings"] == ["pearson and spearman of 'score' are undefined (every prediction is 2.5); "
                                  "reported as 0.0"]
    json.loads(json.dumps(scores, allow_nan=False))  # no NaN anywhere


def test_constant_truth_and_a_single_row_are_warned_not_nan():
    scores = regression_metrics(np.full(3, 2.0), np.array([1.0, 2.0, 3.0]), ["score"])
    assert scores["pearson"] == 0.0 and "every true value is 2" in scores["warnings"][0]
    one = regression_metrics(np.array([1.0]), np.array([2.0]), ["score"])
    assert one["pearson"] == 0.0 and one["r2"] == 0.0 and one["mae"] == 1.0
    assert one["warnings"] == ["pearson, spearman and r2 of 'score' are undefined (fewer than 2 rows); reported as 0.0"]
    json.loads(json.dumps(one, allow_nan=False))


def test_shape_mismatch_and_non_finite_predictions_are_refused():
    with pytest.raises(ValueError, match="do not match"):
        regression_metrics(TRUE, PRED[:3], ["score"])
    with pytest.raises(ValueError, match="do not match"):
        regression_metrics(TRUE, PRED, ["a", "b"])
    with pytest.raises(ValueError, match="finite"):
        regression_metrics(TRUE, np.array([1.0, np.nan, 2.0, 3.0]), ["score"])


def test_no_rows():
    scores = regression_metrics(np.zeros(0), np.zeros(0), ["score"])
    assert scores["n"] == 0 and scores["pearson"] is None and scores["warnings"] == ["no rows to score"]
