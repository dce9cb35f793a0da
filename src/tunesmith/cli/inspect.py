"""`tunesmith inspect RECIPE_OR_DATA`: the data diagnostics of tunesmith/inspection.py on the command line.

A .yaml/.yml argument is a recipe: its splits are built as `train` builds them (same seed and
validation split) and token lengths use the recipe model's tokenizer (only the tokenizer is loaded).
Anything else is a data file, inspected as it is (no split): add --validation/--test files to check
leakage, and --model to count tokens. Exit status: 0, or 1 when a finding listed in fail_on is present
(2 for bad input, as every command).
"""

from __future__ import annotations

import argparse

from tunesmith.cli.arg_types import positive_int

EXIT_FINDINGS = 1


def add_parser(commands) -> None:
    inspect = commands.add_parser("inspect", help="diagnose a data set: class balance, duplicates, leakage, lengths")
    inspect.add_argument("target", help="a YAML recipe, or a labelled data file")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    inspect.add_argument("--output", help="also write the JSON report to this file")
    inspect.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="recipe override, e.g. --set inspect.fail_on=[leakage] (recipes only)")
    inspect.add_argument("--no-tokens", action="store_true", help="skip token lengths (no tokenizer is loaded)")
    data = inspect.add_argument_group("data files (when TARGET is not a recipe)")
    data.add_argument("--validation", help="a validation file to check against the data")
    data.add_argument("--test", help="a test file to check against the data")
    data.add_argument("--model", help="packaged model name or directory whose tokenizer counts tokens")
    data.add_argument("--max-length", type=positive_int, default=128, help="token budget to count truncation against")
    data.add_argument("--format", choices=["csv", "tsv", "jsonl", "json", "parquet", "txt"])
    data.add_argument("--header", action=argparse.BooleanOptionalAction, default=None)
    data.add_argument("--text-column", default="text", help="name, or 0-based index without header (default: text)")
    data.add_argument("--label-column", default="label", help="name, or 0-based index without header (default: label)")
    data.add_argument("--fail-on", action="append", default=[], metavar="CODE",
                      help="make this finding an error (exit 1), e.g. leakage (repeatable)")


def _column(value: str):
    return int(value) if value.isdigit() else value


def cmd_inspect(args) -> int:
    import json
    from pathlib import Path

    from tunesmith.cli.tables import print_inspection
    from tunesmith.config.imbalance import FINDING_CODES
    from tunesmith.errors import RecipeError
    from tunesmith.inspection import inspect_files, report_json, save_report
    from tunesmith.tasks import make_task

    target = Path(args.target)
    if target.suffix.lower() in (".yaml", ".yml"):
        from tunesmith.config.recipe import load_recipe

        overrides = list(args.overrides) + [f"inspect.fail_on={json.dumps(args.fail_on)}"] * bool(args.fail_on)
        report = make_task(load_recipe(target, overrides)).inspect_recipe(tokens=not args.no_tokens)
    else:
        unknown = [code for code in args.fail_on if code not in FINDING_CODES]
        if unknown:
            raise RecipeError(f"--fail-on {unknown[0]}: not a finding; findings are {', '.join(FINDING_CODES)}")
        if args.overrides:
            raise RecipeError("--set applies to recipes; for a data file use --validation, --model, --fail-on ...")
        report = inspect_files(
            str(target), validation=args.validation, test=args.test, format=args.format, header=args.header,
            columns={"text": _column(args.text_column), "label": _column(args.label_column)},
            model=None if args.no_tokens else args.model, max_length=args.max_length, fail_on=args.fail_on,
        )
    if args.json:
        print(report_json(report))
    else:
        print_inspection(report)
    if args.output:
        save_report(report, Path(args.output))
    return EXIT_FINDINGS if report.of("error") else 0
