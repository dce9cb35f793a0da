"""Command line: parse arguments, call one function per command, turn errors into one line + exit 2.

Every command lives in this package: train, predict, evaluate, generate, models (here); inspect (cli/inspect.py);
report, compare (cli/report.py); plan, export (cli/plan_export.py); tune (cli/tune.py); merge (cli/merge.py). Every table they print is cli/tables.py.
Heavy modules (torch, transformers) are imported inside the commands, after the recipe is validated, so a bad
recipe fails fast."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tunesmith.errors import RunError, TrainingInterrupted, TunesmithError
from tunesmith.cli.inspect import add_parser as add_inspect_parser
from tunesmith.cli.inspect import cmd_inspect
from tunesmith.cli.launch import add_arguments as add_launch_arguments
from tunesmith.cli.launch import record_exit, resume_hint
from tunesmith.cli.merge import COMMANDS as MERGE_COMMANDS  # merge: cli/merge.py
from tunesmith.cli.merge import add_parser as add_merge_parser
from tunesmith.cli.plan_export import COMMANDS as PLAN_EXPORT_COMMANDS
from tunesmith.cli.plan_export import add_parsers as add_plan_export_parsers
from tunesmith.cli.report import COMMANDS as REPORT_COMMANDS
from tunesmith.cli.report import add_parsers as add_report_parsers
from tunesmith.cli.serve import COMMANDS as SERVE_COMMANDS  # serve: cli/serve.py
from tunesmith.cli.serve import add_parser as add_serve_parser
from tunesmith.cli.tables import fail
from tunesmith.cli.tune import COMMANDS as TUNE_COMMANDS
from tunesmith.cli.tune import add_parser as add_tune_parser
from tunesmith.train.run_claim import check_output

EXIT_USER_ERROR = 2
EXIT_QUALITY_GATE = 3  # training finished, but the model failed the recipe's quality_gate


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr and exit status 2, like every other user error."""

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"error: {self.prog}: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="tunesmith", description="Fine-tune pretrained transformers on your own data.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="fine-tune a model from a YAML recipe")
    train.add_argument("recipe", help="path to the YAML recipe")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a recipe key, e.g. --set train.lr=3e-5 (repeatable)")
    train.add_argument("--output", help="run directory (overrides the recipe's output)")
    train.add_argument("--resume", action="store_true",
                       help="continue from the newest valid checkpoint in the run directory (recipe: resume: true)")
    train.add_argument("--overwrite", action="store_true",
                       help="replace a finished run in the run directory, once the new run has finished "
                            "(recipe: overwrite: true); never files tunesmith did not write")
    add_launch_arguments(train)  # --processes, --accelerate-config: cli/launch.py

    predict = commands.add_parser("predict", help="predict labels with a trained run (or several LoRA/DoRA runs "
                                                  "on one base model)")
    predict.add_argument("run", nargs="+", help="run directory written by `tunesmith train`; several LoRA/DoRA runs "
                                                "on the same base: one base in memory, their adapters switched")
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", action="append", help="a text to classify (repeatable)")
    source.add_argument("--input", help="a data file to classify (read with the run's data settings)")
    predict.add_argument("--output", help="write predictions to this .csv/.tsv/.jsonl file")
    predict.add_argument("--task", help="a multi-task run: the task to predict with (RUN/tasks/TASK)")
    _add_read_overrides(predict)

    evaluate = commands.add_parser("evaluate", help="evaluate a trained run on a labelled file")
    evaluate.add_argument("run", help="run directory written by `tunesmith train`")
    evaluate.add_argument("--data", required=True, help="labelled file (read with the run's data settings)")
    evaluate.add_argument("--output", help="write the metrics to this JSON file")
    evaluate.add_argument("--task", help="a multi-task run: the task to evaluate (RUN/tasks/TASK)")
    _add_read_overrides(evaluate)

    generate = commands.add_parser("generate", help="generate text with a causal_lm or sft run")
    generate.add_argument("run", help="run directory written by `tunesmith train` (task causal_lm or sft)")
    generate.add_argument("--prompt", action="append", required=True, help="a prompt (repeatable)")
    generate.add_argument("--max-new-tokens", type=int, default=64)
    generate.add_argument("--temperature", type=float, default=0.7, help="0: greedy decoding (default 0.7)")
    generate.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling mass (default 0.9)")
    generate.add_argument("--seed", type=int, default=0, help="the same seed gives the same text (default 0)")
    generate.add_argument("--chat", action=argparse.BooleanOptionalAction, default=None,
                          help="format the prompt as a user turn with the chat template (default: yes for sft runs)")

    add_inspect_parser(commands)  # cli/inspect.py
    add_report_parsers(commands)  # report, compare: cli/report.py
    add_plan_export_parsers(commands)  # plan, export: cli/plan_export.py
    add_tune_parser(commands)  # tune: cli/tune.py
    add_serve_parser(commands)  # serve: cli/serve.py
    add_merge_parser(commands)  # merge: cli/merge.py
    commands.add_parser("models", help="list the packaged models")
    return parser


