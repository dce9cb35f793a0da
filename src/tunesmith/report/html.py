"""RUN/report.html: everything a finished run left behind, on one self-contained page.

Read from the run directory only (recipe.yaml, eval.json, metrics.jsonl, inspect.json when present,
baselines/scratch/ when the scratch baseline ran), so `tunesmith report RUN` rewrites it at any time.
Charts are inline PNG data URIs; the page has no scripts and loads nothing, so it opens offline.

Sections (each an element with this id; a section without data is left out):
    summary, recipe, data, curves, learning-rate, perplexity (language models), confusion, per-class,
    per-label (multi_label), entity-types, entity-confusion, entity-examples (token classification), baselines,
    transfer (a run started from, or watching, an earlier run), generations (language models), stopping,
    performance, environment
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tunesmith.artifacts import RunDir, write_text_atomic
from tunesmith.errors import RunError
from tunesmith.evaluation.verdict import verdict_lines
from tunesmith.report import plots
from tunesmith.report.multi_label import section_per_label
from tunesmith.report.preflight import section_preflight
from tunesmith.report.preference import CHARTED as PREFERENCE_CHARTED, is_preference_run, section_preference
from tunesmith.report.regression import section_predictions, target_tables
from tunesmith.report.token_classification import (section_entity_examples, section_entity_types,
                                                   section_type_confusion)
from tunesmith.report.transfer import section_transfer

REPORT_NAME = "report.html"
INSPECT_NAME = "inspect.json"
SCRATCH_DIR = Path("baselines") / "scratch"
NOT_METRICS = {"step", "epoch", "n", "loss", "perplexity", "is_best", "final", "elapsed_s", "samples", "lr"}
LOWER_IS_BETTER = ("loss", "perplexity")
BASELINE_NAMES = {
    "majority": "majority class",
    "tfidf": "TF-IDF + logistic regression",
    "tfidf_ridge": "TF-IDF + ridge regression",
    "modal_set": "most frequent training label set",
    "tfidf_ovr": "TF-IDF + one-vs-rest logistic regression",
    "mean": "mean of the training targets",
    "scratch": "same architecture from scratch",
    "pretrained": "pretrained model, before fine-tuning",
    "majority_tag": "majority tag of each word",
    "crf": "CRF over word features",
}
MAX_ROWS = 200
DIAG = ' class="diag"'
NUM = ' class="num"'


@dataclass
class RunData:
    path: Path
    recipe: dict
    recipe_text: str
    eval: dict
    metrics: list[dict]
    inspect: object = None
    scratch_eval: dict | None = None
    scratch_metrics: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def splits(self) -> dict[str, dict]:
        return {k: self.eval[k] for k in ("validation", "test") if isinstance(self.eval.get(k), dict)}


# ---- reading the run directory ---------------------------------------------------------------------------


def load_run(path: str | Path) -> RunData:
    run = RunDir(path)
    if not run.path.is_dir():
        raise RunError(f"{run.path}: run directory does not exist")
    if not run.eval_path.is_file():
        raise RunError(f"{run.path}: no eval.json (did training finish?)")
    notes: list[str] = []
    result = _read_json(run.eval_path)
    recipe_text = run.recipe_path.read_text(encoding="utf-8") if run.recipe_path.is_file() else ""
    try:
        recipe = yaml.safe_load(recipe_text) or {} if recipe_text else {}
    except yaml.YAMLError:
        recipe, notes = {}, notes + ["recipe.yaml is not valid YAML"]
    metrics = read_records(run.metrics_path, notes)
    inspect = None
    if (run.path / INSPECT_NAME).is_file():
        try:
            inspect = json.loads((run.path / INSPECT_NAME).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            notes.append(f"{INSPECT_NAME} is not valid JSON")
    scratch = run.path / SCRATCH_DIR
    scratch_eval = _read_json(scratch / "eval.json") if (scratch / "eval.json").is_file() else None
    scratch_metrics = read_records(scratch / "metrics.jsonl", notes) if scratch_eval else []
    return RunData(run.path, recipe if isinstance(recipe, dict) else {}, recipe_text, result, metrics, inspect,
                   scratch_eval, scratch_metrics, notes)


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise RunError(f"{path}: expected a JSON object")
    return value


def read_records(path: Path, notes: list[str] | None = None) -> list[dict]:
    """metrics.jsonl records; a torn last line (a run killed while writing) is skipped, not fatal."""
    if not path.is_file():
        return []
    records, bad = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(record, dict):
            records.append(record)
    if bad and notes is not None:
        notes.append(f"{path.name}: {bad} unreadable line(s) skipped")
    return records


# ---- formatting helpers ----------------------------------------------------------------------------------


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0 or 1e-3 <= abs(value) < 1e5:
            return f"{value:.4f}"
        return f"{value:.4g}"
    return str(value)


def table(headers: list[str], rows: list[list], *, classes: str = "", raw: bool = False,
          row_classes: list[str] | None = None) -> str:
    """An HTML table; cells are escaped unless `raw` (then they are HTML already)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for index, row in enumerate(rows[:MAX_ROWS]):
        cells = "".join(f"<td{NUM if _is_number(cell) else ''}>{cell if raw else esc(fmt(cell))}</td>" for cell in row)
        css = row_classes[index] if row_classes and index < len(row_classes) else ""
        css = f' class="{css}"' if css else ""
        body.append(f"<tr{css}>{cells}</tr>")
    more = f'<p class="note">… {len(rows) - MAX_ROWS} more rows</p>' if len(rows) > MAX_ROWS else ""
    return f'<table class="{classes}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>{more}'


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def key_values(mapping: dict) -> str:
    rows = [[k, v if not isinstance(v, (dict, list)) else json.dumps(v, ensure_ascii=False)]
            for k, v in mapping.items()]
    return table(["", ""], rows, classes="kv")


