"""`tunesmith merge RUN_A RUN_B ... --output DIR [--combination svd] [--weights 1,1] [--density d] [--max-drop x]`.

Merges the LoRA adapters of finished runs on one base model into one adapter with PEFT's add_weighted_adapter
(methods/adapter_merge.py: the body matrices are merged; every task keeps its own head), then re-evaluates the
merged adapter on each source run's validation set, rebuilt from its recipe as `tunesmith export` does, against
that run's own model (RUN/model): the metric before and after, the share of equal predictions, the largest
logit difference (export/report.py). OUT holds:

    merge.json            sources, combination, weights, density, base, rank, and the per-task quality table
    tasks/<name>/         one run-like directory per source task: recipe.yaml (the source's), adapter/ (the
                          merged body + this task's head: a PEFT adapter on the base), model/ (that adapter
                          merged into the base: a plain Hugging Face model, with the source's config.json)

`tunesmith predict OUT/tasks/<name>` uses one task; `tunesmith predict OUT/tasks/a OUT/tasks/b` switches them on
one base. With `max_drop`, a merge where any task's metric drops more is refused: nothing is written at OUT, the
report is kept as OUT.rejected.json, and MergeRefused (exit status 2) names the task. OUT is written to a
temporary directory beside it and swapped in whole.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path

from tunesmith.artifacts import RunDir, replace_dir
from tunesmith.errors import DataError, RunError, TunesmithError
from tunesmith.export import report as rep
from tunesmith.methods.adapter_bank import check_shared_base
from tunesmith.methods.adapter_merge import check_merge, merge_bodies, write_task_adapter
from tunesmith.methods.adapters import read_saved_adapter
from tunesmith.methods.lora import load_adapter_model
from tunesmith.models import quiet_transformers
from tunesmith.recipes.adapters import run_names
from tunesmith.recipes.predict import TrainedRun, read_run_recipe
from tunesmith.tasks import task_class

MANIFEST = "merge.json"
LATENCY_EXAMPLES = 8  # the quality table is the point; export/report.py's latency pass is kept short


class MergeRefused(TunesmithError):
    """A task's metric dropped more than --max-drop allows after the merge."""


def merge_runs(paths: list, *, output, combination: str = "svd", weights: list[float] | None = None,
               density: float | None = None, max_drop: float | None = None, echo=print,
               show=lambda report: None) -> dict:
    """Merge the runs' adapters, re-evaluate per task, write OUT; return the report (`show` prints it)."""
    if len(paths) < 2:
        raise RunError("tunesmith merge needs two runs or more")
    if max_drop is not None and not (math.isfinite(max_drop) and max_drop >= 0):
        raise RunError(f"--max-drop must be a finite number >= 0 (got {max_drop})")
    names = run_names(paths)
    recipes = [read_run_recipe(RunDir(path)) for path in paths]
    for path, recipe in zip(paths, recipes):
        if not task_class(recipe.task).exportable:  # the re-evaluation is export's: the tasks it is written for
            raise RunError(f"{path} is a {recipe.task} run: tunesmith merge re-evaluates classification, "
                           f"multi_label and token_classification runs")
    adapters = [read_saved_adapter(path) for path in paths]
    weights = [1.0] * len(paths) if weights is None else list(weights)
    check_merge(adapters, combination, weights, density)
    out = Path(output)
    check_output(out)
    base_sha256 = check_shared_base(adapters)
    trust = any(recipe.trust_remote_code for recipe in recipes)

    echo(f"merging {len(paths)} adapters ({combination}, weights {', '.join(f'{w:g}' for w in weights)}) ...")
    body = merge_bodies(adapters, weights, combination, density, trust_remote_code=trust)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        tasks = {}
        for name, path, adapter in zip(names, paths, adapters):
            task_dir = staging / "tasks" / name
            write_task_dir(task_dir, body, adapter)
            merged, tokenizer = load_adapter_model(task_dir, trust_remote_code=trust)  # as predict loads it
            echo(f"re-evaluating {name} on its validation set: {path} (RUN/model), then the merged adapter ...")
            tasks[name] = evaluate_task(Path(path), merged, tokenizer, max_drop)
            write_merged_model(task_dir, merged, tokenizer, Path(path))
        report = {
            "sources": [str(Path(p).resolve()) for p in paths], "names": names, "combination": combination,
            "weights": weights, "density": density, "rank": body.rank, "output": str(out),
            "base": {"path": str(adapters[0].base_dir), "weights_sha256": base_sha256},
            "max_drop": max_drop, "passed": all(row["passed"] for row in tasks.values()), "tasks": tasks,
        }
        (staging / MANIFEST).write_text(json.dumps(report, indent=2) + "\n")
        if not report["passed"]:
            refuse(report, staging, out, show)
        replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    show(report)
    echo(f"wrote {out} (report: {out / MANIFEST}); use it with: tunesmith predict "
         f"{' '.join(str(out / 'tasks' / n) for n in names)} --text ...")
    return report


