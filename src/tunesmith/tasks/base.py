"""The task contract: every hook a recipe (finetune, plan, predict, evaluate, export, inspect) calls on a task.

A task family is one module with one `Task` subclass, plus one line in `tasks/__init__.py`'s TASKS. The
recipes never ask which task they run and never probe a task with getattr/hasattr: they call the hooks
below, each declared here, abstract where every task must answer, with a default where one makes sense.

Life of a task object in `tunesmith train` (recipes/finetune.py):

    task = make_task(recipe)                 # reads the recipe, never writes it; derives what it needs
    splits = task.load_data()                # read, validate, split: before any model loads
    task.describe_splits(splits)
    model, tokenizer = task.load_model(dir)  # the pretrained body with this task's head
    task.inspect_data(splits, tokenizer)     # diagnostics; may stop the run (DataError)
    encoded = task.encode(frame, tokenizer)  # per split (cached on disk by encode_settings)
    loader = task.make_loader(...); loader = task.train_loader(loader, ...)   # e.g. re-sampling
    task.before_training(...)                # e.g. the pretrained model's perplexity
    loss = task.compute_loss(model, batch)   # every step
    metrics = task.evaluate(model, loader, accelerator)   # every evaluation; metric_mode() orders them
    task.after_training(model, loader, accelerator, run)  # e.g. decision threshold tuned on validation
    task.baselines(split_names); task.extra_results(...); task.save_artifacts(run)

Using a finished run (recipes/predict.py): `task.load_trained(dir)` then `task.use_trained(model)` restore
what training saved in the model config (labels, thresholds, target scaling); `task.predictions(...)`.

`task.recipe` is the validated recipe, read-only; `task.resolved_recipe()` is the copy saved as
RUN/recipe.yaml, with what the task derived (the early-stopping metric, columns found in the file).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np
from tqdm.auto import tqdm

from tunesmith.data.encode import make_loader
from tunesmith.data.prepare import read_labelled
from tunesmith.errors import RecipeError
from tunesmith.models.checks import position_limit
from tunesmith.models.parent_run import choose_head, find_parent_run


class Task(ABC):
    name: ClassVar[str]
    metric_names: ClassVar[tuple[str, ...]]  # what evaluate() returns and early stopping may use
    default_metric: ClassVar[str]  # the early-stopping metric when the recipe names none
    bounded_metrics: ClassVar[tuple[str, ...]] = ()  # metrics that live in [0, 1] (a target above 1 is a typo)
    summary_columns: ClassVar[tuple[str, ...]] = ("loss",)  # the metrics the terminal and report tables show
    inference: ClassVar[str] = "predict"  # how a finished run is used: "predict" (labels, values) or "generate"
    exportable: ClassVar[bool] = False  # tunesmith export (merged / onnx / int8, re-evaluated) supports it
    random_held_out: ClassVar[str | None] = None  # what the rows hold, when a held-out fraction is drawn at random
    # (no classes to stratify by): `stratify: true` written in the recipe is refused (check_random_held_out)
    saves_final_outputs: ClassVar[bool] = False  # save_artifacts writes what the final evaluation pass computed
    # (kept by evaluate), so that pass over the validation set is never replaced by the best step's metrics

    def __init__(self, recipe):
        self.recipe = recipe
        self.stop_metric = self.choose_stop_metric(recipe.train.early_stopping)
        self.max_length = recipe.train.max_length  # tokens an example is cut to; see fit_max_length
        self.position_limit: int | None = None  # the model's, once fit_max_length has seen its config
        self.parent = None  # model: names a finished run: its ParentRun (models/parent_run.py), set by start_head
        self.head_start: str | None = None  # then "kept" or "new": how this run's head started

    # ---- the recipe -------------------------------------------------------------------------
    def choose_stop_metric(self, stop) -> str:
        """The early-stopping metric: the recipe's if it names one this task computes, else the default."""
        metric = stop.metric or self.default_metric
        if metric not in self.metric_names:
            raise RecipeError(f"train.early_stopping.metric: '{metric}' is not a {self.name} metric; "
                              f"choose one of {', '.join(self.metric_names)}")
        if stop.target is not None and metric in self.bounded_metrics and not 0 <= stop.target <= 1:
            raise RecipeError(f"train.early_stopping.target: {stop.target:g} can never be reached: {metric} lies "
                              f"between 0 and 1; give a target in [0, 1] (e.g. 0.9), or none")
        return metric

    def derived_settings(self) -> dict:
        """Recipe keys the task resolved itself, as {"section.key": value}; saved in RUN/recipe.yaml."""
        derived = {"train.early_stopping.metric": self.stop_metric, "train.max_length": self.max_length}
        if self.random_held_out:  # RUN/recipe.yaml says how the split was drawn, so export can rebuild it
            derived["data.validation.stratify"] = False
        return derived

    def check_random_held_out(self) -> None:
        """A task without classes draws its held-out fraction at random: `stratify: true` written is refused."""
        held_out = self.recipe.data.validation
        if held_out.split is not None and held_out.stratify and "stratify" in held_out.model_fields_set:
            raise RecipeError(f"data.validation.stratify: {self.random_held_out} are not classes to stratify by; the "
                              f"held-out rows are drawn at random (remove stratify, or set it to false)")

    def fit_max_length(self, config, *, announce: bool = False) -> int:
        """Examples are cut to train.max_length tokens, or to the model's positions when it has fewer (as
        Hugging Face's run_glue clamps max_seq_length); `announce` prints a note when it does. Training,
        predict, evaluate and export all cut this way; the recipe itself is left as it is."""
        asked = self.recipe.train.max_length
        self.position_limit = position_limit(config)
        self.max_length = min(asked, self.position_limit or asked)
        if announce and self.max_length < asked:
            tqdm.write(f"note: train.max_length {asked} is more than {self.recipe.model}'s {self.position_limit} "
                       f"positions: using {self.max_length}")
        return self.max_length

    def length_summary(self) -> dict:
        """eval.json "max_length": asked for, used (lower when the model has fewer positions), the model's."""
        return {"asked": self.recipe.train.max_length, "used": self.max_length, "model_positions": self.position_limit}

    def resolved_recipe(self):
        """A copy of the recipe with `derived_settings` filled in (the validated recipe is left as it was)."""
        raw = self.recipe.model_dump(mode="json")
        for dotted, value in self.derived_settings().items():
            node = raw
            *parents, last = dotted.split(".")
            for part in parents:
                node = node[part]
            node[last] = value
        return type(self.recipe).model_validate(raw)

    # ---- data -------------------------------------------------------------------------------
    @abstractmethod
    def load_data(self):
        """Read, validate and split the recipe's data; return an object with `frames()` ({split: DataFrame},
        train first), `train`, `validation`, `sources` ({split: file}) and `notes` (lines to print)."""

    def read_rows(self, spec, path: str, *, labelled: bool):
        """One file read with the recipe's data settings `spec` (predict: labelled=False; evaluate: True)."""
        return read_labelled(spec, path, require_label=labelled)

    def describe_splits(self, splits) -> str:
        """One line on the data, printed before the model loads."""
        counts = ", ".join(f"{name} {len(frame)}" for name, frame in splits.frames().items())
        return f"data: {counts} rows"

    def inspect_data(self, splits, tokenizer, echo) -> None:
        """Diagnose the splits before training (print findings; raise DataError to stop the run)."""

    def inspect_recipe(self, *, tokens: bool = True):
        """`tunesmith inspect RECIPE`: the diagnostics of the data as `train` builds it; an object with
        to_dict() and of(severity) that cli/tables.print_inspection draws."""
        raise RecipeError(f"tunesmith inspect covers classification and regression recipes, not {self.name}")

    def inspect_summary(self) -> dict | None:
        """What inspect_data found, for eval.json ("inspect") and RUN/inspect.json; None when it did not run."""
        return None

    # ---- model ------------------------------------------------------------------------------
    @abstractmethod
    def load_model(self, model_dir: Path):
        """(model, tokenizer): the pretrained model with this task's head, in fp32."""

    def start_head(self, id2label: dict | None = None) -> str | None:
        """For load_model: when `model:` names a finished run, how the head (with `id2label`; None: the
        language-model head) starts, by init.head: "kept" or "new" (models/parent_run.py: choose_head); None
        for a pretrained model."""
        self.parent = find_parent_run(self.recipe.model)
        self.head_start = choose_head(self.parent, self.recipe.init, self.name, id2label, self.recipe.model)
        return self.head_start

    def lineage(self) -> dict | None:
        """eval.json "lineage": the run this one started from (path, recipe hash, task, metrics, head), or None."""
        return self.parent.lineage(self.head_start) if self.parent is not None else None

    @abstractmethod
    def load_trained(self, model_dir: Path):
        """(model, tokenizer) of a finished run's RUN/model (the head as trained)."""

    def use_trained(self, model) -> None:
        """Restore from a trained model's config what training stored there (labels, threshold, scaling)."""

    # ---- encoding and batching -------------------------------------------------------------
    @abstractmethod
    def encode(self, frame, tokenizer, *, with_labels: bool = True):
        """One split's rows -> an EncodedDataset (data/encode.py) of token ids (and labels)."""

    def encode_settings(self, tokenizer) -> dict | None:
        """Everything besides the rows and the tokenizer that changes what `encode` returns, as a JSON-able
        dict: part of the token cache key (data/token_cache.py). None: never cached."""
        return None

    def encode_extras(self, split: str) -> dict:
        """JSON-able notes `encode` kept about this split, saved with the cached features."""
        return {}

    def restore_encode_extras(self, split: str, extras: dict) -> None:
        """A cache hit: put back what `encode` would have noted about this split."""

    def make_loader(self, dataset, tokenizer, *, batch_size: int, order: str, seed: int = 0):
        """Batches of the encoded data (default: dynamic padding with the tokenizer)."""
        return make_loader(dataset, tokenizer, batch_size=batch_size, order=order, seed=seed)

    def train_loader(self, loader, dataset, frame, tokenizer, echo):
        """The training loader as the task wants it drawn (default: `loader` itself)."""
        return loader

    # ---- training and evaluation ------------------------------------------------------------
    @abstractmethod
    def compute_loss(self, model, batch):
        """The training loss of one batch (a scalar tensor)."""

    @abstractmethod
    def metric_mode(self, name: str) -> str:
        """'max' when a larger value of the metric is better, else 'min'."""

    @abstractmethod
    def evaluate(self, model, loader, accelerator, *, desc: str = "eval") -> dict:
        """Metrics over a labelled loader (every example once: gather_for_metrics)."""

    def before_training(self, model, tokenizer, eval_loaders: dict, accelerator, *, train_data=None) -> None:
        """Measure the model before any step (LM tasks: pretrained perplexity and generations; dpo: the reference
        model's log-probs of the held-out pairs, and with `train_data` (the encoded training split) its pairs')."""

    def after_training(self, model, validation_loader, accelerator, run, echo) -> bool:
        """The best model is loaded, before the final evaluations (classification: tune the threshold). True when
        it changed how predictions are decided, so the validation metrics of the best step no longer stand."""
        return False

    # ---- results ----------------------------------------------------------------------------
    def baselines(self, split_names: list[str]) -> dict:
        """Reference points per held-out split: {split: {baseline: metrics}} (the scratch run is the recipe's)."""
        return {}

    def extra_results(self, model, tokenizer, accelerator) -> dict:
        """More keys for eval.json after training."""
        return {}

    def save_artifacts(self, run, model, eval_loaders: dict, accelerator) -> None:
        """Files of the task's own in the run directory (inspect.json, predictions for the report)."""

    # ---- using a finished run ---------------------------------------------------------------
    def decisions(self, logits: np.ndarray) -> np.ndarray:
        """What rows of raw model outputs decide (export's prediction agreement): the argmax class by default."""
        return np.asarray(logits).argmax(-1)

    def predictions(self, model, loader) -> dict:
        """Columns to add to the input rows: {"prediction": [...], ...} (inference == "predict")."""
        raise NotImplementedError(f"{self.name} runs are used with tunesmith generate")
