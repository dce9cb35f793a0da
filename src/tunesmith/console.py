"""What the terminal shows: summary tables after training, evaluation and prediction."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

console = Console(stderr=False, highlight=False)
errors = Console(stderr=True, highlight=False)


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def metrics_table(title: str, results: dict[str, dict], baselines: dict | None = None) -> Table:
    """Rows: loss, accuracy, macro-F1 for each split, then the per-class table of the last split."""
    table = Table(title=title, title_justify="left")
    table.add_column("split")
    for column in ("loss", "accuracy", "macro_f1", "n"):
        table.add_column(column, justify="right")
    for split, metrics in results.items():
        table.add_row(split, *(_fmt(metrics.get(c, "")) for c in ("loss", "accuracy", "macro_f1", "n")))
        for name, scores in (baselines or {}).get(split, {}).items():  # majority, tfidf, scratch (baselines/)
            table.add_row(*_baseline_row(name, scores), style="dim")
    return table


BASELINE_LABELS = {"majority": "majority class", "tfidf": "tf-idf + logistic regression",
                   "scratch": "same model from scratch"}


def _baseline_row(name: str, scores: dict) -> list[str]:
    label = BASELINE_LABELS.get(name, name)
    if scores.get("predicts") is not None:
        label += f" ({scores['predicts']})"
    if scores.get("skipped"):
        return [f"  {label}: skipped ({scores['skipped']})", "", "", "", ""]
    values = (_fmt(scores[c]) if scores.get(c) is not None else "" for c in ("loss", "accuracy", "macro_f1"))
    return [f"  {label}", *values, ""]


def per_class_table(split: str, metrics: dict) -> Table:
    table = Table(title=f"per class ({split})", title_justify="left")
    for column in ("label", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="right" if column != "label" else "left")
    for name, row in metrics.get("per_class", {}).items():
        table.add_row(name, *(_fmt(row[c]) for c in ("precision", "recall", "f1", "support")))
    return table


def confusion_table(split: str, metrics: dict) -> Table:
    matrix = metrics.get("confusion_matrix", {})
    table = Table(title=f"confusion matrix ({split})", title_justify="left",
                  caption="rows: true label; columns: predicted", caption_justify="left", min_width=44)
    table.add_column("")
    for name in matrix.get("labels", []):
        table.add_column(name, justify="right")
    for name, row in zip(matrix.get("labels", []), matrix.get("matrix", [])):
        table.add_row(name, *(str(v) for v in row))
    return table


def print_training_summary(result: dict) -> None:
    task_tables = _task_tables(result.get("task"))  # a task may render its own tables (LM tasks: perplexity)
    if task_tables is not None:
        task_tables(result)
    else:
        splits = {k: result[k] for k in ("validation", "test") if k in result}
        console.print(metrics_table("results (best model)", splits, result.get("baselines")))
        last = "test" if "test" in splits else "validation"
        console.print(per_class_table(last, splits[last]))
        console.print(confusion_table(last, splits[last]))
    best = result["best"]
    console.print(f"best {best['metric']} {_fmt(best['value'])} at step {best['step']}; stopped: {result['stop_reason']}")
    timing = result["timing"]
    console.print(f"time {timing['total_s']:.1f}s (training steps {timing['train_s']:.1f}s, "
                  f"{timing['train_samples_per_s']:.1f} samples/s, {timing['train_tokens_per_s']:.0f} tokens/s, "
                  f"{timing['padding_fraction']:.0%} padding; evaluation {timing['eval_s']:.1f}s)")
    if "method" in result:  # trainable vs total parameters, peak memory (tunesmith/methods/)
        from tunesmith.methods.measure import format_memory

        m = result["method"]
        console.print(f"method {m['description']}: {m['trainable_params']:,} of {m['total_params']:,} parameters "
                      f"trainable ({m['trainable_fraction']:.2%}); {format_memory(result['memory'])}")
    console.print(f"model saved to {result['model_dir']} (load it with transformers' from_pretrained)")
    if result.get("report"):
        console.print(f"report: {result['report']} (rewrite: tunesmith report RUN; compare runs: tunesmith compare)")


def _task_tables(task_name):
    """The task's own summary renderer (`print_summary`), or None for the classification tables."""
    from tunesmith.tasks import TASKS

    return getattr(TASKS.get(task_name), "print_summary", None)


def print_evaluation(source: str, metrics: dict) -> None:
    console.print(metrics_table(f"evaluation on {source}", {"data": metrics}))
    console.print(per_class_table("data", metrics))
    console.print(confusion_table("data", metrics))


def print_predictions(frame, limit: int = 50) -> None:
    table = Table(title="predictions", title_justify="left")
    prob_columns = [c for c in frame.columns if c.startswith("prob_")]
    for column in ("text", "prediction", *prob_columns):
        table.add_column(column, overflow="fold", justify="left" if column == "text" else "right")
    for _, row in frame.head(limit).iterrows():
        table.add_row(str(row["text"]), str(row["prediction"]), *(_fmt(float(row[c])) for c in prob_columns))
    console.print(table)
    if len(frame) > limit:
        console.print(f"... {len(frame) - limit} more rows")


def print_models(rows: list[dict]) -> None:
    table = Table(title="packaged models", title_justify="left")
    for column in ("name", "architecture", "parameters", "installed", "description"):
        table.add_column(column)
    for row in rows:
        params = row.get("params")
        table.add_row(row["name"], str(row.get("architecture", "")), f"{params / 1e6:.1f}M" if params else "?",
                      "yes" if row.get("installed") else "no", row.get("description", ""))
    console.print(table)
    console.print("any local Hugging Face model directory works too: model: path/to/dir")


def fail(message: str) -> None:
    errors.print(f"error: {message}", markup=False, soft_wrap=True)
    sys.stderr.flush()