def render_value(value, depth: int = 0) -> str:
    """Any JSON value as HTML: mappings as key/value tables, lists of records as tables."""
    if isinstance(value, dict):
        if not value:
            return '<p class="note">(empty)</p>'
        if depth >= 3:
            return f"<pre>{esc(json.dumps(value, indent=2, ensure_ascii=False)[:20000])}</pre>"
        simple = {k: v for k, v in value.items() if not isinstance(v, (dict, list))}
        nested = {k: v for k, v in value.items() if isinstance(v, (dict, list))}
        parts = [key_values(simple)] if simple else []
        children = "".join(f'<div class="nested"><h4>{esc(key)}</h4>{render_value(child, depth + 1)}</div>'
                           for key, child in nested.items())
        if children:
            parts.append(f'<div class="group">{children}</div>')
        return "".join(parts)
    if isinstance(value, list):
        if not value:
            return '<p class="note">(empty)</p>'
        if all(isinstance(item, dict) for item in value):
            headers: list[str] = []
            for item in value:
                headers += [k for k in item if k not in headers]
            rows = [[_cell(item.get(h)) for h in headers] for item in value]
            return table(headers, rows, classes="records", raw=True)
        if all(not isinstance(item, (dict, list)) for item in value):
            shown = ", ".join(fmt(item) for item in value[:MAX_ROWS])
            more = f" … ({len(value)} in all)" if len(value) > MAX_ROWS else ""
            return f"<p>{esc(shown + more)}</p>"
        return f"<pre>{esc(json.dumps(value, indent=2, ensure_ascii=False)[:20000])}</pre>"
    return f"<p>{esc(fmt(value))}</p>"


def _cell(value) -> str:
    if isinstance(value, (dict, list)):
        return f"<code>{esc(json.dumps(value, ensure_ascii=False)[:2000])}</code>"
    text = fmt(value)
    return f'<div class="text">{esc(text)}</div>' if isinstance(value, str) and len(value) > 40 else esc(text)


def chart(uri: str | None, alt: str) -> str:
    if uri is None:
        return ""
    return f'<figure class="chart"><img src="{uri}" alt="{esc(alt)}"><figcaption>{esc(alt)}</figcaption></figure>'


def charts(*figures: str) -> str:
    inner = "".join(f for f in figures if f)
    return f'<div class="charts">{inner}</div>' if inner else ""


# ---- curves ----------------------------------------------------------------------------------------------


def train_records(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("type") == "train" and isinstance(r.get("step"), (int, float))]


def eval_records(records: list[dict], split: str = "validation") -> list[dict]:
    return [r for r in records if r.get("type") == "eval" and not r.get("final")
            and r.get("split", "validation") == split and isinstance(r.get("step"), (int, float))]


def metric_keys(records: list[dict]) -> list[str]:
    keys: list[str] = []
    for record in records:
        for key, value in record.items():
            if (key not in NOT_METRICS and key not in keys and not key.endswith(("_s", "tokens", "samples"))
                    and isinstance(value, (int, float)) and not isinstance(value, bool)):
                keys.append(key)
    return keys


