"""Sequence classification (single text or text pair -> one of N labels).

A task owns what is specific to it: reading its data, building the model head, turning a batch into
a loss, and scoring predictions. The training loop asks the task; it never checks which task it runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from tunesmith.data.encode import EncodedDataset, encode_texts
from tunesmith.data.labels import LabelMap
from tunesmith.data.prepare import LabelledSplits, load_labelled_splits
from tunesmith.evaluation.classification import BOUNDED_METRICS, METRIC_NAMES, classification_metrics, metric_mode
from tunesmith.errors import RecipeError
from tunesmith.imbalance.configure import ImbalanceSetup, build_setup, collapse_message, predict_ids
from tunesmith.imbalance.threshold import POSITIVE_KEY, read_threshold
from tunesmith.models import load_for_classification
from tunesmith.recipe import Recipe
from tunesmith.tasks.base import Task


class ClassificationTask(Task):
    name = "classification"
    metric_names = METRIC_NAMES

    def __init__(self, recipe: Recipe):
        self.recipe = recipe
        self.labels: LabelMap | None = None
        self.splits: LabelledSplits | None = None
        self.imbalance: ImbalanceSetup | None = None  # the imbalance: section, set up by load_data
        self.positive: int | None = None  # binary tasks: the class PR-AUC and the threshold are about
        self.threshold: dict | None = None  # binary decision threshold (tunesmith_threshold in the model config)
        self.warn = lambda message: tqdm.write(f"warning: {message}")
        metric = recipe.train.early_stopping.metric
        if metric not in METRIC_NAMES:
            raise RecipeError(
                f"train.early_stopping.metric: '{metric}' is not a classification metric; "
                f"choose one of {', '.join(METRIC_NAMES)}"
            )
        _check_target(metric, recipe.train.early_stopping.target)

    # ---- data -------------------------------------------------------------------------------
    def load_data(self) -> LabelledSplits:
        self.splits = load_labelled_splits(self.recipe.data, seed=self.recipe.train.seed)
        self.labels = self.splits.labels
        y_train = self.labels.encode(self.splits.train, source="train")
        self.imbalance = build_setup(self.recipe.imbalance, self.labels, y_train,
                                     self.recipe.train.early_stopping.metric)
        self.positive = self.imbalance.positive
        return self.splits

    def encode(self, frame, tokenizer, *, with_labels: bool = True) -> EncodedDataset:
        pairs = frame["text_pair"].tolist() if "text_pair" in frame.columns else None
        labels = self.labels.encode(frame, source="data") if with_labels else None
        return encode_texts(
            tokenizer, frame["text"].tolist(), pairs, max_length=self.recipe.train.max_length, labels=labels
        )

    def encode_settings(self, tokenizer) -> dict | None:
        if self.labels is None:
            return None
        return {"max_length": self.recipe.train.max_length, "labels": list(self.labels.names)}  # names -> ids

    def describe_splits(self, splits) -> str:
        counts = ", ".join(f"{name} {len(frame)}" for name, frame in splits.frames().items())
        return f"data: {counts} rows; {len(splits.labels)} labels: {', '.join(splits.labels.names)}"

    # ---- model ------------------------------------------------------------------------------
    def load_model(self, model_dir: Path):
        model, tokenizer = load_for_classification(
            model_dir, num_labels=len(self.labels), id2label=self.labels.id2label,
            label2id=self.labels.label2id, trust_remote_code=self.recipe.trust_remote_code,
            allow_pickle=self.recipe.allow_pickle,  # checked (and refused unless true) by models.check_weights_safe
        )
        if self.positive is not None:  # saved with the model: predict/evaluate know the positive class
            setattr(model.config, POSITIVE_KEY, self.labels.names[self.positive])
        return model, tokenizer

    def use_trained_labels(self, model) -> None:
        """For a model loaded from a finished run: its config carries the label map, and for a
        binary task the positive class and any tuned decision threshold."""
        self.labels = LabelMap.from_config(model.config.id2label)
        self.threshold = read_threshold(model.config)
        positive = (self.threshold or {}).get("label") or getattr(model.config, POSITIVE_KEY, None)
        self.positive = self.labels.label2id.get(str(positive)) if len(self.labels) == 2 else None
        if self.positive is None and len(self.labels) == 2:
            self.positive = 1

    def predict_ids(self, probs: np.ndarray) -> np.ndarray:
        """Class ids from N x C probabilities: argmax, or the tuned threshold of a binary task."""
        return predict_ids(probs, self.threshold, self.positive)

    # ---- training and evaluation ------------------------------------------------------------
    def compute_loss(self, model, batch) -> torch.Tensor:
        loss_fn = self.imbalance.loss if self.imbalance is not None else None
        if loss_fn is None:
            return model(**batch).loss
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return loss_fn(model(**inputs).logits.float(), batch["labels"])  # bf16 logits under autocast

    def metric_mode(self, name: str) -> str:
        return metric_mode(name)

    @torch.no_grad()
    def predict_probs(self, model, loader, accelerator, *, desc: str = "eval") -> tuple[np.ndarray, np.ndarray, float]:
        """(N x C class probabilities, gold ids, mean cross-entropy) over a labelled loader."""
        model.eval()
        probs, golds, losses, weights = [], [], [], []
        for batch in tqdm(loader, desc=desc, leave=False, disable=not accelerator.is_local_main_process):
            out = model(**batch)
            logits, labels = accelerator.gather_for_metrics((out.logits, batch["labels"]))
            probs.append(torch.softmax(logits.float(), dim=-1).cpu())
            golds.append(labels.cpu())
            losses.append(float(out.loss) * len(batch["labels"]))
            weights.append(len(batch["labels"]))
        model.train()
        return torch.cat(probs).numpy(), torch.cat(golds).numpy(), sum(losses) / max(sum(weights), 1)

    def evaluate(self, model, loader, accelerator, *, desc: str = "eval") -> dict:
        """Loss and classification metrics over a loader; keeps class probabilities (N x C), never
        more. A tuned binary threshold decides the predictions; a collapse to one class is warned about."""
        probs, y_true, loss = self.predict_probs(model, loader, accelerator, desc=desc)
        y_pred = self.predict_ids(probs)
        metrics = classification_metrics(y_true, y_pred, self.labels.names, probs=probs, positive=self.positive)
        metrics["loss"] = loss
        share = self.recipe.imbalance.collapse_share
        message = collapse_message(y_true, y_pred, self.labels.names, share)
        if message:
            metrics["warnings"] = [message]
            if accelerator.is_local_main_process:
                self.warn(f"{desc}: {message}")
        return metrics

    def baselines(self, split_name: str) -> dict:
        """Reference points for this split, as the recipe's `baselines:` asks: the majority class and
        TF-IDF + logistic regression (tunesmith/baselines/; fitted once, for every split)."""
        if getattr(self, "_baselines", None) is None:
            from tunesmith.baselines import text_baselines

            self._baselines = text_baselines(self.recipe.baselines, self.splits, self.labels,
                                             metric=self.recipe.train.early_stopping.metric,
                                             seed=self.recipe.train.seed, positive=self.positive)
        return self._baselines.get(split_name, {})

    def headline(self, metrics: dict) -> dict:
        """The few numbers printed in progress lines and the summary."""
        return {k: metrics[k] for k in ("loss", "accuracy", "macro_f1") if k in metrics}


def _check_target(metric: str, target: float | None) -> None:
    """An early-stopping target the metric can reach: metrics bounded in [0, 1] need a target in [0, 1]."""
    if target is not None and metric in BOUNDED_METRICS and not 0 <= target <= 1:
        raise RecipeError(f"train.early_stopping.target: {target:g} can never be reached: {metric} lies "
                          f"between 0 and 1; give a target in [0, 1] (e.g. 0.9), or none")
