"""Decision thresholds of a multi-label model, chosen on validation (multi_label.threshold):

    global     one threshold for every label: the grid value with the best metric
    per_label  macro_f1: each label's own best F1 (the labels are independent under a macro average);
               micro_f1 / samples_f1: coordinate ascent from the best global threshold, each label's threshold
               in turn set to the grid value that maximises the metric with the others fixed (3 passes, or
               until nothing changes)

The grid is 0.01, 0.02, ..., 0.99; ties go to the value closest to `default` (multi_label.threshold.value). A
label without a validation positive keeps `default` (no threshold changes its F1). The thresholds are stored
in the model config as `tunesmith_thresholds: {label: t}`, so predict / evaluate / export apply them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tunesmith.artifacts import write_text_atomic

from tunesmith.evaluation.multi_label import decide, fast_score

CONFIG_KEY = "tunesmith_thresholds"
RECORD_KEY = "tunesmith_threshold_tuning"  # how they were chosen (metric, scores)
GRID = np.round(np.arange(1, 100) / 100, 2)
PASSES = 3


def _best(scores: np.ndarray, default: float) -> float:
    """The grid value with the highest score, the one closest to `default` among ties."""
    top = np.flatnonzero(np.isclose(scores, scores.max()))
    return float(GRID[top[np.argmin(np.abs(GRID[top] - default))]])


def global_threshold(probs: np.ndarray, y: np.ndarray, metric: str, default: float) -> float:
    scores = np.array([fast_score(y, probs >= t, metric) for t in GRID])
    return _best(scores, default)


def tune_thresholds(probs: np.ndarray, y: np.ndarray, metric: str, *, per_label: bool,
                    default: float = 0.5) -> np.ndarray:
    """L thresholds maximising `metric` (micro_f1, macro_f1, samples_f1) of `probs` against 0/1 `y`."""
    probs, y = np.asarray(probs, dtype=np.float64), np.asarray(y).astype(bool)
    width = probs.shape[1]
    if not per_label:
        return np.full(width, global_threshold(probs, y, metric, default))
    has_positive = y.any(axis=0)
    if metric == "macro_f1":
        cuts = np.full(width, default)
        for k in np.flatnonzero(has_positive):
            column = probs[:, k:k + 1]
            cuts[k] = _best(np.array([fast_score(y[:, k:k + 1], column >= t, "micro_f1") for t in GRID]), default)
        return cuts
    cuts = np.full(width, global_threshold(probs, y, metric, default))
    cuts[~has_positive] = default
    for _ in range(PASSES):
        changed = False
        for k in np.flatnonzero(has_positive):
            pred = decide(probs, cuts).astype(bool)
            scores = np.empty(len(GRID))
            for g, t in enumerate(GRID):
                pred[:, k] = probs[:, k] >= t
                scores[g] = fast_score(y, pred, metric)
            best = _best(scores, cuts[k])
            changed |= best != cuts[k]
            cuts[k] = best
        if not changed:
            break
    return cuts


def threshold_record(names: list[str], cuts: np.ndarray, *, metric: str, per_label: bool, before: float,
                     after: float, default: float) -> dict:
    """What eval.json and the model config keep about the tuned thresholds."""
    return {"metric": metric, "per_label": per_label, "default": default, "score_at_default": before,
            "score": after, "thresholds": {name: float(t) for name, t in zip(names, cuts)}}


def read_thresholds(config, names: list[str], default: float) -> np.ndarray:
    """The L thresholds stored in a trained model's config (labels it does not name: `default`)."""
    stored = getattr(config, CONFIG_KEY, None) or {}
    return np.asarray([float(stored.get(name, default)) for name in names], dtype=np.float64)


def write_thresholds(model_dir, record: dict) -> None:
    """Add `tunesmith_thresholds: {label: t}` (and the tuning record) to the model's config.json, atomically."""
    path = Path(model_dir) / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config[CONFIG_KEY] = record["thresholds"]
    config[RECORD_KEY] = {k: v for k, v in record.items() if k != "thresholds"}
    write_text_atomic(path, json.dumps(config, indent=2, sort_keys=True) + "\n")
