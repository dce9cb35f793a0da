"""TUNE/report.html for `tunesmith tune`: the best trial, every trial's values and score, the optimisation history
and the parameters' importances (one self-contained page, the run report's style)."""

from __future__ import annotations

from pathlib import Path

from tunesmith.artifacts import write_text_atomic
from tunesmith.report import plots
from tunesmith.report.html import CSS, chart, charts, esc, fmt, table

REPORT_NAME = "report.html"


def history_chart(summary: dict) -> str | None:
    """Each trial's objective (complete: dots; pruned: its last reported value, crosses) and the best so far."""
    maximize = summary["direction"] == "maximize"
    done, pruned, best_x, best_y = plots.Series("complete", [], [], style="markers"), \
        plots.Series("pruned (last value)", [], [], style="markers", color="#bbbbbb"), [], []
    best = None
    for row in summary["trials"]:
        if row["state"] == "complete" and row["value"] is not None:
            done.x.append(row["number"])
            done.y.append(row["value"])
            best = row["value"] if best is None else (max if maximize else min)(best, row["value"])
            best_x.append(row["number"])
            best_y.append(best)
        elif row["state"] == "pruned" and row["intermediate"]:
            pruned.x.append(row["number"])
            pruned.y.append(list(row["intermediate"].values())[-1])
    series = [done, pruned, plots.Series("best so far", best_x, best_y, style="dashed")]
    return plots.line_chart(f"validation {summary['metric']} by trial", [s for s in series if s.y],
                            xlabel="trial", ylabel=summary["metric"])


def curves_chart(summary: dict) -> str | None:
    """Every trial's validation metric at each evaluation: where the pruner stopped the weak ones."""
    series = [plots.Series(f"trial {row['number']}", [int(step) for step in row["intermediate"]],
                           list(row["intermediate"].values()), style="markers")
              for row in summary["trials"] if row["intermediate"]]
    return plots.line_chart(f"validation {summary['metric']} during each trial", series[:12], ylabel=summary["metric"])


def importance_chart(summary: dict) -> str | None:
    found = summary.get("importances") or {}
    return plots.bar_chart("parameter importance (fANOVA, complete trials)", list(found), list(found.values()))


def trials_table(summary: dict) -> str:
    keys = list(summary["space"])
    best = (summary.get("best") or {}).get("number")
    rows, classes = [], []
    for row in summary["trials"]:
        values = row.get("values") or {}
        note = row.get("error") or row.get("stop_reason") or ""
        if row.get("retry_of") is not None:
            note = f"retry of trial {row['retry_of']}; {note}"
        rows.append([row["number"], row["state"], row["value"], *[values.get(key) for key in keys],
                     row.get("best_step"), row.get("steps"), row.get("seconds"), note])
        classes.append("best" if row["number"] == best else "")
    headers = ["trial", "state", summary["metric"], *keys, "best step", "steps", "seconds", "why it stopped"]
    return table(headers, rows, row_classes=classes)


def render_tune_report(tune_dir: Path, summary: dict) -> str:
    best = summary.get("best")
    if best:
        values = ", ".join(f"{key} = {fmt(value)}" for key, value in best["values"].items())
        head = (f"<p>Best: trial {best['number']}, validation {esc(summary['metric'])} "
                f"<b>{esc(fmt(best['value']))}</b> with {esc(values)}. Its run: <code>{esc(best['run_dir'])}</code>; "
                f"train it again with baselines and the full report: <code>tunesmith train {esc(tune_dir)}/best.yaml"
                f"</code>.</p>")
    else:
        head = '<p class="note">No trial has completed yet.</p>'
    counts = {}
    for row in summary["trials"]:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    states = ", ".join(f"{n} {state}" for state, n in counts.items())
    head += (f'<p class="note">{len(summary["trials"])} trials ({esc(states)}) of {summary["trials_wanted"]} wanted; '
             f'sampler {esc(summary["sampler"])}, pruner {esc(summary["pruner"])}; objective: validation '
             f'{esc(summary["metric"])} ({esc(summary["direction"])}), at each trial\'s best evaluation.</p>')
    if summary.get("importances") is None:
        head += '<p class="note">Parameter importances need at least two complete trials that differ.</p>'
    figures = charts(chart(history_chart(summary), "optimisation history"),
                     chart(curves_chart(summary), "validation curves (pruned trials stop early)"),
                     chart(importance_chart(summary), "parameter importances"))
    name = esc(tune_dir.name or tune_dir)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
            f'<title>tunesmith tune: {name}</title><style>{CSS}</style></head><body><h1>tunesmith tune: {name}</h1>'
            f'<section id="summary"><h2>Summary</h2>{head}</section>'
            f'<section id="trials"><h2>Trials</h2>{trials_table(summary)}</section>'
            f'<section id="charts"><h2>Charts</h2>{figures}</section></body></html>\n')


def write_tune_report(tune_dir: str | Path, summary: dict) -> Path:
    tune_dir = Path(tune_dir)
    path = tune_dir / REPORT_NAME
    write_text_atomic(path, render_tune_report(tune_dir, summary))
    return path
