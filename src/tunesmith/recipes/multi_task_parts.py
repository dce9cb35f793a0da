"""The pieces of a multi-task run (recipes/multi_task.py) that read the recipe: each task's own recipe, the
early-stopping metric over the tasks, and one evaluation of every task."""

from __future__ import annotations

import math
from pathlib import Path

from tunesmith.config.multi_task import NOT_SUPPORTED
from tunesmith.config.recipe import validate_recipe
from tunesmith.errors import RecipeError
from tunesmith.tasks import make_task

TASK_SECTIONS = ("imbalance", "regression", "multi_label")  # what a task's part may set of its own
STOP_CHOICES = "'mean' (of each task's own metric), 'loss' (the mean of the tasks' losses) or TASK.METRIC"


def sub_recipes(recipe) -> dict:
    """{task name: its recipe}: the shared top level (model, method, train, checkpoint, ...) with the task's
    task, data, sections and early-stopping metric; output RUN/tasks/<name>. Each is validated as a recipe
    of its own, so its errors name `tasks.<name>`."""
    out = {}
    for name, entry in recipe.tasks.items():
        raw = recipe.model_dump(mode="json", exclude={"tasks", "multi_task", *NOT_SUPPORTED})
        raw["train"].pop("group_by_length", None)
        raw["train"]["early_stopping"] = {"metric": entry.get("metric")}
        raw.update(task=entry["task"], data=entry["data"], output=str(Path(recipe.output) / "tasks" / name),
                   resume=False, overwrite=False)
        raw.update({key: entry[key] for key in TASK_SECTIONS if key in entry})
        out[name] = validate_recipe(raw, source=f"tasks.{name}")
    return out


def make_tasks(recipe) -> dict:
    """{name: Task} of every task of the recipe (each task's stop metric checked against its task)."""
    tasks = {}
    for name, sub in sub_recipes(recipe).items():
        try:
            tasks[name] = make_task(sub)
        except RecipeError as exc:
            raise RecipeError(f"tasks.{name}: {exc}") from None
    return tasks


def stop_metric(recipe, tasks: dict) -> tuple[str, str]:
    """(metric, mode) that early stopping and the best model follow: train.early_stopping.metric, default mean."""
    metric = recipe.train.early_stopping.metric or "mean"
    if metric == "loss":
        return metric, "min"
    if metric == "mean":
        modes = {name: task.metric_mode(task.stop_metric) for name, task in tasks.items()}
        if len(set(modes.values())) > 1:
            listed = ", ".join(f"{name} {tasks[name].stop_metric} ({mode})" for name, mode in modes.items())
            raise RecipeError(f"train.early_stopping.metric: mean: the tasks' metrics do not all improve the same "
                              f"way ({listed}); choose {STOP_CHOICES}")
        return metric, next(iter(modes.values()))
    name, _, own = metric.partition(".")
    if name not in tasks or own not in tasks[name].metric_names:
        raise RecipeError(f"train.early_stopping.metric: '{metric}' is not a metric of this multi-task recipe; "
                          f"choose {STOP_CHOICES} (tasks: {', '.join(tasks)})")
    return metric, tasks[name].metric_mode(own)


def evaluate_tasks(tasks: dict, model, loaders: dict, accelerator, split: str, metric: str) -> dict:
    """{task: its metrics on `split`, "mean": the mean of each task's stop metric, "loss": the mean loss}, and the
    TASK.METRIC early stopping follows (when it names one) at the top."""
    out = {name: task.evaluate(model.models[name], loaders[name][split], accelerator, desc=f"{name} {split}")
           for name, task in tasks.items() if split in loaders[name]}
    if not out:
        return {}
    out["mean"] = mean([out[name].get(tasks[name].stop_metric) for name in tasks if name in out])
    out["loss"] = mean([out[name].get("loss") for name in tasks if name in out])
    name, _, own = metric.partition(".")
    if own and name in out:
        out[metric] = out[name].get(own)
    return out


def mean(values: list) -> float | None:
    """The mean of the finite values, None when one is missing or not finite (the loop then stops the run)."""
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    return sum(values) / len(values)
