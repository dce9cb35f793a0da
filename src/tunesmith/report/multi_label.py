"""report.html section of a multi-label run: each held-out split's per-label precision, recall, F1, support and
the decision threshold applied (eval.json `per_label`), with how the thresholds were chosen."""

from __future__ import annotations

COLUMNS = ("precision", "recall", "f1", "support", "threshold")


def section_per_label(data, table, esc) -> str:
    """One table per split with a `per_label` block; '' for other tasks."""
    parts = []
    for split, metrics in data.splits.items():
        per_label = metrics.get("per_label") or {}
        if per_label:
            rows = [[label, *(row.get(c) for c in COLUMNS)] for label, row in per_label.items()]
            parts.append(f"<h3>{esc(split)}</h3>" + table(["label", *COLUMNS], rows))
    tuning = (data.eval.get("multi_label") or {}).get("tuning")
    if parts and tuning:
        kind = "one threshold per label" if tuning.get("per_label") else "one threshold for every label"
        parts.append(f'<p class="note">Thresholds: {esc(kind)}, chosen on validation to maximise '
                     f"{esc(tuning.get('metric'))} ({tuning.get('score_at_default', 0):.4f} at "
                     f"{tuning.get('default')} -> {tuning.get('score', 0):.4f}); validation scores are therefore "
                     f"optimistic, test scores are not.</p>")
    elif parts:
        parts.append('<p class="note">Thresholds: multi_label.threshold.value (not tuned).</p>')
    return "".join(parts)
