"""Use a finished run: predict for new texts, or evaluate on a new labelled file (any task whose
`inference` is "predict"; causal_lm / sft runs are used with recipes/generate.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from tunesmith.artifacts import RunDir
from tunesmith.config.multi_task import MULTI_TASK
from tunesmith.config.recipe import load_recipe
from tunesmith.errors import DataError, RunError
from tunesmith.models import check_weights_safe
from tunesmith.models.exported import is_export_dir, load_export, read_manifest
from tunesmith.tasks import make_task
from tunesmith.train.precision import make_accelerator


def check_texts(texts: list[str]) -> None:
    """Refuse an empty or whitespace-only --text (training refuses empty texts too)."""
    for number, text in enumerate(texts, 1):
        if not text.strip():
            raise DataError(f"--text number {number} is empty: give a text to classify")


def read_run_recipe(run: RunDir):
    if not run.recipe_path.is_file():
        raise RunError(f"{run.path}: recipe.yaml is missing; is this a tunesmith run directory?")
    return load_recipe(run.recipe_path)


@torch.no_grad()
def prediction_columns(task, model, tokenizer, frame: pd.DataFrame, batch_size: int = 64) -> dict:
    """{column: values}: the task's predictions for the frame's rows, in order, in eval mode."""
    model.eval()  # task.evaluate (evaluate_file) hands the model back in train mode: no dropout here
    dataset = task.encode(frame, tokenizer, with_labels=False)
    loader = task.make_loader(dataset, tokenizer, batch_size=batch_size, order="sequential")
    return task.predictions(model, loader)


def task_run_path(path: str | Path, task: str | None) -> Path:
    """The run directory to load: `path` itself, or a multi-task run's RUN/tasks/<task> (--task)."""
    run = RunDir(path)
    recipe = read_run_recipe(run) if run.recipe_path.is_file() else None
    if recipe is None or recipe.task != MULTI_TASK:
        if task is not None:
            raise RunError(f"{run.path} is not a multi-task run: --task {task} does not apply (remove --task)")
        return run.path
    names = ", ".join(recipe.tasks)
    if task is None:
        raise RunError(f"{run.path} is a multi-task run: choose a task with --task NAME ({names}), or give the "
                       f"task's run directory {run.path}/tasks/NAME")
    if task not in recipe.tasks:
        raise RunError(f"{run.path}: no task '{task}' in this multi-task run; its tasks are {names}")
    return run.path / "tasks" / task


class TrainedRun:
    """A run (or export) directory loaded for inference: its recipe, task, model and tokenizer; `task` names
    the task of a multi-task run (RUN/tasks/<task> is a run directory of its own)."""

    def __init__(self, path: str | Path, task: str | None = None):
        self.run = RunDir(task_run_path(path, task))
        self.export = read_manifest(path) if is_export_dir(path) else None  # a `tunesmith export` directory
        model_dir = self.run.path if self.export else self.run.require_model()
        self.recipe = read_run_recipe(self.run)
        self.task = make_task(self.recipe)
        if self.task.inference != "predict":
            raise RunError(f"{self.run.path} is a {self.recipe.task} run: use tunesmith {self.task.inference} "
                           f"{self.run.path}")
        if self.export:  # merged: a plain HF model; onnx / int8: run by onnxruntime
            self.model, self.tokenizer = load_export(model_dir, self.recipe.trust_remote_code)
        else:
            check_weights_safe(model_dir, allow_pickle=self.recipe.allow_pickle)
            self.model, self.tokenizer = self.task.load_trained(model_dir)
        self.model.eval()
        self.task.use_trained(self.model)
        self.task.fit_max_length(self.model.config)  # cut long texts as training did: at most the positions

    def predict_frame(self, frame: pd.DataFrame, batch_size: int = 64) -> pd.DataFrame:
        """The frame with the task's prediction columns (classification: `prediction`, `prob_<label>`)."""
        out = frame.copy()
        for column, values in prediction_columns(self.task, self.model, self.tokenizer, frame, batch_size).items():
            out[column] = values
        return out

    def predict_texts(self, texts: list[str], pairs: list[str] | None = None) -> pd.DataFrame:
        frame = pd.DataFrame({"text": texts})
        if pairs is not None:
            frame["text_pair"] = pairs
        return self.predict_frame(frame)

    def read(self, path: str, *, require_label: bool, **overrides) -> pd.DataFrame:
        """Read a file with the run's data settings (format, header, columns), optionally overridden."""
        spec = self.recipe.data.model_copy(update={k: v for k, v in overrides.items() if v is not None})
        frame = self.task.read_rows(spec, path, labelled=require_label)
        frame.attrs["source"] = str(path)  # errors about its rows name the file
        return frame

    def evaluate_file(self, path: str, batch_size: int = 64, **overrides) -> dict:
        frame = self.read(path, require_label=True, **overrides)
        dataset = self.task.encode(frame, self.tokenizer)  # unknown labels: a clear error naming the line
        loader = self.task.make_loader(dataset, self.tokenizer, batch_size=batch_size, order="by_length")
        accelerator = make_accelerator("fp32", cpu=not torch.cuda.is_available())
        model, loader = accelerator.prepare(self.model, loader)
        return self.task.evaluate(model, loader, accelerator, desc="evaluate")