def _series(label, records, key, style="line", color=None) -> plots.Series:
    chosen = [r for r in records if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
    return plots.Series(label, [r["step"] for r in chosen], [float(r[key]) for r in chosen], style, color)


def _perplexity(loss) -> float | None:
    return math.exp(loss) if isinstance(loss, (int, float)) and loss < 50 else None


def _has_perplexity(data: RunData) -> bool:
    return any("perplexity" in r for r in data.metrics) or any("perplexity" in s for s in data.splits.values())


# ---- sections --------------------------------------------------------------------------------------------


def _primary_metric(data: RunData) -> str:
    """The metric charts and baselines compare on: the early-stopping metric, unless it is the loss."""
    metric = (data.eval.get("best") or {}).get("metric")
    splits = list(data.splits.values())
    if metric and metric != "loss" and any(metric in s for s in splits):
        return metric
    for name in ("macro_f1", "accuracy", "reward_accuracy", "perplexity", "loss"):
        if any(name in s for s in splits):
            return name
    return "loss"


def section_summary(data: RunData) -> str:
    result = data.eval
    best = result.get("best") or {}
    rows = [["model", result.get("model", data.recipe.get("model"))],
            ["task", result.get("task", data.recipe.get("task"))],
            ["run directory", str(data.path)],
            ["best", f"{best.get('metric')} {fmt(best.get('value'))} at step {best.get('step')}"],
            ["stopped", result.get("stop_reason")]]
    metric = _primary_metric(data)
    for split, metrics in data.splits.items():
        line = f"{metric} {fmt(metrics.get(metric))}"
        for name, scores in (result.get("baselines") or {}).get(split, {}).items():
            if isinstance(scores, dict) and isinstance(scores.get(metric), (int, float)) and \
                    isinstance(metrics.get(metric), (int, float)):
                delta = metrics[metric] - scores[metric]
                line += f"; vs {BASELINE_NAMES.get(name, name)} {fmt(scores[metric])} ({delta:+.4f})"
        rows.append([split, line])
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in data.notes)
    return verdict_box(result.get("verdict") or {}) + table(["", ""], rows, classes="kv") + notes


def verdict_box(verdict: dict) -> str:
    """The quality verdict, first on the page, when the model did not beat its reference points."""
    lines = verdict_lines(verdict)
    if not lines:
        return ""
    causes = "".join(f"<li>{esc(line.split(': ', 1)[1])}</li>" for line in lines[1:] if "likely cause" in line)
    gate = '<p><b>quality_gate failed</b>: the model is kept, and marked in eval.json.</p>' if verdict.get("gate") else ""
    return (f'<div class="verdict"><p><b>{esc(lines[0])}</b></p><p>Likely causes, most likely first:</p>'
            f'<ol>{causes}</ol>{gate}</div>')


def section_recipe(data: RunData) -> str:
    if not data.recipe_text:
        return '<p class="note">recipe.yaml is missing from the run directory.</p>'
    return f'<pre class="recipe">{esc(data.recipe_text)}</pre>'


def section_data(data: RunData) -> str:
    result = data.eval
    parts = []
    counts = result.get("data") or {}
    sources = result.get("sources") or {}
    if counts or sources:
        rows = [[name, counts.get(name), sources.get(name)] for name in dict.fromkeys([*counts, *sources])]
        parts.append(table(["split", "rows", "source"], rows))
    for split, metrics in data.splits.items():
        per_class = metrics.get("per_class") or {}
        if per_class:
            total = sum(row.get("support", 0) for row in per_class.values()) or 1
            rows = [[label, row.get("support"), f"{100 * row.get('support', 0) / total:.1f}%"]
                    for label, row in per_class.items()]
            parts.append(f"<h3>labels in {esc(split)}</h3>" + table(["label", "rows", "share"], rows))
    if isinstance(data.inspect, dict) and "targets" in data.inspect:  # regression: the targets' distributions
        parts.append(f"<h3>targets ({INSPECT_NAME})</h3>" + target_tables(data.inspect, table, esc))
    elif data.inspect is not None:
        parts.append(f"<h3>diagnostics ({INSPECT_NAME})</h3>" + render_value(data.inspect))
    else:
        parts.append(f'<p class="note">No {INSPECT_NAME} in the run directory: no data diagnostics beyond '
                     f"the counts above.</p>")
    return "".join(parts)


