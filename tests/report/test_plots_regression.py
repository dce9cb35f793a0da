"""The regression charts: predicted-vs-true scatter and residual histogram as inline PNG data URIs."""

from __future__ import annotations

import base64
import struct

import numpy as np
import pytest

from tunesmith.report.plots import DPI, residual_histogram, scatter_predicted_true

PREFIX = "data:image/png;base64,"
RNG = np.random.default_rng(0)
TRUE = RNG.uniform(0, 5, 300)
PRED = TRUE + RNG.normal(0, 0.5, 300)


def png_size(uri: str) -> tuple[int, int]:
    """(width, height) from the PNG's IHDR chunk, after checking the signature."""
    assert uri.startswith(PREFIX)
    data = base64.b64decode(uri[len(PREFIX):], validate=True)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and data[-8:-4] == b"IEND"
    return struct.unpack(">II", data[16:24])


def test_scatter_is_a_png_of_the_figure_size():
    uri = scatter_predicted_true(TRUE, PRED, "score")
    assert png_size(uri) == (round(4.6 * DPI), round(4.2 * DPI))
    assert scatter_predicted_true(TRUE, TRUE, "score") != uri  # the picture depends on the data


def test_residual_histogram_is_a_png_of_the_report_width():
    uri = residual_histogram(TRUE.reshape(-1, 1), PRED.reshape(-1, 1), "score")  # N x 1 columns are one target
    assert png_size(uri) == (round(6.2 * DPI), round(3.1 * DPI))
    assert residual_histogram(TRUE, PRED + 1.0, "score") != uri


def test_non_finite_points_are_dropped_and_none_left_is_no_chart():
    assert png_size(scatter_predicted_true([1.0, np.nan, 3.0], [1.0, 2.0, np.inf], "y"))
    assert scatter_predicted_true([np.nan], [1.0], "y") is None
    assert residual_histogram([], [], "y") is None


def test_one_target_at_a_time():
    with pytest.raises(ValueError, match=r"one target at a time: \(600,\) true values, \(300,\) predictions"):
        scatter_predicted_true(np.column_stack([TRUE, TRUE]), PRED, "score")
