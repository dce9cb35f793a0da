"""`tunesmith plan`'s table: each candidate's measured cost, with --quality its probe's score, and the
recommendation."""

from __future__ import annotations

import json

from rich.table import Table

from tunesmith.cli.tables import console
from tunesmith.recipes.plan import format_bytes, format_duration


def print_plan(result: dict) -> None:
    quality = result.get("quality")
    table = Table(title=plan_title(result), title_justify="left", caption=plan_caption(result),
                  caption_justify="left")
    columns = ["method", "trainable", "step", "epoch", "total", "peak memory", "fits"]
    if quality:
        columns += ["quality", "probe"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("method", "fits") else "right")
    chosen = (result["recommended"] or {}).get("method")
    for row in result["candidates"]:
        cells = cost_cells(row)
        if quality:
            cells += quality_cells(row)
        table.add_row(row["method"] + (" *" if row["method"] == chosen else ""), *cells)
    console.print(table)
    rec = result["recommended"]
    console.print(f"recommended: {rec['method'] if rec else 'none'}. {result['reason']}")
    if quality and quality["by_strength_alone"] != (rec or {}).get("method"):
        console.print(f"(without --quality, by the assumed strength order: {quality['by_strength_alone'] or 'none'})")
    if rec:
        spec = {k: v for k, v in rec["spec"].items() if v is not None}
        console.print("in the recipe:  method: " + json.dumps(spec).replace('"', ""))


def plan_title(result: dict) -> str:
    budgets = []
    if result["time_budget_s"]:
        budgets.append(f"time {format_duration(result['time_budget_s'])}")
    if result["memory_budget_bytes"]:
        budgets.append(f"memory {format_bytes(result['memory_budget_bytes'])}")
    return (f"plan on {result['device']}: {result['steps_measured']} measured steps per method"
            + (f"; budget {', '.join(budgets)}" if budgets else ""))


def plan_caption(result: dict) -> str:
    headroom = result["memory_headroom"]
    caption = ("step: forward+backward+optimizer, measured; epoch and total: projected from the measured times "
               "(total includes evaluations, saves, loading and tokenization); peak: measured"
               f"{' RSS x ' + format(headroom, 'g') + ' headroom' if headroom != 1 else ''} (see tunesmith/plan.py)")
    quality = result.get("quality")
    if quality:
        caption += (f"\nquality: validation {quality['metric']} ({'higher' if quality['mode'] == 'max' else 'lower'} "
                    f"is better) after a {quality['steps']}-step run, mean ± sd over {quality['seeds']} seeds, on at "
                    f"most {quality['validation_rows']} validation rows; lr: {quality['lr_source']}; "
                    f"probe: its seconds, all seeds (see tunesmith/recipes/plan_quality.py)")
    return caption


def cost_cells(row: dict) -> list[str]:
    if "error" in row:
        return ["", "", "", "", "", f"failed: {row['error'][:60]}"]
    fits = "yes" if row["fits"] else "no"
    if row["fits_time"] is None and row["fits_memory"] is None:
        fits = "-"
    trainable = row["trainable_params"]
    return [f"{trainable / 1e6:.2f}M" if trainable >= 10**4 else f"{trainable:,}", f"{row['step_s']:.3f}s",
            format_duration(row["epoch_s"]), format_duration(row["total_s"]),
            format_bytes(row["peak_bytes"]) + (" GPU" if row["peak_kind"] != "rss" else ""), fits]


def quality_cells(row: dict) -> list[str]:
    quality = row.get("quality", {})
    if "mean" in quality:
        spread = f" ± {quality['sd']:.4f}" if quality["sd"] is not None else ""
        return [f"{quality['mean']:.4f}{spread}", format_duration(sum(quality["seconds"]))]
    if "error" in quality:
        return ["probe failed", ""]
    return ["not probed", ""]
