"""`tunesmith compare RUN_A RUN_B ...`: what differs between runs' recipes, and their results side by side.

    recipe differences   every flattened recipe key (train.lr, data.validation.split, ...) whose value is
                         not the same in all runs; `output` is left out (the columns are the run directories)
    metrics              validation/test metrics of each best model, its baselines, best step, why it
                         stopped, timings, peak memory; the best value of each metric row is marked

Printed as terminal tables; `--html FILE` also writes a self-contained page with the same tables and
the runs' training curves overlaid.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tunesmith.errors import RunError
from tunesmith.trackers import flatten

IGNORED_KEYS = ("output",)
MISSING = "—"
SPLITS = ("validation", "test")
METRICS = ("loss", "accuracy", "macro_f1", "weighted_f1", "balanced_accuracy", "pr_auc", "perplexity")
BASELINE_METRICS = ("accuracy", "macro_f1")
LOWER_IS_BETTER = ("loss", "perplexity", "time", "memory")


@dataclass
class Row:
    label: str
    values: list
    better: str | None = None  # "max" | "min" | None (not ranked)

    def best_index(self) -> set[int]:
        numbers = [v for v in self.values if _is_number(v)]
        if self.better is None or len(numbers) < 2 or len(set(numbers)) < 2:
            return set()
        target = max(numbers) if self.better == "max" else min(numbers)
        return {i for i, v in enumerate(self.values) if _is_number(v) and v == target}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_runs(paths: list[str | Path]):
    """Each run directory as the report reads it (recipe, eval.json, metrics.jsonl)."""
    from tunesmith.report.html import load_run

    if len(paths) < 2:
        raise RunError("compare needs at least two run directories")
    return [load_run(path) for path in paths]


def run_labels(runs) -> list[str]:
    names = [run.path.name or str(run.path) for run in runs]
    if len(set(names)) < len(names):
        names = [str(run.path) for run in runs]
    return names


def recipe_differences(recipes: list[dict], ignore=IGNORED_KEYS) -> list[Row]:
    """Flattened keys whose values differ between the recipes (a key absent from one run counts)."""
    flats = [flatten(recipe or {}) for recipe in recipes]
    keys = list(dict.fromkeys(key for flat in flats for key in flat))
    rows = []
    for key in keys:
        if key in ignore or any(key.startswith(f"{prefix}.") for prefix in ignore):
            continue
        values = [flat.get(key, MISSING) for flat in flats]
        shown = [json.dumps(v, sort_keys=True) if v is not MISSING else MISSING for v in values]
        if len(set(shown)) > 1:
            rows.append(Row(key, [v if not isinstance(v, (list, dict)) else json.dumps(v) for v in values]))
    return rows


def metric_rows(runs) -> list[Row]:
    results = [run.eval for run in runs]
    rows = []
    for split in SPLITS:
        for metric in METRICS:
            values = [_get(r, split, metric) for r in results]
            if any(v is not None for v in values):
                rows.append(Row(f"{split} {metric}", values, "min" if metric in LOWER_IS_BETTER else "max"))
        names = list(dict.fromkeys(n for r in results for n in ((r.get("baselines") or {}).get(split) or {})))
        for name in names:
            for metric in BASELINE_METRICS:
                values = [_get((r.get("baselines") or {}).get(split) or {}, name, metric) for r in results]
                if any(v is not None for v in values):
                    rows.append(Row(f"{split} baseline {name} {metric}", values, "max"))
    best = [r.get("best") or {} for r in results]
    rows += [
        Row("best metric", [b.get("metric") for b in best]),
        Row("best value", [b.get("value") for b in best]),
        Row("best step", [b.get("step") for b in best]),
        Row("steps", [r.get("steps") for r in results]),
        Row("epochs", [r.get("epochs") for r in results]),
        Row("stopped", [r.get("stop_reason") for r in results]),
        Row("train time (s)", [_get(r, "timing", "train_s") for r in results], "min"),
        Row("total time (s)", [_get(r, "timing", "total_s") for r in results], "min"),
        Row("train samples/s", [_get(r, "timing", "train_samples_per_s") for r in results], "max"),
        Row("peak memory (MB RSS)", [_get(r, "memory", "peak_rss_mb") for r in results], "min"),
    ]
    return [row for row in rows if any(v is not None for v in row.values)]


def _get(mapping: dict, *keys):
    for key in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def show_value(value) -> str:
    from tunesmith.report.html import fmt

    return MISSING if value is None else fmt(value)


# ---- terminal ---------------------------------------------------------------------------------------------


# ---- HTML -------------------------------------------------------------------------------------------------


def compare_html(runs) -> str:
    from tunesmith.report import plots
    from tunesmith.report.html import CSS, chart, charts, esc, eval_records, train_records

    labels = run_labels(runs)

    def html_table(rows: list[Row], first: str) -> str:
        head = "".join(f"<th>{esc(h)}</th>" for h in [first, *labels])
        body = []
        for row in rows:
            best = row.best_index()
            cells = "".join(f'<td{" class=best" if i in best else ""}>{esc(show_value(v))}</td>'
                            for i, v in enumerate(row.values))
            body.append(f"<tr><td>{esc(row.label)}</td>{cells}</tr>")
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"

    differences = recipe_differences([run.recipe for run in runs])
    metric = next((m for m in ("macro_f1", "accuracy", "perplexity") if any(
        m in r for run in runs for r in eval_records(run.metrics))), "loss")
    loss = [plots.Series(label, [r["step"] for r in train_records(run.metrics) if "loss" in r],
                         [r["loss"] for r in train_records(run.metrics) if "loss" in r])
            for label, run in zip(labels, runs)]
    validation = [plots.Series(label, [r["step"] for r in eval_records(run.metrics) if metric in r],
                               [r[metric] for r in eval_records(run.metrics) if metric in r], "markers")
                  for label, run in zip(labels, runs)]
    figures = charts(chart(plots.line_chart("train loss", loss), "train loss by step, per run"),
                     chart(plots.line_chart(f"validation {metric}", validation),
                           f"validation {metric} by step, per run"))
    runs_list = "".join(f"<li>{esc(label)}: {esc(run.path)}</li>" for label, run in zip(labels, runs))
    recipe_part = html_table(differences, "key") if differences else "<p>none (apart from output)</p>"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
            f"<title>tunesmith compare</title><style>{CSS} td.best {{ font-weight: 700; background: #eaf5ea; }}"
            f"</style></head><body><h1>tunesmith compare</h1><ul>{runs_list}</ul>"
            f'<section id="recipe-differences"><h2>Recipe differences</h2>{recipe_part}</section>'
            f'<section id="metrics"><h2>Metrics (best model of each run)</h2>{html_table(metric_rows(runs), "")}'
            f'</section><section id="curves"><h2>Curves</h2>{figures}</section></body></html>\n')


def write_compare_html(runs, path: str | Path) -> Path:
    from tunesmith.artifacts import write_text_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, compare_html(runs))
    return path
