"""Multi-task vs separate runs (issue 15): one MiniLM body with two heads trained together, against one run per task.

    tasks    sst2     SST-2 sentiment: ROWS rows of train.tsv (seed 0), 400 rows of dev.tsv (seed 0) as validation
             ag_news  AG News topics (4 classes): ROWS rows of ../shared/data/ag_news/test.csv (seed 0) to train,
                      400 other rows to validate
    separate two `tunesmith train` runs (minilm, full fine-tuning, EPOCHS epochs, batch 32, max_length 64, lr 5e-5)
    multi    one `task: multi_task` run with both tasks, the same settings, multi_task.mixing MIXING: an epoch has as
             many batches as the two tasks' together, so it takes about as many optimizer steps as the separate
             runs together, through one body instead of two

Reported: each run's training seconds (evaluations excluded) and total seconds, each task's best-model validation
accuracy and macro-F1, for the separate runs and the multi-task run, for each training seed (--seeds, default
0,1,2: the data subsets stay those of seed 0), and their mean and sample sd; seconds are indicative only when no
other job shares the machine. Both sides use train.group_by_length (the default; a multi-task run groups each
task's rows inside its own batches).

    python benchmarks/multi_task.py --json benchmarks/results_cpu_multi_task.json
    python benchmarks/multi_task.py --quick --seeds 0   # a smoke run: 64 rows per task, 1 epoch, max_length 32
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from common import emit, mean_sd, require_shared  # noqa: E402

VALIDATION_ROWS = 400


def quiet(*_args, **_kwargs):
    pass


def write_rows(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def task_data(workdir: Path, rows: int, validation_rows: int) -> dict:
    """{task: its `data:` section}: the SST-2 and AG News subsets written under `workdir`."""
    sst2 = require_shared("sst2")
    train = (sst2 / "train.tsv").read_text(encoding="utf-8").splitlines()
    dev = (sst2 / "dev.tsv").read_text(encoding="utf-8").splitlines()
    train_rows, dev_rows = train[1:], dev[1:]
    random.Random(0).shuffle(train_rows)
    random.Random(0).shuffle(dev_rows)
    news = (require_shared("ag_news") / "test.csv").read_text(encoding="utf-8").splitlines()
    random.Random(0).shuffle(news)
    news_columns = {"label": 0, "text": 1}
    return {
        "sst2": {"train": str(write_rows(workdir / "sst2_train.tsv", train[0], train_rows[:rows])),
                 "validation": str(write_rows(workdir / "sst2_dev.tsv", dev[0], dev_rows[:validation_rows])),
                 "columns": {"text": "sentence", "label": "label"}},
        "ag_news": {"train": str(write_rows(workdir / "news_train.csv", "label,title,description", news[:rows])),
                    "validation": str(write_rows(workdir / "news_dev.csv", "label,title,description",
                                                 news[rows:rows + validation_rows])),
                    "columns": {"label": "label", "text": "title"}},
    }


def shared_settings(args) -> dict:
    return {"model": "minilm",
            "train": {"epochs": args.epochs, "batch_size": 32, "eval_batch_size": 64, "max_length": args.max_length,
                      "lr": 5e-5, "seed": args.seed, "early_stopping": {"metric": "accuracy"}}}


def scores(metrics: dict) -> dict:
    return {"accuracy": round(metrics["accuracy"], 4), "macro_f1": round(metrics["macro_f1"], 4)}


def separate_runs(data: dict, workdir: Path, args) -> dict:
    from tunesmith.config.recipe import validate_recipe
    from tunesmith.recipes.finetune import finetune

    out = {}
    for name, spec in data.items():
        raw = {**shared_settings(args), "data": spec, "baselines": False, "preflight": {"enabled": False},
               "report": {"html": False}, "output": str(workdir / f"separate_{name}_{args.seed}")}
        result = finetune(validate_recipe(raw), echo=quiet)
        out[name] = {"train_s": result["timing"]["train_s"], "total_s": result["timing"]["total_s"],
                     "steps": result["steps"], "validation": scores(result["validation"])}
    return out


def multi_task_run(data: dict, workdir: Path, args) -> dict:
    from tunesmith.config.recipe import validate_recipe
    from tunesmith.recipes.multi_task import train_multi_task

    settings = shared_settings(args)
    settings["train"]["early_stopping"] = {"metric": "mean"}
    raw = {**settings, "task": "multi_task", "multi_task": {"mixing": args.mixing},
           "tasks": {name: {"task": "classification", "data": spec, "metric": "accuracy"} for name, spec in data.items()},
           "output": str(workdir / f"multi_{args.seed}")}
    result = train_multi_task(validate_recipe(raw), echo=quiet)
    return {"train_s": result["timing"]["train_s"], "total_s": result["timing"]["total_s"], "steps": result["steps"],
            "mixing": result["mixing"],
            "validation": {name: scores(own["validation"]) for name, own in result["tasks"].items()}}


def summarize(runs: list[dict], tasks: list[str]) -> dict:
    """Mean and sample sd over the seeds: training seconds, and each task's accuracy, separate vs multi-task."""
    summary = {"separate_train_s": mean_sd([r["separate"]["train_s_total"] for r in runs]),
               "multi_task_train_s": mean_sd([r["multi_task"]["train_s"] for r in runs])}
    for name in tasks:
        separate = [r["separate"][name]["validation"]["accuracy"] for r in runs]
        multi = [r["multi_task"]["validation"][name]["accuracy"] for r in runs]
        summary[name] = {"separate_accuracy": mean_sd(separate), "multi_task_accuracy": mean_sd(multi),
                         "multi_minus_separate_points": round(100 * (statistics.mean(multi) - statistics.mean(separate)), 2)}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="training rows per task")
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--mixing", default="proportional", choices=("proportional", "temperature", "equal"))
    parser.add_argument("--quick", action="store_true", help="smoke run: 64 rows per task, 1 epoch, max_length 32")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds (the data subsets stay those of seed 0)")
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args()
    validation_rows = VALIDATION_ROWS
    if args.quick:
        args.rows, args.epochs, args.max_length, validation_rows = 64, 1, 32, 64
    seeds = [int(x) for x in args.seeds.split(",")]
    per_seed = []
    with tempfile.TemporaryDirectory(prefix="multi_task_bench_") as tmp:
        workdir = Path(tmp)
        data = task_data(workdir, args.rows, validation_rows)
        for seed in seeds:
            args.seed = seed
            separate = separate_runs(data, workdir, args)
            multi = multi_task_run(data, workdir, args)
            per_seed.append({
                "seed": seed,
                "separate": {**separate, "train_s_total": round(sum(r["train_s"] for r in separate.values()), 2),
                             "total_s": round(sum(r["total_s"] for r in separate.values()), 2)},
                "multi_task": multi})
            emit(per_seed[-1])
    result = {
        "benchmark": "multi_task", "quick": args.quick, "rows_per_task": args.rows, "epochs": args.epochs,
        "max_length": args.max_length, "mixing": args.mixing, "seeds": seeds, "runs": per_seed,
        "summary": summarize(per_seed, list(data)),
    }
    emit(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
