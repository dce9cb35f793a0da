"""Everything the terminal shows: the tables after training, evaluation, prediction, inspection, export and
compare (plan's: cli/plan_tables.py), and the one-line errors. Commands (cli/) call these; nothing below cli
prints tables."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tunesmith.cli.multi_label_tables import label_set_tables, per_label_table
from tunesmith.cli.token_tables import print_token_inspection
from tunesmith.data.target_stats import TargetInspection
from tunesmith.data.token_stats import TokenInspection
from tunesmith.evaluation.label_set_inspection import LabelSetInspection
from tunesmith.methods.measure import format_memory
from tunesmith.report.compare import metric_rows, recipe_differences, run_labels, show_value

console = Console(stderr=False, highlight=False)
errors = Console(stderr=True, highlight=False)


def fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def metrics_table(title: str, results: dict[str, dict], baselines: dict | None = None,
                  columns=("loss", "accuracy", "macro_f1")) -> Table:
    """One row per split with the task's summary columns; each split's baselines in dim rows under it."""
    table = Table(title=title, title_justify="left")
    table.add_column("split")
    for column in (*columns, "n"):
        table.add_column(column, justify="right")
    for split, metrics in results.items():
        table.add_row(split, *(fmt(metrics.get(c, "")) for c in (*columns, "n")))
        for name, scores in (baselines or {}).get(split, {}).items():  # majority, tfidf, scratch, pretrained
            table.add_row(*baseline_row(name, scores, columns), style="dim")
    return table


BASELINE_LABELS = {"majority": "majority class", "tfidf": "tf-idf + logistic regression",
                   "scratch": "same model from scratch", "pretrained": "pretrained (before training)",
                   "mean": "mean of the training targets", "tfidf_ridge": "tf-idf + ridge regression",
                   "modal_set": "most frequent label set", "tfidf_ovr": "tf-idf + one-vs-rest logistic regression",
                   "majority_tag": "majority tag of each word", "crf": "CRF over word features"}


def baseline_row(name: str, scores: dict, columns) -> list[str]:
    label = BASELINE_LABELS.get(name, name)
    if isinstance(scores.get("predicts"), str):
        label += f" ({scores['predicts']})"
    if scores.get("skipped"):
        return [f"  {label}: skipped ({scores['skipped']})", *[""] * (len(columns) + 1)]
    values = (fmt(scores[c]) if isinstance(scores.get(c), (int, float)) else "" for c in columns)
    return [f"  {label}", *values, ""]


def per_class_table(split: str, metrics: dict, title: str = "per class") -> Table:
    table = Table(title=f"{title} ({split})", title_justify="left")
    for column in ("label", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="right" if column != "label" else "left")
    for name, row in metrics.get("per_class", {}).items():
        table.add_row(name, *(fmt(row[c]) for c in ("precision", "recall", "f1", "support")))
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
    from tunesmith.evaluation.verdict import verdict_lines

    """The run's tables, drawn from what eval.json holds: the task's summary columns per split with the
    baselines under them, then whichever of per-class, confusion, per-target and sample tables it has."""
    splits = {k: result[k] for k in ("validation", "test") if k in result}
    columns = tuple(result.get("summary_columns") or ("loss",))
    console.print(metrics_table("results (best model)", splits, result.get("baselines"), columns))
    last = "test" if "test" in splits else "validation"
    print_split_details(last, splits[last])
    if result.get("generations"):
        console.print(samples_table(result["generations"]))
    best = result["best"]
    console.print(f"best {best['metric']} {fmt(best['value'])} at step {best['step']}; stopped: {result['stop_reason']}")
    timing = result["timing"]
    console.print(f"time {timing['total_s']:.1f}s (training steps {timing['train_s']:.1f}s, "
                  f"{timing['train_samples_per_s']:.1f} samples/s, {timing['train_tokens_per_s']:.0f} tokens/s, "
                  f"{timing['padding_fraction']:.0%} padding; evaluation {timing['eval_s']:.1f}s)")
    if "method" in result:  # trainable vs total parameters, peak memory (tunesmith/methods/)
        m = result["method"]
        console.print(f"method {m['description']}: {m['trainable_params']:,} of {m['total_params']:,} parameters "
                      f"trainable ({m['trainable_fraction']:.2%}); {format_memory(result['memory'])}")
    console.print(f"model saved to {result['model_dir']} (load it with transformers' from_pretrained)")
    if result.get("report"):
        console.print(f"report: {result['report']} (rewrite: tunesmith report RUN; compare runs: tunesmith compare)")
    for line in verdict_lines(result.get("verdict") or {}):  # last, where it is seen: the run learned nothing?
        console.print(line, style="bold red" if line.startswith("WARNING") else "red", markup=False, soft_wrap=True)


def print_split_details(split: str, metrics: dict) -> None:
    if metrics.get("per_class"):
        console.print(per_class_table(split, metrics))
    if metrics.get("confusion_matrix"):
        console.print(confusion_table(split, metrics))
    if metrics.get("per_target"):
        console.print(per_target_table(split, metrics))
    if metrics.get("per_label"):  # multi_label
        console.print(per_label_table(split, metrics))
    if metrics.get("per_type"):  # token classification: entity precision / recall / F1 per type
        console.print(per_class_table(split, {"per_class": metrics["per_type"]}, title="per entity type"))


def per_target_table(split: str, metrics: dict) -> Table:
    names = ("pearson", "spearman", "rmse", "mae", "r2")
    table = Table(title=f"per target ({split})", title_justify="left")
    table.add_column("target")
    for column in names:
        table.add_column(column, justify="right")
    for name, row in metrics["per_target"].items():
        table.add_row(name, *(fmt(row.get(c, "")) for c in names))
    return table


def print_evaluation(source: str, metrics: dict, columns=("loss", "accuracy", "macro_f1")) -> None:
    console.print(metrics_table(f"evaluation on {source}", {"data": metrics}, columns=columns))
    print_split_details("data", metrics)


def print_predictions(frame, limit: int = 50, title: str = "predictions") -> None:
    """The text and the task's prediction columns (prediction[_<target>], prob_<label>)."""
    table = Table(title=title, title_justify="left")
    shown = [c for c in frame.columns if c.startswith(("prediction", "prob_"))]
    for column in ("text", *shown):
        table.add_column(column, overflow="fold", justify="left" if column == "text" else "right")
    for _, row in frame.head(limit).iterrows():
        text = row["text"] if "text" in frame.columns else " ".join(row["tokens"])  # token files: the words
        table.add_row(str(text), *(fmt(row[c].item() if hasattr(row[c], "item") else row[c]) for c in shown))
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