def _add_read_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["csv", "tsv", "jsonl", "json", "parquet", "txt", "conll"],
                        help="file format, if not the run's (default: from the extension, else the run's)")
    parser.add_argument("--header", action=argparse.BooleanOptionalAction, default=None,
                        help="whether the file has a header row (default: the run's setting)")
    parser.add_argument("--text-column", help="column holding the text (name, or 0-based index without header)")
    parser.add_argument("--label-column", help="column holding the label (evaluate)")


def cmd_train(args) -> int:
    from tunesmith.cli.launch import check_launch, launch
    from tunesmith.cli.tables import print_training_summary
    from tunesmith.config.recipe import load_recipe

    overrides = list(args.overrides) + ([f"output={args.output}"] if args.output else [])
    overrides += ["resume=true"] if args.resume else []
    overrides += ["overwrite=true"] if args.overwrite else []
    recipe = load_recipe(args.recipe, overrides)  # before the heavy imports: a bad recipe fails fast
    check_output(recipe, args.recipe)  # ... and so does an output it must not write (train/run_claim.py)
    if recipe.task == "multi_task":  # one process (recipes/multi_task.py)
        return _train_multi_task(recipe, args)
    from tunesmith.train.distributed import die_with_parent, launched, main_process, world_size

    if args.processes or args.accelerate_config:  # N processes through Accelerate's launcher (cli/launch.py)
        processes, config = check_launch(args, world_size())
        if processes > 1 or config is not None:
            return launch(args, args.argv, processes)
    if launched():
        die_with_parent()  # a rank never outlives its launcher (no orphan writes RUN while a resumed run starts)

    from tunesmith.recipes.finetune import finetune

    result = finetune(recipe)
    if main_process():
        print_training_summary(result)
    verdict = result.get("verdict") or {}
    if verdict.get("gate") and not verdict.get("passed", True):  # the model is kept, marked in eval.json
        if main_process():
            fail(f"quality_gate: {'; '.join(verdict['problems'])} (model kept in {result['model_dir']}, "
                 f"eval.json verdict.passed: false)")
        return EXIT_QUALITY_GATE
    return 0


def _read_overrides(args, run) -> dict:
    columns = dict(run.recipe.data.columns)
    for role, value in (("text", args.text_column), ("label", getattr(args, "label_column", None))):
        if value is not None:
            columns[role] = int(value) if value.isdigit() else value
    return {"format": args.format, "header": args.header, "columns": columns}


def _train_multi_task(recipe, args) -> int:
    from tunesmith.cli.tables import console
    from tunesmith.errors import RecipeError
    from tunesmith.recipes.multi_task import train_multi_task

    if args.processes or args.accelerate_config:
        raise RecipeError("task: multi_task trains in one process; run it without --processes/--accelerate-config")
    result = train_multi_task(recipe)
    for name, own in result["tasks"].items():
        scores = ", ".join(f"{key} {value:.4f}" for key, value in own["validation"].items()
                           if key in ("loss", own["stop_metric"], "accuracy") and isinstance(value, float))
        console.print(f"{name} ({own['task']}) validation: {scores}; model: {own['model_dir']}")
    console.print(f"best {result['best']['metric']} {result['best']['value']:.4f} at step {result['best']['step']}; "
                  f"{result['stop_reason']}")
    return 0


def cmd_predict(args) -> int:
    from tunesmith.recipes.predict import TrainedRun, check_texts
    from tunesmith.writers import check_output_file

    check_texts(args.text or [])
    if args.output:
        check_output_file(args.output, source=args.input, table=True)  # before the model loads
    if len(args.run) > 1:
        if args.task:
            raise RunError("--task picks the task of one multi-task run; give one run directory with it")
        return _predict_switched(args)
    run = TrainedRun(args.run[0], task=args.task)
    if args.text:
        frame = run.predict_texts(args.text)
    else:
        frame = run.predict_frame(run.read(args.input, require_label=False, **_read_overrides(args, run)))
    _show_predictions(args, frame)
    return 0


