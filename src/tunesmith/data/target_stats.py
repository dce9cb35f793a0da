"""What `inspect` shows about regression targets: each target's distribution and its outliers.

    target_summary    count, mean, std, min, percentiles 1/5/25/50/75/95/99, max, distinct values and a
                      20-bin histogram (counts and edges) per target
    target_outliers   the values beyond Tukey's fences (1.5 IQR below the 25th or above the 75th
                      percentile) or more than 4 standard deviations from the mean, with counts and the
                      lines of the most extreme few

Non-finite values (refused by data.targets.parse_targets before training) are counted as `non_finite`
and otherwise left out, so a summary can be shown for any column of numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from tunesmith.data.targets import as_target_matrix

PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
BINS = 20
IQR_FACTOR = 1.5
Z_LIMIT = 4.0
EXAMPLES = 5  # line numbers listed per target


def target_summary(y: np.ndarray, names: Sequence[str]) -> dict[str, dict]:
    """{target name: {count, non_finite, mean, std, min, p1 ... p99, max, distinct, histogram: {counts, edges}}}.

    A target without a finite value has count 0 and None for every statistic."""
    y = as_target_matrix(y)
    return {name: _summary(y[:, k]) for k, name in enumerate(names)}


def _summary(column: np.ndarray) -> dict:
    values = column[np.isfinite(column)]
    out: dict = {"count": int(len(values)), "non_finite": int(len(column) - len(values))}
    if not len(values):
        keys = ["mean", "std", "min", *(f"p{p}" for p in PERCENTILES), "max", "distinct", "histogram"]
        return {**out, **dict.fromkeys(keys)}
    out.update({"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min())})
    out.update({f"p{p}": float(v) for p, v in zip(PERCENTILES, np.percentile(values, PERCENTILES))})
    out.update({"max": float(values.max()), "distinct": int(len(np.unique(values)))})
    counts, edges = np.histogram(values, bins=BINS)
    out["histogram"] = {"counts": counts.tolist(), "edges": edges.tolist()}
    return out


def target_outliers(y: np.ndarray, names: Sequence[str], frame_lines: Sequence[int] | None = None,
                    *, unit: str = "line") -> list[dict]:
    """One entry per target that has outliers, each {target, count, below, above, beyond_z, low_fence,
    high_fence, examples: [{line, value}], text}; `frame_lines` are the rows' line numbers in the file
    (the frame's `line` column; default: row numbers from 1) and `unit` their name in `text`.

    `below`/`above` count values outside the IQR fences, `beyond_z` those with |z| > Z_LIMIT, `count`
    the values flagged by either rule. With an IQR of 0 (most values equal) only the z rule applies."""
    y = as_target_matrix(y)
    lines = np.arange(1, len(y) + 1) if frame_lines is None else np.asarray(frame_lines)
    if len(lines) != len(y):
        raise ValueError(f"{len(lines)} line numbers for {len(y)} rows")
    found = []
    for k, name in enumerate(names):
        entry = _outliers(y[:, k], lines, str(name), unit)
        if entry is not None:
            found.append(entry)
    return found


def _outliers(column: np.ndarray, lines: np.ndarray, name: str, unit: str) -> dict | None:
    finite = np.isfinite(column)
    values = column[finite]
    if len(values) < 2:
        return None
    q1, q3 = np.percentile(values, [25, 75])
    iqr = q3 - q1
    low, high = (q1 - IQR_FACTOR * iqr, q3 + IQR_FACTOR * iqr) if iqr > 0 else (-np.inf, np.inf)
    std = values.std()
    z = np.zeros_like(column) if std == 0 else np.abs(column - values.mean()) / std
    below, above = finite & (column < low), finite & (column > high)
    beyond_z = finite & (z > Z_LIMIT)
    flagged = below | above | beyond_z
    if not flagged.any():
        return None
    order = np.flatnonzero(flagged)[np.argsort(-z[flagged], kind="stable")][:EXAMPLES]
    examples = [{"line": int(lines[i]), "value": float(column[i])} for i in order]
    fences = f"[{low:g}, {high:g}]" if iqr > 0 else "(IQR 0: fences not used)"
    shown = ", ".join(f"{unit} {e['line']} ({e['value']:g})" for e in examples)
    text = (f"target '{name}': {int(flagged.sum())} outliers of {len(values)} values "
            f"({int(below.sum())} below, {int(above.sum())} above the 1.5 IQR fences {fences}, "
            f"{int(beyond_z.sum())} beyond {Z_LIMIT:g} std); most extreme: {shown}")
    return {"target": name, "count": int(flagged.sum()), "below": int(below.sum()), "above": int(above.sum()),
            "beyond_z": int(beyond_z.sum()), "low_fence": float(low) if iqr > 0 else None,
            "high_fence": float(high) if iqr > 0 else None, "examples": examples, "text": text}


@dataclass
class TargetInspection:
    """`tunesmith inspect` of a regression recipe: rows per split, each target's distribution, the outliers."""

    sources: dict
    rows: dict
    targets: dict  # split -> {target: summary}
    outliers: list[dict]  # from target_outliers, on the training split
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {**asdict(self), "summary": {"error": 0, "warning": 0, "info": len(self.outliers)}}

    def of(self, severity: str) -> list:
        return self.outliers if severity == "info" else []


def inspect_target_splits(splits) -> TargetInspection:
    """The report on a TargetSplits (data/target_splits.py) as `train` builds them."""
    return TargetInspection(
        sources=dict(splits.sources), rows={name: len(frame) for name, frame in splits.frames().items()},
        targets={name: target_summary(y, splits.names) for name, y in splits.y.items()},
        outliers=target_outliers(splits.y["train"], splits.names, splits.train["line"].tolist()),
        notes=list(splits.notes))
