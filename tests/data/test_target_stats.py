"""target_summary and target_outliers, the numbers `inspect` shows about regression targets."""

from __future__ import annotations

import numpy as np
import pytest

from tunesmith.data.target_stats import target_outliers, target_summary


def test_summary_of_one_target():
    y = np.arange(1.0, 101.0)  # 1 ... 100
    summary = target_summary(y, ["score"])["score"]
    assert summary["count"] == 100 and summary["non_finite"] == 0 and summary["distinct"] == 100
    assert summary["mean"] == 50.5 and summary["std"] == pytest.approx(np.std(y))
    assert summary["min"] == 1.0 and summary["max"] == 100.0
    assert summary["p50"] == 50.5 and summary["p1"] == pytest.approx(1.99) and summary["p99"] == pytest.approx(99.01)
    assert [summary[f"p{p}"] for p in (1, 5, 25, 50, 75, 95, 99)] == pytest.approx(
        np.percentile(y, [1, 5, 25, 50, 75, 95, 99]).tolist())
    histogram = summary["histogram"]
    assert histogram["counts"] == [5] * 20 and len(histogram["edges"]) == 21
    assert histogram["edges"][0] == 1.0 and histogram["edges"][-1] == 100.0


def test_summary_of_several_targets_counts_non_finite_values_apart():
    y = np.array([[1.0, 5.0], [2.0, np.nan], [3.0, 5.0], [4.0, np.inf]])
    summary = target_summary(y, ["a", "b"])
    assert summary["a"]["count"] == 4 and summary["a"]["mean"] == 2.5
    assert summary["b"]["count"] == 2 and summary["b"]["non_finite"] == 2 and summary["b"]["mean"] == 5.0
    assert sum(summary["b"]["histogram"]["counts"]) == 2  # a constant column still has a histogram
    empty = target_summary(np.array([np.nan]), ["c"])["c"]
    assert empty["count"] == 0 and empty["mean"] is None and empty["histogram"] is None


def test_outliers_beyond_the_fences_and_by_z():
    y = np.concatenate([np.linspace(0.0, 5.0, 200), [12.0, -8.0, 40.0]])
    lines = list(range(2, 2 + len(y)))
    [entry] = target_outliers(y, ["score"], lines)
    # quartiles of the 203 values ~1.26 and ~3.79: fences ~-2.5 and ~7.6
    assert entry["target"] == "score" and entry["below"] == 1 and entry["above"] == 2 and entry["count"] == 3
    assert entry["beyond_z"] == 1  # only 40 is more than 4 std from the mean
    assert entry["examples"][0] == {"line": 204, "value": 40.0}  # the most extreme first
    assert [e["line"] for e in entry["examples"]] == [204, 203, 202]  # by distance from the mean (~2.7)
    assert entry["low_fence"] < -2 and 7 < entry["high_fence"] < 8
    assert entry["text"].startswith("target 'score': 3 outliers of 203 values (1 below, 2 above the 1.5 IQR fences")
    assert entry["text"].endswith("most extreme: line 204 (40), line 203 (-8), line 202 (12)")


def test_no_outliers_and_an_iqr_of_zero():
    assert target_outliers(np.linspace(0.0, 1.0, 50), ["y"]) == []
    y = np.array([3.0] * 100 + [3.5])  # IQR 0: the fences would flag 3.5; the z rule alone applies (z ~ 10)
    [entry] = target_outliers(y, ["y"])
    assert entry["count"] == 1 and entry["below"] == entry["above"] == 0 and entry["beyond_z"] == 1
    assert entry["low_fence"] is None and entry["examples"] == [{"line": 101, "value": 3.5}]


def test_outliers_list_only_the_targets_that_have_them_and_check_lines():
    y = np.column_stack([np.linspace(0, 1, 30), np.r_[np.linspace(0, 1, 29), 50.0]])
    assert [e["target"] for e in target_outliers(y, ["calm", "wild"])] == ["wild"]
    with pytest.raises(ValueError, match="3 line numbers for 30 rows"):
        target_outliers(y, ["calm", "wild"], [1, 2, 3])