def _predict_switched(args) -> int:
    """Several LoRA/DoRA runs on one base model: recipes/adapters.py."""
    from tunesmith.recipes.adapters import SwitchedRuns

    runs = SwitchedRuns(args.run)
    if args.text:
        frame = runs.predict_texts(args.text)
    else:
        frame = runs.predict_frame(runs.read(args.input, **_read_overrides(args, runs.first)))
    _show_predictions(args, frame, runs.per_run(frame))
    return 0


def _show_predictions(args, frame, per_run: dict | None = None) -> None:
    """To --output (one file: every run's columns), or one table per run on the terminal."""
    from tunesmith.cli.tables import console, print_predictions
    from tunesmith.writers import write_table

    if args.output:
        write_table(frame.drop(columns=["line"], errors="ignore"), Path(args.output))
        console.print(f"wrote {len(frame)} predictions to {args.output}")
        return
    for name, own in (per_run or {"": frame}).items():
        print_predictions(own, title=f"predictions of {name}" if name else "predictions")


def cmd_evaluate(args) -> int:
    import json

    from tunesmith.artifacts import write_text_atomic
    from tunesmith.cli.tables import console, print_evaluation
    from tunesmith.recipes.predict import TrainedRun
    from tunesmith.writers import check_output_file

    if args.output:
        check_output_file(args.output, source=args.data)  # before the model loads
    run = TrainedRun(args.run, task=args.task)
    metrics = run.evaluate_file(args.data, **_read_overrides(args, run))
    print_evaluation(args.data, metrics, run.task.summary_columns)
    if args.output:
        write_text_atomic(Path(args.output), json.dumps(metrics, indent=2) + "\n")
        console.print(f"wrote metrics to {args.output}")
    return 0


def cmd_models(args) -> int:
    from tunesmith.cli.tables import print_models
    from tunesmith.models import describe_models

    print_models(describe_models())
    return 0


def cmd_generate(args) -> int:
    from tunesmith.cli.tables import print_generations
    from tunesmith.recipes.generate import TrainedLM

    run = TrainedLM(args.run)
    texts = run.generate(args.prompt, chat=args.chat, max_new_tokens=args.max_new_tokens,
                         temperature=args.temperature, top_p=args.top_p, seed=args.seed)
    print_generations(args.prompt, texts, chat=run.chat if args.chat is None else args.chat)
    return 0


COMMANDS = {"inspect": cmd_inspect, "train": cmd_train, "predict": cmd_predict, "evaluate": cmd_evaluate, "models": cmd_models,
            "generate": cmd_generate}
COMMANDS.update(REPORT_COMMANDS)  # report, compare
COMMANDS.update(PLAN_EXPORT_COMMANDS)  # plan, export
COMMANDS.update(TUNE_COMMANDS)  # tune
COMMANDS.update(SERVE_COMMANDS)  # serve
COMMANDS.update(MERGE_COMMANDS)  # merge


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    code = _run(args)
    record_exit(code)  # a rank started by --processes tells its launcher how it ended (cli/launch.py)
    return code


def _run(args) -> int:
    from tunesmith.train.distributed import main_process, rank, world_size

    def say(message: str) -> None:  # every rank stops alike: the main process says why; another rank names itself
        fail(message if main_process() else f"rank {rank()} of {world_size()}: {message}")

    try:
        _quiet_libraries()
        return COMMANDS[args.command](args)
    except TrainingInterrupted as exc:  # SIGINT/SIGTERM during training: a checkpoint was saved (by all ranks)
        if main_process():
            fail(f"{exc}; continue with: {resume_hint(args.argv, world_size())}" if exc.resumable else str(exc))
        return exc.exit_code
    except TunesmithError as exc:
        say(str(exc))
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        say("interrupted")
        return 130


def _quiet_libraries() -> None:
    import warnings

    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # e.g. 'Writing model shards' on every save
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")


def console_main() -> int:
    """The `tunesmith` command: main() under the preferred allocator (tunesmith/allocator.py)."""
    from tunesmith.allocator import run_under_preferred_allocator

    run_under_preferred_allocator()
    return main()


if __name__ == "__main__":
    sys.exit(console_main())