def section_curves(data: RunData) -> str:
    train, evals = train_records(data.metrics), eval_records(data.metrics)
    best = (data.eval.get("best") or {}).get("step")
    loss = [_series("train loss", train, "loss", color="#1f77b4"),
            _series("validation loss", evals, "loss", "markers", color="#d62728")]
    drawn_elsewhere = PREFERENCE_CHARTED - {"reward_accuracy"} if is_preference_run(data) else set()  # own section
    metric_series = [_series(f"validation {k}", evals, k, "markers") for k in metric_keys(evals)
                     if k not in drawn_elsewhere]
    if data.scratch_metrics:
        s_train, s_eval = train_records(data.scratch_metrics), eval_records(data.scratch_metrics)
        loss += [_series("scratch train loss", s_train, "loss", "dashed", color="#7fa7c9"),
                 _series("scratch validation loss", s_eval, "loss", "dashed-markers", color="#e99a9b")]
        metric = _primary_metric(data)
        if metric not in LOWER_IS_BETTER:
            metric_series.append(_series(f"scratch validation {metric}", s_eval, metric, "dashed-markers",
                                         color="#888888"))
    figures = charts(
        chart(plots.line_chart("loss", loss, vline=best), "training and validation loss by step"),
        chart(plots.line_chart("validation metrics", metric_series, vline=best), "validation metrics by step"),
    )
    return figures or '<p class="note">metrics.jsonl holds no training records.</p>'


def section_learning_rate(data: RunData) -> str:
    train = train_records(data.metrics)
    if not any("lr" in r for r in train):
        return ""
    return charts(chart(plots.line_chart("learning rate", [_series("lr", train, "lr", color="#2ca02c")],
                                         ylabel="lr"), "learning rate by step"))


def section_perplexity(data: RunData) -> str:
    if not _has_perplexity(data):
        return ""
    train = [{**r, "perplexity": _perplexity(r.get("loss"))} for r in train_records(data.metrics)]
    evals = eval_records(data.metrics)
    series = [_series("train perplexity (exp loss)", train, "perplexity", color="#1f77b4"),
              _series("validation perplexity", evals, "perplexity", "markers", color="#d62728")]
    if data.scratch_metrics:
        series.append(_series("scratch validation perplexity", eval_records(data.scratch_metrics), "perplexity",
                              "dashed-markers", color="#888888"))
    best = (data.eval.get("best") or {}).get("step")
    rows = [[split, m.get("perplexity"), m.get("loss")] for split, m in data.splits.items()]
    return charts(chart(plots.line_chart("perplexity", series, vline=best, logy=True), "perplexity by step")) + \
        table(["split", "perplexity", "loss"], rows)


def section_confusion(data: RunData) -> str:
    parts = []
    for split, metrics in data.splits.items():
        matrix = metrics.get("confusion_matrix") or {}
        labels, rows = matrix.get("labels") or [], matrix.get("matrix") or []
        if not labels:
            continue
        head = "".join(f"<th>{esc(label)}</th>" for label in labels)
        body = []
        for i, (label, row) in enumerate(zip(labels, rows)):
            total = sum(row) or 1
            cells = "".join(f'<td style="background: rgba(31,119,180,{0.08 + 0.8 * v / total:.2f})"'
                            f'{DIAG if i == j else ""}>{v}</td>' for j, v in enumerate(row))
            body.append(f"<tr><th>{esc(label)}</th>{cells}</tr>")
        parts.append(f'<h3>{esc(split)}</h3><table class="confusion"><thead><tr><th>true \\ predicted</th>{head}'
                     f'</tr></thead><tbody>{"".join(body)}</tbody></table>')
    return "".join(parts)


def section_per_class(data: RunData) -> str:
    parts = []
    for split, metrics in data.splits.items():
        per_class = metrics.get("per_class") or {}
        if per_class:
            rows = [[label, r.get("precision"), r.get("recall"), r.get("f1"), r.get("support")]
                    for label, r in per_class.items()]
            parts.append(f"<h3>{esc(split)}</h3>" + table(["label", "precision", "recall", "f1", "support"], rows))
    return "".join(parts)


