"""What the terminal shows after a causal_lm / sft run: loss and perplexity against the pretrained model,
then the sample generations before and after training. The common footer (best step, timing, model
directory) is printed by tunesmith.console.print_training_summary."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from tunesmith.console import _fmt, console


def lm_metrics_table(title: str, results: dict[str, dict], baselines: dict | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("split")
    for column in ("loss", "perplexity", "tokens"):
        table.add_column(column, justify="right")
    for split, metrics in results.items():
        table.add_row(split, *(_fmt(metrics.get(c, "")) for c in ("loss", "perplexity", "tokens")))
        before = (baselines or {}).get(split, {}).get("pretrained")
        if before:
            table.add_row("  pretrained (before training)", _fmt(before["loss"]), _fmt(before["perplexity"]), "",
                          style="dim")
    return table


def samples_table(samples: list[dict], width: int = 200) -> Table:
    table = Table(title="samples (greedy, same prompts before and after training)", title_justify="left",
                  show_lines=True)
    for column in ("prompt", "before", "after"):
        table.add_column(column, overflow="fold")
    for sample in samples:
        table.add_row(*(Text(_clip(sample.get(c) or "", width)) for c in ("prompt", "before", "after")))
    return table


def _clip(text: str, width: int) -> str:
    text = " / ".join(line.strip() for line in text.strip().splitlines() if line.strip())  # one line per cell
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def print_lm_summary(result: dict) -> None:
    splits = {k: result[k] for k in ("validation", "test") if k in result}
    console.print(lm_metrics_table("results (best model)", splits, result.get("baselines")))
    if result.get("generations"):
        console.print(samples_table(result["generations"]))
