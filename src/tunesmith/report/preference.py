"""report.html section of a dpo run: held-out reward accuracy, margin, rewards and log-probs by step, from
metrics.jsonl, with the reference model's numbers (eval.json baselines: pretrained) drawn at step 0, and a
table of before / best model per held-out split."""

from __future__ import annotations

import tunesmith.report.plots as plots

CHARTS = (  # (title, metrics on one chart): metrics of a like scale share a chart
    ("held-out reward accuracy", ("reward_accuracy", "logp_accuracy")),
    ("held-out reward margin and rewards", ("reward_margin", "chosen_reward", "rejected_reward")),
    ("held-out reply log-probs (summed)", ("chosen_logp", "rejected_logp")),
)
CHARTED = {name for _, names in CHARTS for name in names}
TABLE = ("loss", "reward_accuracy", "reward_margin", "chosen_reward", "rejected_reward", "chosen_logp",
         "rejected_logp", "logp_accuracy")


def is_preference_run(data) -> bool:
    return data.eval.get("task") == "dpo" or "reward_accuracy" in (data.eval.get("validation") or {})


def section_preference(data, chart, charts, table, esc) -> str:
    """'' for other tasks."""
    if not is_preference_run(data):
        return ""
    evals = [r for r in data.metrics if r.get("type") == "eval" and not r.get("final")
             and r.get("split", "validation") == "validation" and isinstance(r.get("step"), (int, float))]
    before = ((data.eval.get("baselines") or {}).get("validation") or {}).get("pretrained") or {}
    points = ([{"step": 0, **before}] if before else []) + evals
    best = (data.eval.get("best") or {}).get("step")
    figures = []
    for title, names in CHARTS:
        series = []
        for name in names:
            chosen = [r for r in points if isinstance(r.get(name), (int, float))]
            series.append(plots.Series(name.replace("_", " "), [r["step"] for r in chosen],
                                       [float(r[name]) for r in chosen], "line"))
        figures.append(chart(plots.line_chart(title, series, vline=best), f"{title} by step (step 0: the reference)"))
    rows = []
    for split, metrics in data.splits.items():
        ref = ((data.eval.get("baselines") or {}).get(split) or {}).get("pretrained") or {}
        rows.append([f"{split}: before (reference)", *(ref.get(k) for k in TABLE)])
        rows.append([f"{split}: best model", *(metrics.get(k) for k in TABLE)])
    settings = data.eval.get("preference") or {}
    note = (f'<p class="note">loss {esc(settings.get("loss"))}, beta {esc(settings.get("beta"))}; reference: '
            f'{esc(settings.get("reference_model"))}. Reward accuracy counts a tie as one half, so the reference '
            f"itself scores 0.5; logp_accuracy is the share of pairs whose chosen reply the model itself gives the "
            f"higher log-prob.</p>") if settings else ""
    return charts(*figures) + table(["", *TABLE], rows) + note