def write_task_dir(task_dir: Path, body, adapter) -> None:
    """recipe.yaml and model/config.json of the source (labels, threshold), adapter/: merged body + its head."""
    (task_dir / "model").mkdir(parents=True)
    shutil.copy2(adapter.run / "recipe.yaml", task_dir / "recipe.yaml")
    shutil.copy2(adapter.run / "model" / "config.json", task_dir / "model" / "config.json")
    write_task_adapter(task_dir / "adapter", body, adapter)


def evaluate_task(source: Path, merged, tokenizer, max_drop: float | None) -> dict:
    """The source's validation set scored by its RUN/model and by `merged` (the merged adapter with its head)."""
    reference = TrainedRun(source)
    task = reference.task
    try:
        splits = task.load_data()
    except DataError as exc:
        raise DataError(f"{exc} (merge re-evaluates on each run's validation set, rebuilt from the data: section "
                        f"of {reference.run.recipe_path}; its paths are relative to where tunesmith runs)") from None
    task.use_trained(reference.model)
    dataset = task.encode(splits.validation, reference.tokenizer)
    limits = {"eval_batch": reference.recipe.train.eval_batch_size or reference.recipe.train.batch_size * 2,
              "latency_examples": LATENCY_EXAMPLES, "throughput_examples": len(dataset)}
    before = rep.measure(reference.model, task, dataset, reference.tokenizer, **limits)
    after = rep.measure(merged, task, dataset, tokenizer, **limits)
    metric = task.stop_metric
    verdict = rep.compare(before, after, metric=metric, mode=task.metric_mode(metric), max_drop=max_drop,
                          decisions=task.decisions)
    return {"source": str(source), "task": reference.recipe.task, "metric": metric, "examples": len(dataset),
            "source_metrics": before["metrics"], "merged_metrics": after["metrics"], **verdict}


def write_merged_model(task_dir: Path, model, tokenizer, source: Path) -> None:
    """model/: the task's merged adapter (`model`) merged into the base, as a LoRA run's RUN/model is written."""
    with quiet_transformers():
        model.merge_and_unload().save_pretrained(task_dir / "model", safe_serialization=True)
    tokenizer.save_pretrained(task_dir / "model")
    shutil.copy2(source / "model" / "config.json", task_dir / "model" / "config.json")  # label map, threshold


def refuse(report: dict, staging: Path, out: Path, show) -> None:
    rejected = out.with_name(out.name + ".rejected.json")
    rejected.write_text(json.dumps(report, indent=2) + "\n")
    shutil.rmtree(staging, ignore_errors=True)
    show(report)
    name, row = next((n, r) for n, r in report["tasks"].items() if not r["passed"])
    metric = row["metric"]
    raise MergeRefused(
        f"merge refused: {name}'s validation {metric} drops by {row['drop']:.4f} ({row['source_metrics'][metric]:.4f} "
        f"-> {row['merged_metrics'][metric]:.4f}), more than --max-drop {report['max_drop']:g}; nothing written to "
        f"{out}; report in {rejected}")


def check_output(out: Path) -> None:
    if out.exists() and not (out.is_dir() and ((out / MANIFEST).is_file() or not any(out.iterdir()))):
        raise RunError(f"--output {out} exists and is not a merge directory: choose a new path")
