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
    plan.add_argument("--quality", action="store_true",
                      help="also train each method that fits for a short real budget on the data and score it on "
                           "validation; recommend by measured quality and cost")
    plan.add_argument("--quality-budget", help="with --quality: each probe's training, a fraction of an epoch (0.25, "
                                               "the default; at least 100 steps) or a number of optimizer steps "
                                               "(200steps)")
    plan.add_argument("--quality-seeds", type=int, help="with --quality: seeds per method (default 3)")
    plan.add_argument("--quality-rows", type=int, help="with --quality: validation rows scored, a seeded sample "
                                                       "(default 512)")
    plan.add_argument("--output", help="also write the plan as JSON to this file")

    export = commands.add_parser("export", help="export a run (merged | onnx | int8) and re-evaluate the export")
    export.add_argument("run", help="run directory written by `tunesmith train`")
    export.add_argument("--format", required=True, choices=["merged", "onnx", "int8"], dest="export_format")
    export.add_argument("--max-drop", type=finite_non_negative, default=None,
                        help="refuse the export (exit 2) when the validation metric drops by more than this")
    export.add_argument("--output", help="export directory (default: RUN/exports/FORMAT)")


def cmd_plan(args) -> int:
    import json

    from tunesmith.cli.plan_tables import print_plan
    from tunesmith.cli.tables import console
    from tunesmith.config.recipe import load_recipe
    from tunesmith.recipes.plan import parse_duration, parse_memory, plan

    time_budget = parse_duration(args.time_budget) if args.time_budget else None
    memory_budget = parse_memory(args.memory_budget) if args.memory_budget else None
    probe = quality_options(args)
    recipe = load_recipe(args.recipe, args.overrides)
    options = dict(time_budget_s=time_budget, memory_budget=memory_budget, steps=args.steps, timeout_s=args.timeout,
                   memory_headroom=args.memory_headroom, echo=console.print)
    if probe is None:
        result = plan(recipe, **options)
    else:
        from tunesmith.recipes.plan_quality import plan_with_quality

        result = plan_with_quality(recipe, probe, **options)
    print_plan(result)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
        console.print(f"wrote {args.output}")
    return 0


def quality_options(args):
    """The --quality probe's settings (None without --quality); a --quality-* option without it is an error."""
    from tunesmith.recipes.plan import PlanError
    from tunesmith.recipes.plan_quality import DEFAULT_BUDGET, DEFAULT_ROWS, DEFAULT_SEEDS, quality_probe

    given = [name for name in ("budget", "seeds", "rows") if getattr(args, f"quality_{name}") is not None]
    if not args.quality:
        if given:
            raise PlanError(f"--quality-{given[0]} goes with --quality (the quality probe); add --quality")
        return None
    return quality_probe(args.quality_budget or DEFAULT_BUDGET,
                         DEFAULT_SEEDS if args.quality_seeds is None else args.quality_seeds,
                         DEFAULT_ROWS if args.quality_rows is None else args.quality_rows)


def cmd_export(args) -> int:
    from tunesmith.cli.tables import console, print_export_report
    from tunesmith.recipes.export import export_run

    report = export_run(args.run, args.export_format, output=args.output, max_drop=args.max_drop,
                        echo=console.print, show=print_export_report)
    return 0


COMMANDS = {"plan": cmd_plan, "export": cmd_export}
