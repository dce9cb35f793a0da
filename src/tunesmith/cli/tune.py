"""The `tunesmith tune` command: search a recipe's `tune.space` with Optuna (recipes/tune.py)."""

from __future__ import annotations

import shlex
import sys

from tunesmith.errors import TrainingInterrupted


def add_parser(commands) -> None:
    tune = commands.add_parser("tune", help="search hyper-parameters: the recipe's tune.space, with Optuna")
    tune.add_argument("recipe", help="path to the YAML recipe, with a tune: section")
    tune.add_argument("--trials", type=int, default=None,
                      help="trials in the study (default: tune.trials); a rerun continues to this many")
    tune.add_argument("--timeout", help="e.g. 1h, 30m: start no new trial after this long (a running one finishes)")
    tune.add_argument("--storage", help="an Optuna storage URL (default: sqlite in the tune directory)")
    tune.add_argument("--output", help="tune directory (default: the recipe's output + '-tune')")
    tune.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a recipe key before the search (repeatable)")


def cmd_tune(args) -> int:
    from tunesmith.cli.tables import console, fail
    from tunesmith.config.recipe import load_recipe
    from tunesmith.errors import RecipeError
    from tunesmith.recipes.plan import parse_duration

    if args.trials is not None and args.trials < 1:
        raise RecipeError(f"--trials {args.trials}: must be at least 1")
    timeout_s = parse_duration(args.timeout, "--timeout") if args.timeout else None
    recipe = load_recipe(args.recipe, args.overrides)

    from tunesmith.recipes.tune import tune

    try:
        summary = tune(recipe, args.recipe, trials=args.trials, timeout_s=timeout_s, storage=args.storage,
                       output=args.output, echo=console.print)
    except TrainingInterrupted as exc:  # the running trial saved a checkpoint; the same command continues it
        fail(f"{exc}; continue the study with: {shlex.join(['tunesmith', *sys.argv[1:]])}")
        return exc.exit_code
    print_tune_summary(summary)
    return 0


def print_tune_summary(summary: dict) -> None:
    from rich.table import Table

    from tunesmith.cli.tables import console, fmt

    keys = list(summary["space"])
    table = Table(title=f"tune: validation {summary['metric']} ({summary['direction']})", title_justify="left")
    for header in ["trial", "state", summary["metric"], *keys, "steps", "seconds"]:
        table.add_column(header, justify="right" if header not in ("state",) else "left")
    best = (summary.get("best") or {}).get("number")
    for row in summary["trials"]:
        values = row.get("values") or {}
        cells = [row["number"], row["state"], row["value"], *[values.get(key) for key in keys], row.get("steps"),
                 row.get("seconds")]
        table.add_row(*["—" if c is None else fmt(c) for c in cells], style="bold" if row["number"] == best else None)
    console.print(table)
    files = summary.get("files", {})
    if summary.get("best"):
        console.print(f"best: trial {best} ({summary['best']['run_dir']}); recipe: {files.get('best_recipe')}; "
                      f"train it with: tunesmith train {files.get('best_recipe')}")
    else:
        console.print("no trial completed")
    console.print(f"report: {files.get('report')}")


COMMANDS = {"tune": cmd_tune}