def print_compare(runs) -> None:
    from rich.markup import escape
    labels = run_labels(runs)
    differences = recipe_differences([run.recipe for run in runs])
    table = Table(title="recipe differences", title_justify="left")
    table.add_column("key", no_wrap=True)
    for label in labels:
        table.add_column(label, overflow="fold")
    for row in differences:
        table.add_row(escape(row.label), *(escape(show_value(v)) for v in row.values))
    if differences:
        console.print(table)
    else:
        console.print("recipe differences: none (apart from output)")
    table = Table(title="metrics (best model of each run)", title_justify="left")
    table.add_column("", no_wrap=True)
    for label in labels:
        table.add_column(label, justify="right", overflow="fold")
    for row in metric_rows(runs):
        best = row.best_index()
        table.add_row(escape(row.label), *(f"[bold]{escape(show_value(v))}[/bold]" if i in best else escape(show_value(v))
                                           for i, v in enumerate(row.values)))
    console.print(table)


def print_export_report(report: dict) -> None:
    metric = report["metric"]
    table = Table(title=f"export {report['format']}: {report['split']} set ({report['examples']} examples), "
                        f"CPU, {report['threads']} thread(s)", title_justify="left")
    second = "accuracy" if "accuracy" in report["reference"]["metrics"] else "macro_f1"  # multi_label: no accuracy
    for column in ("model", metric, second, f"Δ {metric}", "MB", "ms/ex b=1", "ex/s b=32"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, row, delta in (("torch fp32 (RUN/model)", report["reference"], ""),
                             (report["format"], report["export"], f"{report['delta'][metric]:+.4f}")):
        m = row["metrics"]
        table.add_row(name, f"{m[metric]:.4f}", f"{m.get(second, float('nan')):.4f}", delta,
                      f"{row['size_mb']:.1f}", f"{row['latency_ms_b1']:.2f}", f"{row['throughput_b32']:.1f}")
    console.print(table)
    console.print(f"predictions agree with the reference on {report['prediction_agreement']:.2%} of "
                  f"{report['throughput_examples']} examples; max |logit difference| {report['max_abs_logit_diff']:.2e}")
    if report["max_drop"] is not None:
        verdict = "within" if report["passed"] else "MORE than"
        console.print(f"{metric} drop {report['drop']:+.4f}: {verdict} --max-drop {report['max_drop']:g}")


def print_merge_report(report: dict) -> None:
    weights = ", ".join(f"{w:g}" for w in report["weights"])
    density = f", density {report['density']:g}" if report["density"] is not None else ""
    table = Table(title=f"merge {report['combination']} (weights {weights}{density}, rank {report['rank']}): "
                        f"each task's validation set, its RUN/model vs the merged adapter", title_justify="left")
    for column in ("task", "metric", "source", "merged", "Δ", "agree", "max |Δ logit|"):
        table.add_column(column, justify="left" if column in ("task", "metric") else "right")
    for name, row in report["tasks"].items():
        metric = row["metric"]
        table.add_row(name, metric, f"{row['source_metrics'][metric]:.4f}", f"{row['merged_metrics'][metric]:.4f}",
                      f"{row['delta'][metric]:+.4f}", f"{row['prediction_agreement']:.2%}",
                      f"{row['max_abs_logit_diff']:.2e}")
    console.print(table)
    if report["max_drop"] is not None:
        verdict = "every task within" if report["passed"] else "a task drops MORE than"
        console.print(f"{verdict} --max-drop {report['max_drop']:g}")


def print_inspection(report) -> None:
    """Tables on the terminal: classes per split, token lengths, findings (inspection.py's Report); for a
    regression recipe, the targets' distributions and outliers (data/target_stats.py)."""
    if isinstance(report, TargetInspection):
        print_target_inspection(report)
        return
    if isinstance(report, TokenInspection):  # token_classification (cli/token_tables.py)
        print_token_inspection(report, console)
        return
    for table in label_set_tables(report) if isinstance(report, LabelSetInspection) else ():  # multi_label
        console.print(table)
    splits = list(report.classes)
    table = Table(title="classes", title_justify="left")
    table.add_column("label")
    for split in splits:
        table.add_column(split, justify="right")
        table.add_column("share", justify="right", style="dim")
    labels = list(dict.fromkeys(label for counts in report.classes.values() for label in counts))
    for label in labels:
        cells = []
        for split in splits:
            n = report.classes[split].get(label, 0)
            total = max(report.rows.get(split, 0), 1)
            cells += [str(n), f"{n / total:.1%}"]
        table.add_row(label, *cells)
    console.print(table)
    line = []
    if report.imbalance_ratio is not None:
        line.append(f"imbalance ratio {report.imbalance_ratio:.1f}:1")
    if report.majority_baseline:
        b = report.majority_baseline
        line.append(f"majority baseline ('{b['predicts']}' on {b['split']}): accuracy {b['accuracy']:.3f}, "
                    f"macro-F1 {b['macro_f1']:.3f}")
    if line:
        console.print("; ".join(line))
    if report.token_lengths:
        lengths = Table(title=f"tokens per example (max_length {report.token_lengths['max_length']})",
                        title_justify="left")
        columns = ("min", "p50", "p90", "p99", "max", "mean", "truncated")
        lengths.add_column("split")
        for c in columns:
            lengths.add_column(c, justify="right")
        for split, stats in report.token_lengths.items():
            if isinstance(stats, dict):
                lengths.add_row(split, *(str(stats[c]) for c in columns))
        console.print(lengths)
    if report.findings:
        found = Table(title="findings", title_justify="left")
        for c in ("severity", "code", "what"):
            found.add_column(c, overflow="fold")
        styles = {"error": "bold red", "warning": "yellow", "info": "dim"}
        for f in report.findings:
            what = f.message
            for ex in f.examples:
                where = f"{ex.get('split', '')} {ex.get('where', '')}".strip()
                what += f"\n  e.g. {where + ': ' if where else ''}{ex.get('text', '')}"
                if "labels" in ex:
                    what += f" ({'; '.join(ex['labels'])})"
            found.add_row(f.severity, f.code, what, style=styles.get(f.severity))
        console.print(found)
    else:
        console.print("no findings")
    for note in report.notes:
        console.print(f"note: {note}", markup=False)


def samples_table(samples: list[dict], width: int = 200) -> Table:
    table = Table(title="samples (greedy, same prompts before and after training)", title_justify="left",
                  show_lines=True)
    for column in ("prompt", "before", "after"):
        table.add_column(column, overflow="fold")
    for sample in samples:
        table.add_row(*(Text(clip(sample.get(c) or "", width)) for c in ("prompt", "before", "after")))
    return table


def clip(text: str, width: int) -> str:
    text = " / ".join(line.strip() for line in text.strip().splitlines() if line.strip())  # one line per cell
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def print_generations(prompts, texts, *, chat: bool) -> None:
    """causal_lm: the prompt and its continuation; sft: the answer. Several prompts are separated by a rule."""
    for index, (prompt, text) in enumerate(zip(prompts, texts)):
        if index:
            print("\n" + "-" * 40)
        print(text if chat else prompt + text, flush=True)


def print_target_inspection(report) -> None:
    columns = ("count", "mean", "std", "min", "p5", "p50", "p95", "max", "distinct")
    table = Table(title="targets", title_justify="left")
    for column in ("split", "target", *columns):
        table.add_column(column, justify="left" if column in ("split", "target") else "right")
    for split, targets in report.targets.items():
        for name, stats in targets.items():
            table.add_row(split, name, *(f"{stats[c]:.3g}" if isinstance(stats.get(c), float) else str(stats.get(c))
                                         for c in columns))
    console.print(table)
    for outlier in report.outliers:
        console.print(f"note: [target_outliers] {outlier['text']}", markup=False)
    if not report.outliers:
        console.print("no outliers")
    for note in report.notes:
        console.print(f"note: {note}", markup=False)
