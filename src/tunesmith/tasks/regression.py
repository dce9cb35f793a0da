"""Regression: a text (or text pair) -> one or several real numbers (STS-B similarity, ratings, scores).

- Data: `data.columns.label` names the numeric target column, or lists several (data/target_splits.py);
  each bad value is one DataError naming the file and line, before any model loads.
- Model: AutoModelForSequenceClassification with `problem_type: regression` and one output per target.
- Targets are standardised on the training split (`regression.standardize`); the scaling is stored in the
  model config (`tunesmith_target_scaling`), so predictions and metrics are in the user's units.
- Loss: `regression.loss` mse (default), huber or l1, on the standardised targets.
- Metrics: Pearson, Spearman, MSE, RMSE, MAE, R² (mean over targets; per target when there are several).
- Baselines: the training mean, and TF-IDF + ridge regression (alpha by cross-validation).
- The report draws predicted-vs-true and residuals from RUN/predictions_<split>.csv.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tunesmith.artifacts import write_text_atomic
from tunesmith.baselines.regression import regression_baselines, texts_for_regression
from tunesmith.data.encode import EncodedDataset
from tunesmith.data.prepare import read_with_spec
from tunesmith.data.target_splits import TargetSplits, load_target_splits, read_targets_file, target_columns
from tunesmith.data.target_stats import inspect_target_splits
from tunesmith.data.targets import CONFIG_KEY, TargetScaler, parse_targets
from tunesmith.errors import RecipeError
from tunesmith.evaluation.regression import METRIC_NAMES, metric_mode, regression_metrics
from tunesmith.evaluation.regression_losses import regression_loss
from tunesmith.models import load_for_classification
from tunesmith.tasks.sequence import SequenceTask, outputs_of


class RegressionTask(SequenceTask):
    name = "regression"
    metric_names = METRIC_NAMES
    default_metric = "pearson"
    summary_columns = ("loss", "pearson", "spearman", "rmse", "mae", "r2")
    random_held_out = "regression targets"
    saves_final_outputs = True  # predictions_<split> files: the final evaluation's (self.newest)

    def __init__(self, recipe):
        super().__init__(recipe)
        self.spec = recipe.regression
        self.splits: TargetSplits | None = None
        _, self.roles, self.names = target_columns(recipe.data)  # frame columns target_0..K-1, user names
        self.newest: dict[int, tuple] = {}  # id(loader) -> its newest evaluation's (predictions, gold values)
        self.scaler: TargetScaler | None = None
        self.inspection = None  # TargetInspection (data/target_stats.py)
        self._baselines: dict | None = None

    # ---- data -------------------------------------------------------------------------------
    def load_data(self) -> TargetSplits:
        if self.spec.symmetric_pairs and "text_pair" not in self.recipe.data.columns:
            raise RecipeError("regression.symmetric_pairs: swaps the two texts of a pair, but data.columns has no "
                              "text_pair")
        self.check_random_held_out()
        self.splits = load_target_splits(self.recipe.data, seed=self.recipe.train.seed)
        self.names = self.splits.names
        y = self.splits.y["train"]
        self.scaler = (TargetScaler.fit(y, self.names) if self.spec.standardize
                       else TargetScaler(tuple(self.names), (0.0,) * len(self.names), (1.0,) * len(self.names)))
        return self.splits

    def describe_splits(self, splits) -> str:
        ranges = ", ".join(f"{name} {y.min():g} to {y.max():g}" for name, y in zip(splits.names, splits.y["train"].T))
        return f"{super().describe_splits(splits)}; target{'s' if len(splits.names) > 1 else ''}: {ranges} (train)"

    def inspect_data(self, splits, tokenizer, echo) -> None:
        """The target's distribution per split and its outliers (data/target_stats.py)."""
        if not self.recipe.inspect.enabled:
            return
        self.inspection = inspect_target_splits(splits)
        for outlier in self.inspection.outliers:
            echo(f"note: [target_outliers] {outlier['text']}")

    def inspect_summary(self) -> dict | None:
        return None if self.inspection is None else {"targets": self.inspection.targets,
                                                     "outliers": len(self.inspection.outliers)}

    def inspect_recipe(self, *, tokens: bool = True):
        return inspect_target_splits(self.load_data())

    def encode(self, frame, tokenizer, *, with_labels: bool = True) -> EncodedDataset:
        labels = None
        if with_labels:
            y = parse_targets(frame, self.roles, source=frame.attrs.get("source", "data"), names=self.names,
                              fit=False)
            labels = self.scaler.transform(y).astype(np.float32).tolist()
        return self.encode_rows(frame, tokenizer, labels)

    def read_rows(self, spec, path: str, *, labelled: bool):
        if labelled:
            return read_targets_file(spec, path)[0]
        columns = {role: column for role, column in target_columns(spec)[0].items() if role not in self.roles}
        return read_with_spec(spec, path, columns=columns, required=("text",))

    def train_loader(self, loader, dataset, frame, tokenizer, echo):
        """With regression.symmetric_pairs, every training pair is also drawn swapped (text_pair, text)."""
        if not self.spec.symmetric_pairs:
            return loader
        swapped = frame.rename(columns={"text": "text_pair", "text_pair": "text"})
        both = EncodedDataset(dataset.features + self.encode(swapped, tokenizer).features)
        echo(f"regression.symmetric_pairs: training on both orders of each pair ({len(both)} rows per epoch)")
        settings = self.recipe.train
        return self.make_loader(both, tokenizer, batch_size=settings.batch_size, seed=settings.seed,
                                order="grouped" if settings.group_by_length else "shuffle")

    def encode_settings(self, tokenizer) -> dict | None:
        if self.scaler is None:
            return None
        return {"max_length": self.max_length, "scaling": self.scaler.to_dict()}

    # ---- model ------------------------------------------------------------------------------
    def load_model(self, model_dir: Path):
        id2label = dict(enumerate(self.names))
        model, tokenizer = load_for_classification(
            model_dir, num_labels=len(self.names), id2label=id2label, label2id={v: k for k, v in id2label.items()},
            problem_type="regression", trust_remote_code=self.recipe.trust_remote_code,
            allow_pickle=self.recipe.allow_pickle, start=self.start_head(id2label))
        setattr(model.config, CONFIG_KEY, self.scaler.to_dict())  # predict returns values in the user's units
        self.fit_max_length(model.config, announce=True)
        return model, tokenizer

    def use_trained(self, model) -> None:
        self.scaler = TargetScaler.from_dict(getattr(model.config, CONFIG_KEY, None))
        self.names = list(self.scaler.names)

    # ---- training and evaluation ------------------------------------------------------------
    def compute_loss(self, model, batch) -> torch.Tensor:
        return self.loss_of(outputs_of(model, batch), batch["labels"])

    def loss_of(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return regression_loss(self.spec.loss, outputs, labels.float().reshape(outputs.shape),
                               delta=self.spec.huber_delta)

    def metric_mode(self, name: str) -> str:
        return metric_mode(name)

    def predict_values(self, model, loader, accelerator, *, desc: str = "eval") -> tuple[np.ndarray, np.ndarray, float]:
        """(N x K predictions, N x K gold values, both in the user's units; mean training loss)."""
        pred, gold, loss = self.gathered_outputs(model, loader, accelerator, desc=desc)
        return self.scaler.inverse_transform(pred), self.scaler.inverse_transform(gold), loss

    def evaluate(self, model, loader, accelerator, *, desc: str = "eval") -> dict:
        """Pearson, Spearman, MSE, RMSE, MAE, R² in the user's units; loss is the training loss (standardised)."""
        pred, gold, loss = self.predict_values(model, loader, accelerator, desc=desc)
        self.newest[id(loader)] = (pred, gold)  # the final evaluation's are saved for the report (save_artifacts)
        metrics = regression_metrics(gold, pred, self.names)
        metrics["loss"] = loss
        metrics["n"] = int(len(gold))
        return metrics

    # ---- results ----------------------------------------------------------------------------
    def baselines(self, split_names: list[str]) -> dict:
        """The training mean and TF-IDF + ridge regression, fitted once for every split."""
        if self._baselines is None:
            spec, frames = self.recipe.baselines, self.splits.frames()
            held_out = [name for name in frames if name != "train"]
            found = regression_baselines(
                texts_for_regression(frames["train"]), self.splits.y["train"],
                {name: texts_for_regression(frames[name]) for name in held_out},
                {name: self.splits.y[name] for name in held_out}, self.names, folds=spec.cv_folds,
                seed=self.recipe.train.seed, mean=spec.majority, tfidf=spec.tfidf)
            self._baselines = {split: {("tfidf_ridge" if k == "tfidf" else k): v for k, v in scores.items()}
                               for split, scores in found.items()}
        return {name: self._baselines.get(name, {}) for name in split_names}

    def extra_results(self, model, tokenizer, accelerator) -> dict:
        out = {"regression": {"targets": self.names, "loss": self.spec.loss, "scaling": self.scaler.to_dict()}}
        if self.inspection is not None:
            out["inspect"] = self.inspect_summary()
        return out

    def save_artifacts(self, run, model, eval_loaders: dict, accelerator) -> None:
        """RUN/inspect.json (the targets' distributions), RUN/predictions_<split>.csv (true and predicted
        values, for the report's scatter and residuals)."""
        if self.inspection is not None:
            write_text_atomic(run.path / "inspect.json", json.dumps(self.inspection.to_dict(), indent=2) + "\n")
        for split, loader in eval_loaders.items():  # evaluated last with the best model: no second pass
            pred, gold = self.newest.get(id(loader)) or self.predict_values(model, loader, accelerator)[:2]
            columns = {}
            for k, name in enumerate(self.names):
                columns[f"true_{name}"], columns[f"pred_{name}"] = gold[:, k], pred[:, k]
            write_text_atomic(run.path / f"predictions_{split}.csv", pd.DataFrame(columns).to_csv(index=False))

    # ---- using a finished run ---------------------------------------------------------------
    @torch.no_grad()
    def predictions(self, model, loader) -> dict:
        """`prediction` (one target) or `prediction_<name>` per target, in the user's units."""
        outputs = [outputs_of(model, batch) for batch in loader]
        raw = torch.cat(outputs).numpy() if outputs else np.zeros((0, len(self.names)))
        values = self.scaler.inverse_transform(raw.reshape(len(raw), -1))
        if len(self.names) == 1:
            return {"prediction": values[:, 0]}
        return {f"prediction_{name}": values[:, k] for k, name in enumerate(self.names)}
