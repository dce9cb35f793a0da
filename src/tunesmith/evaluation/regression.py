"""Regression metrics: Pearson and Spearman correlation (scipy.stats), MSE, RMSE, MAE and R² (scikit-learn).

Scores are computed in the user's units (targets de-standardised). With several targets each metric is
computed per target and the overall value is the plain mean over targets (so the overall RMSE is the mean
of the per-target RMSEs, not the root of the mean MSE); the per-target values are under `per_target`.

A correlation is undefined when the predictions (or the true values) are constant, or with fewer than
2 rows (R² too): scipy and scikit-learn return NaN there. NaN would break early stopping and is not
valid JSON, so such a score is reported as 0.0 (no relation can be shown) and the result's `warnings`
says so. R² of a constant true column follows scikit-learn: 1.0 for a perfect prediction, else 0.0.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from tunesmith.data.targets import as_target_matrix

# Metrics that early stopping may watch; "loss" (the training loss on the split, computed by the task)
# and the error metrics are minimised, the correlations and R² maximised.
METRIC_NAMES = ("pearson", "spearman", "mse", "rmse", "mae", "r2", "loss")
MINIMISED = ("mse", "rmse", "mae", "loss")
SCORES = ("pearson", "spearman", "mse", "rmse", "mae", "r2")  # what regression_metrics computes


def metric_mode(name: str) -> str:
    """'min' for an error or a loss, 'max' for a correlation or R²."""
    return "min" if name in MINIMISED or name.endswith("loss") else "max"


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, target_names: Sequence[str]) -> dict:
    """{pearson, spearman, mse, rmse, mae, r2, n, warnings[, per_target: {name: {...}}]} of N or N x K arrays.

    `per_target` is there when there are several targets. With no rows every score is None.
    Non-finite predictions are a ValueError (a diverged model is caught by the training loop first).
    """
    truth, pred = as_target_matrix(y_true), as_target_matrix(y_pred)
    names = list(target_names)
    if truth.shape != pred.shape or truth.shape[1] != len(names):
        raise ValueError(f"y_true {truth.shape}, y_pred {pred.shape} and {len(names)} target names do not match")
    if not np.isfinite(pred).all() or not np.isfinite(truth).all():
        raise ValueError("regression_metrics needs finite true values and predictions")
    n = int(truth.shape[0])
    if n == 0:
        return {**{key: None for key in SCORES}, "n": 0, "warnings": ["no rows to score"]}
    notes: list[str] = []
    per_target = {name: _scores(truth[:, k], pred[:, k], name, notes) for k, name in enumerate(names)}
    out: dict = {key: float(np.mean([scores[key] for scores in per_target.values()])) for key in SCORES}
    out["n"] = n
    out["warnings"] = notes
    if len(names) > 1:
        out["per_target"] = per_target
    return out


def _scores(truth: np.ndarray, pred: np.ndarray, name: str, notes: list[str]) -> dict:
    # imported here: scikit-learn and scipy.stats cost memory and start-up time in every process
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    mse = float(mean_squared_error(truth, pred))
    scores = {"pearson": 0.0, "spearman": 0.0, "mse": mse, "rmse": float(np.sqrt(mse)),
              "mae": float(mean_absolute_error(truth, pred)), "r2": 0.0}
    if len(truth) < 2:
        notes.append(f"pearson, spearman and r2 of '{name}' are undefined (fewer than 2 rows); reported as 0.0")
        return scores
    scores["r2"] = float(r2_score(truth, pred))
    why = _undefined_correlation(truth, pred)
    if why:
        notes.append(f"pearson and spearman of '{name}' are undefined ({why}); reported as 0.0")
        return scores
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's near-constant-input warnings: the values stand
        scores["pearson"] = _finite(pearsonr(truth, pred).statistic)
        scores["spearman"] = _finite(spearmanr(truth, pred).statistic)
    return scores


def _undefined_correlation(truth: np.ndarray, pred: np.ndarray) -> str:
    """Why no correlation can be computed ('' when it can)."""
    if np.ptp(pred) == 0:
        return f"every prediction is {float(pred[0]):g}"
    if np.ptp(truth) == 0:
        return f"every true value is {float(truth[0]):g}"
    return ""


def _finite(value: float) -> float:
    value = float(value)
    return value if np.isfinite(value) else 0.0
