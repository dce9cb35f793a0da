"""report.html sections of a regression run: predicted vs true and the residuals, per held-out split and
target, drawn from RUN/predictions_<split>.csv (written by the regression task at the end of training)."""

from __future__ import annotations

import csv

import tunesmith.report.plots as plots


def prediction_columns(path) -> dict[str, tuple[list[float], list[float]]]:
    """{target: (true values, predicted values)} from a predictions_<split>.csv (true_<t>, pred_<t> columns)."""
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    targets = [c.removeprefix("true_") for c in (rows[0] if rows else {}) if c.startswith("true_")]
    return {t: ([float(r[f"true_{t}"]) for r in rows], [float(r[f"pred_{t}"]) for r in rows]) for t in targets}


def section_predictions(data, chart, charts, esc) -> str:
    """Scatter and residual histogram for every split with a predictions file; '' for other tasks."""
    parts = []
    for split in data.splits:
        path = data.path / f"predictions_{split}.csv"
        if not path.is_file():
            continue
        for target, (true, pred) in prediction_columns(path).items():
            parts.append(f"<h3>{esc(split)}: {esc(target)} ({len(true)} examples)</h3>" + charts(
                chart(plots.scatter_predicted_true(true, pred, target), f"{split}: predicted vs true {target}"),
                chart(plots.residual_histogram(true, pred, target), f"{split}: residuals (predicted - true)")))
    return "".join(parts)


STATS = ("count", "mean", "std", "min", "p5", "p50", "p95", "max", "distinct")


def target_tables(inspect: dict, table, esc) -> str:
    """A regression run's inspect.json: each split's target statistics in one table, the outliers as lines."""
    rows = [[split, name, *(stats.get(k) for k in STATS)] for split, targets in inspect["targets"].items()
            for name, stats in targets.items()]
    outliers = "".join(f"<li>{esc(o.get('text', ''))}</li>" for o in inspect.get("outliers") or [])
    return (table(["split", "target", *STATS], rows)
            + (f"<ul>{outliers}</ul>" if outliers else '<p class="note">no outliers (1.5 IQR fences, |z| > 4)</p>'))
