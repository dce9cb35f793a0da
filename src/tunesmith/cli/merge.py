"""The `tunesmith merge` command (argument parsing and what it runs): recipes/merge.py."""

from __future__ import annotations

import argparse
import math

from tunesmith.cli.arg_types import finite_non_negative
from tunesmith.errors import shown
from tunesmith.methods.adapter_merge import COMBINATIONS



def weight_list(text: str) -> list[float]:
    """Comma-separated finite numbers, e.g. 0.5,0.5."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = [math.nan]
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"must be finite numbers separated by commas, e.g. 0.5,0.5 (got {shown(text)})")
    return values


def add_parser(commands) -> None:
    merge = commands.add_parser("merge", help="merge the LoRA adapters of runs on one base (PEFT's weighted "
                                              "combinations) and re-evaluate on each run's validation set")
    merge.add_argument("runs", nargs="+", metavar="RUN", help="two or more LoRA runs on the same base model")
    merge.add_argument("--output", required=True, help="directory to write (merge.json, tasks/<run name>/)")
    merge.add_argument("--combination", choices=COMBINATIONS, default="svd",
                       help="PEFT's add_weighted_adapter combination_type (default svd, PEFT's default)")
    merge.add_argument("--weights", type=weight_list, help="one weight per run, in order, e.g. 0.5,0.5 "
                                                            "(default 1 each)")
    merge.add_argument("--density", type=float, help="ties / dare / magnitude_prune: share of each adapter's "
                                                     "delta kept, in (0, 1]")
    merge.add_argument("--max-drop", type=finite_non_negative, default=None,
                       help="refuse the merge (exit 2) when any task's validation metric drops by more than this")


def cmd_merge(args) -> int:
    from tunesmith.cli.tables import console, print_merge_report
    from tunesmith.recipes.merge import merge_runs

    merge_runs(args.runs, output=args.output, combination=args.combination, weights=args.weights,
               density=args.density, max_drop=args.max_drop, echo=console.print, show=print_merge_report)
    return 0


COMMANDS = {"merge": cmd_merge}
