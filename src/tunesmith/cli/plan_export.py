"""The `tunesmith plan` and `tunesmith export` commands (argument parsing and what they run)."""

from __future__ import annotations

from tunesmith.cli.arg_types import finite_non_negative


def add_parsers(commands) -> None:
    plan = commands.add_parser("plan", help="measure a few real steps of each fine-tuning method; recommend one "
                                            "that fits a time and memory budget")
    plan.add_argument("recipe", help="path to the YAML recipe")
    plan.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a recipe key (repeatable)")
    plan.add_argument("--time-budget", help="e.g. 30m, 1h30m, 90s: the whole run (training + evaluation) must fit")
    plan.add_argument("--memory-budget", help="e.g. 8GB, 8GiB, 512MB: peak memory (RSS on CPU, allocated on GPU)")
    plan.add_argument("--steps", type=int, default=5, help="measured training steps per method (default 5)")
    plan.add_argument("--timeout", type=float, default=900, help="seconds allowed per method (default 900)")
    plan.add_argument("--memory-headroom", type=float, default=1.3,
                      help="CPU: plan with the measured peak RSS times this (a full epoch grows past a few steps' "
                           "peak; default 1.3)")
    plan.add_argument("--output", help="also write the plan as JSON to this file")

    export = commands.add_parser("export", help="export a run (merged | onnx | int8) and re-evaluate the export")
    export.add_argument("run", help="run directory written by `tunesmith train`")
    export.add_argument("--format", required=True, choices=["merged", "onnx", "int8"], dest="export_format")
    export.add_argument("--max-drop", type=finite_non_negative, default=None,
                        help="refuse the export (exit 2) when the validation metric drops by more than this")
    export.add_argument("--output", help="export directory (default: RUN/exports/FORMAT)")


def cmd_plan(args) -> int:
    import json

    from tunesmith.cli.tables import console, print_plan
    from tunesmith.config.recipe import load_recipe
    from tunesmith.recipes.plan import parse_duration, parse_memory, plan

    time_budget = parse_duration(args.time_budget) if args.time_budget else None
    memory_budget = parse_memory(args.memory_budget) if args.memory_budget else None
    recipe = load_recipe(args.recipe, args.overrides)
    result = plan(recipe, time_budget_s=time_budget, memory_budget=memory_budget, steps=args.steps,
                  timeout_s=args.timeout, memory_headroom=args.memory_headroom, echo=console.print)
    print_plan(result)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
        console.print(f"wrote {args.output}")
    return 0


def cmd_export(args) -> int:
    from tunesmith.cli.tables import console, print_export_report
    from tunesmith.recipes.export import export_run

    report = export_run(args.run, args.export_format, output=args.output, max_drop=args.max_drop,
                        echo=console.print, show=print_export_report)
    return 0


COMMANDS = {"plan": cmd_plan, "export": cmd_export}
