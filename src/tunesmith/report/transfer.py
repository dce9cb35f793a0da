"""report.html section of a run started from an earlier run (eval.json "lineage") or watching one
(eval.json "transfer", metrics.jsonl records with split "watch"): the chain of runs this one comes from, and
the watched task's metric by step (step 0: before any training), with before / best model / change."""

from __future__ import annotations

import tunesmith.report.plots as plots

WATCH_SPLIT = "watch"  # recipes/transfer_watch.py


def lineage_rows(lineage: dict) -> list[list]:
    """One row per ancestor, the parent first: its run, task, best metric, and how this run's head started."""
    rows = []
    for depth, run in enumerate([lineage, *(lineage.get("ancestors") or [])]):
        best = run.get("best") or {}
        value = best.get("value")
        rows.append(["parent" if depth == 0 else "grand-" * depth + "parent", run.get("parent"), run.get("task"),
                     f"{best.get('metric')} {value:.4f}" if isinstance(value, (int, float)) else "—",
                     str(run.get("recipe_sha256") or "")[:12], run.get("head") or "—"])
    return rows


def section_transfer(data, chart, charts, table, esc) -> str:
    """'' for a run that neither started from a run nor watched one."""
    parts = []
    lineage = data.eval.get("lineage")
    if isinstance(lineage, dict):
        parts.append("<h3>started from</h3>" + table(
            ["", "run", "task", "best", "recipe sha256", "head of the child"], lineage_rows(lineage))
            + f'<p class="note">body and tokenizer from {esc(lineage.get("parent"))}; the task head '
              f'{"was kept" if lineage.get("head") == "kept" else "started new"}.</p>')
    watch = (data.eval.get("transfer") or {}).get("watch")
    if isinstance(watch, dict):
        metric = watch.get("metric")
        records = [r for r in data.metrics if r.get("type") == "eval" and r.get("split") == WATCH_SPLIT
                   and not r.get("final") and isinstance(r.get(metric), (int, float))]
        series = [plots.Series(f"watched {metric}", [r["step"] for r in records],
                               [float(r[metric]) for r in records], "markers")]
        if isinstance(watch.get("reported"), (int, float)) and records:
            steps = [records[0]["step"], records[-1]["step"]]
            series.append(plots.Series("the watched run's own", steps, [float(watch["reported"])] * 2, "dashed"))
        best = (data.eval.get("best") or {}).get("step")
        title = f"{watch.get('task')} {metric} on {watch.get('run')}'s validation set"
        figure = chart(plots.line_chart(title, series, vline=best), f"{title}, by step (step 0: before training)")
        before, after = watch.get("before") or {}, watch.get("after") or {}
        change = watch.get("change")
        rows = [[metric, before.get(metric), after.get(metric), change]]
        parts.append(f"<h3>watched: {esc(watch.get('run'))}</h3>" + charts(figure)
                     + table(["metric", "before training", "best model", "change"], rows)
                     + f'<p class="note">{esc(watch.get("examples"))} validation examples of the watched '
                       f'{esc(watch.get("task"))} run ({esc(watch_note(watch))}); higher is '
                       f'{"better" if watch.get("mode") == "max" else "worse"}.</p>')
    return "".join(parts)


def watch_note(watch: dict) -> str:
    return ("this run's model answers it" if watch.get("how") == "direct"
            else "the watched run's head on this run's body")