def section_baselines(data: RunData) -> str:
    baselines = data.eval.get("baselines") or {}
    if not any(baselines.get(split) for split in data.splits):
        return '<p class="note">No baselines ran (recipe: baselines).</p>' if data.splits else ""
    metric = _primary_metric(data)
    shown = dict.fromkeys(("accuracy", "macro_f1", "weighted_f1", "loss", "perplexity",
                           *(data.eval.get("summary_columns") or ())))  # the task's own columns too
    columns = [c for c in shown if any(c in m for m in data.splits.values())]
    parts = []
    for split, metrics in data.splits.items():
        rows, names = [["fine-tuned", *(metrics.get(c) for c in columns)]], ["fine-tuned"]
        for name, scores in (baselines.get(split) or {}).items():
            label = BASELINE_NAMES.get(name, name)
            if isinstance(scores, dict) and scores.get("skipped"):
                rows.append([label, *([None] * len(columns))])
                continue
            if name == "majority" and isinstance(scores, dict) and scores.get("predicts") is not None:
                label += f" ({scores['predicts']})"
            rows.append([label, *((scores or {}).get(c) for c in columns)])
            names.append(label)
        parts.append(f"<h3>{esc(split)}</h3>" + table(["model", *columns], rows, row_classes=["ours"]))
        values = [r[1 + columns.index(metric)] if metric in columns else None for r in rows]
        parts.append(charts(chart(plots.bar_chart(f"{split} {metric}", [r[0] for r in rows], values,
                                                  xlabel=metric), f"{split} {metric}: fine-tuned vs baselines")))
    details = []
    for split in data.splits:
        tfidf = (baselines.get(split) or {}).get("tfidf") or {}
        cv = tfidf.get("cv") or {}
        if cv:
            scores = ", ".join(f"C={c}: {fmt(s)}" for c, s in (cv.get("scores") or {}).items())
            details.append(f"<li>TF-IDF + logistic regression: C={tfidf.get('C'):g} chosen by "
                           f"{cv.get('folds')}-fold "
                           f"cross-validation on the training set ({esc(cv.get('metric'))}: {esc(scores)}); "
                           f"{tfidf.get('features')} features; fitted in {fmt(tfidf.get('fit_s'))} s.</li>")
            break
    for split in data.splits:
        scratch = (baselines.get(split) or {}).get("scratch") or {}
        if scratch:
            details.append(f"<li>From scratch: same architecture with random weights and the same recipe "
                           f"(run directory {esc(data.path / str(scratch.get('run', SCRATCH_DIR)))}): "
                           f"{scratch.get('steps')} steps, best at step {scratch.get('best_step')}, "
                           f"stopped: {esc(scratch.get('stop_reason'))}. Its curves are drawn dashed above.</li>")
            break
    for split in data.splits:
        skipped = [f"{n}: {s['skipped']}" for n, s in (baselines.get(split) or {}).items()
                   if isinstance(s, dict) and s.get("skipped")]
        if skipped:
            details.append(f"<li>skipped: {esc('; '.join(skipped))}</li>")
            break
    if details:
        parts.append(f"<ul>{''.join(details)}</ul>")
    return "".join(parts)


def section_generations(data: RunData) -> str:
    found = {}
    if data.eval.get("generations"):
        found["generations"] = data.eval["generations"]
    for split, metrics in data.splits.items():
        if metrics.get("generations"):
            found[split] = metrics["generations"]
    if not found:
        return ""
    return "".join(f"<h3>{esc(name)}</h3>{render_value(value)}" for name, value in found.items())


def section_stopping(data: RunData) -> str:
    result = data.eval
    best = result.get("best") or {}
    rows = [["best metric", best.get("metric")], ["best value", best.get("value")], ["best step", best.get("step")],
            ["why training stopped", result.get("stop_reason")], ["steps", result.get("steps")],
            ["epochs", result.get("epochs")]]
    parts = [table(["", ""], rows, classes="kv")]
    evals = eval_records(data.metrics)
    if evals:
        keys = ["loss", *[k for k in metric_keys(evals)], *(["perplexity"] if any("perplexity" in r for r in evals)
                                                             else [])]
        history = [[r.get("step"), r.get("epoch"), *(r.get(k) for k in keys), "best so far" if r.get("is_best")
                    else ""] for r in evals]
        marks = ["best" if r.get("step") == best.get("step") else "" for r in evals]
        parts.append("<h3>evaluations</h3>" + table(["step", "epoch", *keys, ""], history, row_classes=marks))
    return "".join(parts)


def section_performance(data: RunData) -> str:
    result = data.eval
    parts = []
    timing = result.get("timing")
    if isinstance(timing, dict) and timing:
        parts.append(key_values(timing))
    for key, value in result.items():
        if "memory" in key.lower() or key in ("resources", "throughput"):
            parts.append(f"<h3>{esc(key)}</h3>" + (render_value(value) if isinstance(value, (dict, list))
                                                   else f"<p>{esc(fmt(value))}</p>"))
    if not any("memory" in k.lower() for k in [*result, *(timing or {})]):
        parts.append('<p class="note">peak memory: not recorded in eval.json by this version.</p>')
    return "".join(parts)


