"""The terminal tables of a multi-label run (drawn by cli/tables.py): labels per row and the most frequent label
pairs of `tunesmith inspect`, and the per-label precision / recall / F1 / support / threshold after training."""

from __future__ import annotations

from rich.table import Table


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def label_set_tables(report) -> list[Table]:
    """Labels per row (mean and distribution) per split, and the top co-occurring training pairs."""
    sizes = sorted({k for split in report.cardinality.values() for k in split["distribution"]})
    table = Table(title="labels per row", title_justify="left")
    for column in ("split", "mean", *(f"{k} label{'s' * (k != 1)}" for k in sizes)):
        table.add_column(column, justify="left" if column == "split" else "right")
    for split, stats in report.cardinality.items():
        table.add_row(split, f"{stats['mean']:.2f}", *(str(stats["distribution"].get(k, 0)) for k in sizes))
    tables = [table]
    if report.cooccurrence:
        pairs = Table(title="labels seen together most often (train)", title_justify="left")
        pairs.add_column("labels")
        pairs.add_column("rows", justify="right")
        for pair in report.cooccurrence:
            pairs.add_row(" + ".join(pair["labels"]), str(pair["rows"]))
        tables.append(pairs)
    return tables


def per_label_table(split: str, metrics: dict) -> Table:
    table = Table(title=f"per label ({split})", title_justify="left")
    columns = ("precision", "recall", "f1", "support", "threshold")
    table.add_column("label")
    for column in columns:
        table.add_column(column, justify="right")
    for name, row in metrics["per_label"].items():
        table.add_row(name, *(_fmt(row.get(c, "")) for c in columns))
    return table
