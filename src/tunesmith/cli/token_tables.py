"""The terminal tables of `tunesmith inspect` for a token classification recipe (data/token_stats.py's
TokenInspection): entities per split, sentence lengths, findings. cli/tables.print_inspection dispatches here."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

STYLES = {"error": "bold red", "warning": "yellow", "info": "dim"}


def print_token_inspection(report, console: Console) -> None:
    splits = list(report.rows)
    table = Table(title="entities", title_justify="left")
    table.add_column("type")
    for split in splits:
        table.add_column(split, justify="right")
    types = sorted({kind for counts in report.entities.values() for kind in counts})
    for kind in types:
        table.add_row(kind, *(str(report.entities[split].get(kind, 0)) for split in splits))
    table.add_row("sentences", *(str(report.rows[split]) for split in splits), style="dim")
    table.add_row("words", *(str(report.words[split]) for split in splits), style="dim")
    console.print(table)
    console.print(_lengths_table(report))
    if report.findings:
        found = Table(title="findings", title_justify="left")
        for column in ("severity", "code", "what"):
            found.add_column(column, overflow="fold")
        for f in report.findings:
            what = f.message + "".join(f"\n  e.g. {ex['where']}: {ex['text']}" for ex in f.examples)
            found.add_row(f.severity, f.code, what, style=STYLES.get(f.severity))
        console.print(found)
    else:
        console.print("no findings")
    for note in report.notes:
        console.print(f"note: {note}", markup=False)


def _lengths_table(report) -> Table:
    columns = ("min", "p50", "p90", "p99", "max", "mean")
    limit = f", max_length {report.max_length}" if report.max_length else ""
    table = Table(title=f"sentence lengths (words; sub-tokens with the model's tokenizer{limit})",
                  title_justify="left")
    table.add_column("split")
    table.add_column("in")
    for column in columns:
        table.add_column(column, justify="right")
    table.add_column("windowed", justify="right")
    for split, entry in report.lengths.items():
        for unit in ("words", "subtokens"):
            stats = entry.get(unit)
            if stats:
                table.add_row(split, unit.replace("subtokens", "sub-tokens"), *(str(stats[c]) for c in columns),
                              str(stats.get("over_max_length", "")))
    return table