def section_environment(data: RunData) -> str:
    environment = data.eval.get("environment")
    return key_values(environment) if isinstance(environment, dict) and environment else \
        '<p class="note">not recorded</p>'


SECTIONS = (
    ("summary", "Summary", section_summary),
    ("recipe", "Recipe", section_recipe),
    ("data", "Data", section_data),
    ("preflight", "Preflight checks", lambda data: section_preflight(data, table, esc)),
    ("curves", "Loss and metric curves", section_curves),
    ("learning-rate", "Learning rate", section_learning_rate),
    ("perplexity", "Perplexity", section_perplexity),
    ("predictions", "Predicted vs true values", lambda data: section_predictions(data, chart, charts, esc)),
    ("confusion", "Confusion matrix", section_confusion),
    ("per-class", "Per-class precision, recall and F1", section_per_class),
    ("per-label", "Per-label precision, recall, F1 and threshold", lambda data: section_per_label(data, table, esc)),
    # token classification (report/token_classification.py)
    ("entity-types", "Per entity type: precision, recall and F1", lambda d: section_entity_types(d, table, esc)),
    ("entity-confusion", "Entity-type confusion", lambda d: section_type_confusion(d, table, esc)),
    ("entity-examples", "Validation sentences: gold and predicted entities",
     lambda d: section_entity_examples(d, table, esc)),
    # dpo (report/preference.py)
    ("preference", "Preference: held-out reward accuracy, margin, rewards and log-probs",
     lambda d: section_preference(d, chart, charts, table, esc)),
    ("transfer", "Transfer: started from, watched", lambda d: section_transfer(d, chart, charts, table, esc)),
    ("baselines", "Baselines", section_baselines),
    ("generations", "Generations before and after fine-tuning", section_generations),
    ("stopping", "Best step and why training stopped", section_stopping),
    ("performance", "Timings, throughput and memory", section_performance),
    ("environment", "Environment", section_environment),
)

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1d1d1f;
       margin: 0 auto; max-width: 1180px; padding: 16px 24px 48px; background: #fff; }
h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #ddd;
     padding-bottom: 4px; } h3 { font-size: 14px; margin: 14px 0 6px; } h4 { font-size: 13px; margin: 10px 0 4px; }
nav { font-size: 13px; color: #555; } nav a { margin-right: 10px; color: #1f5f99; text-decoration: none; }
table { border-collapse: collapse; margin: 6px 0 10px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
td.num, table.confusion td { text-align: right; } thead th { background: #f4f6f8; }
table.kv td:first-child { color: #555; } table.kv thead { display: none; } table.kv td { text-align: left; }
tr.ours td, tr.best td { font-weight: 600; background: #f3f8fd; }
table.confusion td.diag { font-weight: 700; }
table.records td { text-align: left; max-width: 420px; } .text { white-space: pre-wrap; }
pre { background: #f6f8fa; padding: 10px; overflow: auto; font-size: 12px; }
pre.recipe { max-height: 440px; } .group { display: flex; flex-wrap: wrap; gap: 0 28px; align-items: flex-start; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: 12px; }
figure.chart { margin: 0; } figure.chart img { width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 12px; color: #666; } .verdict { border: 2px solid #c0392b; background: #fdf0ee;
 padding: 4px 14px; margin: 8px 0 12px; } .note { color: #666; font-size: 13px; }
"""


def render_report(data: RunData) -> str:
    rendered = [(sid, title, build(data)) for sid, title, build in SECTIONS]
    rendered = [(sid, title, body) for sid, title, body in rendered if body]
    nav = " ".join(f'<a href="#{sid}">{esc(title)}</a>' for sid, title, _ in rendered)
    body = "\n".join(f'<section id="{sid}"><h2>{esc(title)}</h2>{content}</section>'
                     for sid, title, content in rendered)
    if not plots.available():
        body = '<p class="note">matplotlib is not installed: charts are left out.</p>' + body
    name = esc(data.path.name or data.path)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>tunesmith run: {name}</title><style>{CSS}</style></head>'
            f'<body><h1>tunesmith run: {name}</h1><nav>{nav}</nav>\n{body}\n</body></html>\n')


def write_report(run_path: str | Path) -> Path:
    data = load_run(run_path)
    path = data.path / REPORT_NAME
    write_text_atomic(path, render_report(data))
    return path
