"""Charts for the report, rendered with matplotlib's Agg canvas to inline PNG data URIs.

No pyplot and no global backend switch: each chart is a bare `matplotlib.figure.Figure`, so writing a
report never changes the plotting state of the program that calls it (a notebook, say).
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass, field

DPI = 110


@dataclass
class Series:
    label: str
    x: list[float]
    y: list[float]
    style: str = "line"        # line | markers | dashed | dashed-markers
    color: str | None = None
    extra: dict = field(default_factory=dict)


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width: float = 6.2, height: float = 3.1):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def to_data_uri(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _finite_points(series: Series) -> tuple[list[float], list[float]]:
    points = [(x, y) for x, y in zip(series.x, series.y)
              if isinstance(y, (int, float)) and y is not None and math.isfinite(y)]
    return [p[0] for p in points], [p[1] for p in points]


def line_chart(title: str, series: list[Series], *, xlabel: str = "step", ylabel: str = "",
               vline: float | None = None, vline_label: str = "best step", logy: bool = False) -> str | None:
    """A line chart of several series; None when no series has a finite point (or without matplotlib)."""
    if not available():
        return None
    drawn = [(s, *_finite_points(s)) for s in series]
    drawn = [(s, x, y) for s, x, y in drawn if y]
    if not drawn:
        return None
    fig = _figure()
    axes = fig.add_subplot()
    for s, x, y in drawn:
        kwargs = {"label": s.label, **({"color": s.color} if s.color else {}), **s.extra}
        if s.style == "markers" or len(x) == 1:
            axes.plot(x, y, marker="o", linestyle="-" if len(x) > 1 else "none", markersize=4, **kwargs)
        elif s.style == "dashed":
            axes.plot(x, y, linestyle="--", linewidth=1.4, **kwargs)
        elif s.style == "dashed-markers":
            axes.plot(x, y, linestyle="--", marker="s", markersize=3.5, linewidth=1.2, **kwargs)
        else:
            axes.plot(x, y, linewidth=1.4, **kwargs)
    if vline is not None:
        axes.axvline(vline, color="#888888", linestyle=":", linewidth=1.2, label=vline_label)
    if logy and all(v > 0 for _, _, y in drawn for v in y):
        axes.set_yscale("log")
    axes.set_title(title, fontsize=10, loc="left")
    axes.set_xlabel(xlabel, fontsize=9)
    if ylabel:
        axes.set_ylabel(ylabel, fontsize=9)
    axes.tick_params(labelsize=8)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, frameon=False)
    return to_data_uri(fig)


def bar_chart(title: str, labels: list[str], values: list[float | None], *, xlabel: str = "",
              highlight: int | None = 0) -> str | None:
    """Horizontal bars, one per label (None values are left out); the `highlight` bar is coloured."""
    if not available():
        return None
    rows = [(label, value) for label, value in zip(labels, values)
            if isinstance(value, (int, float)) and math.isfinite(value)]
    if not rows:
        return None
    fig = _figure(height=0.45 * len(rows) + 1.0)
    axes = fig.add_subplot()
    names = [label for label, _ in rows][::-1]
    heights = [value for _, value in rows][::-1]
    colors = ["#1f77b4" if (len(rows) - 1 - i) == highlight else "#9fb7cc" for i in range(len(rows))]
    bars = axes.barh(names, heights, color=colors)
    for bar, value in zip(bars, heights):
        axes.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {value:.4f}", va="center", fontsize=8)
    top = max(heights)
    axes.set_xlim(0, top * 1.18 if top > 0 else 1)
    axes.set_title(title, fontsize=10, loc="left")
    axes.set_xlabel(xlabel, fontsize=9)
    axes.tick_params(labelsize=8)
    axes.grid(True, axis="x", alpha=0.3)
    return to_data_uri(fig)


# --- regression -------------------------------------------------------------------------------------

MAX_SCATTER_POINTS = 20_000  # more are thinned evenly: the picture is the same, the rendering faster


def _finite_pairs(y_true, y_pred):
    """One target's (true, predicted) float arrays where both are finite (from 1-D or N x 1 arrays)."""
    import numpy as np

    truth = np.asarray(y_true, dtype=np.float64).reshape(-1)
    pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if truth.shape != pred.shape:
        raise ValueError(f"one target at a time: {truth.shape} true values, {pred.shape} predictions")
    keep = np.isfinite(truth) & np.isfinite(pred)
    return truth[keep], pred[keep]


def scatter_predicted_true(y_true, y_pred, name: str) -> str | None:
    """Predicted against true values of one target, with the y = x line; None when there is no finite point."""
    if not available():
        return None
    truth, pred = _finite_pairs(y_true, y_pred)
    if not len(truth):
        return None
    step = max(1, math.ceil(len(truth) / MAX_SCATTER_POINTS))
    shown = f"{len(truth[::step])} rows" + (f" (every {step}th)" if step > 1 else "")
    fig = _figure(width=4.6, height=4.2)
    axes = fig.add_subplot()
    axes.scatter(truth[::step], pred[::step], s=6, alpha=0.35, color="#1f77b4", linewidths=0, rasterized=True,
                 label=shown)
    low, high = float(min(truth.min(), pred.min())), float(max(truth.max(), pred.max()))
    axes.plot([low, high], [low, high], color="#888888", linestyle=":", linewidth=1.2, label="y = x")
    axes.set_title(f"predicted vs true: {name}", fontsize=10, loc="left")
    axes.set_xlabel(f"true {name}", fontsize=9)
    axes.set_ylabel(f"predicted {name}", fontsize=9)
    axes.tick_params(labelsize=8)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, frameon=False, loc="upper left")
    return to_data_uri(fig)


def residual_histogram(y_true, y_pred, name: str, *, bins: int = 40) -> str | None:
    """A histogram of one target's residuals (predicted - true), with 0 marked; None without a finite point."""
    if not available():
        return None
    truth, pred = _finite_pairs(y_true, y_pred)
    if not len(truth):
        return None
    residuals = pred - truth
    fig = _figure()
    axes = fig.add_subplot()
    axes.hist(residuals, bins=bins, color="#9fb7cc", edgecolor="#1f77b4", linewidth=0.6,
              label=f"mean {residuals.mean():.3g}, std {residuals.std():.3g}")
    axes.axvline(0.0, color="#888888", linestyle=":", linewidth=1.2, label="no error")
    axes.set_title(f"residuals (predicted - true): {name}", fontsize=10, loc="left")
    axes.set_xlabel(f"residual ({name} units)", fontsize=9)
    axes.set_ylabel("rows", fontsize=9)
    axes.tick_params(labelsize=8)
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend(fontsize=8, frameon=False)
    return to_data_uri(fig)
