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
from tunesmith.evaluation.classification import METRIC_NAMES, classification_metrics, majority_baseline, metric_mode
from tunesmith.errors import RecipeError
from tunesmith.models import load_for_classification
from tunesmith.recipe import Recipe


class ClassificationTask:
    name = "classification"
    metric_names = METRIC_NAMES

    def __init__(self, recipe: Recipe):
        self.recipe = recipe
        self.labels: LabelMap | None = None
        self.splits: LabelledSplits | None = None
        metric = recipe.train.early_stopping.metric
        if metric not in METRIC_NAMES:
            raise RecipeError(
                f"train.early_stopping.metric: '{metric}' is not a classification metric; "
                f"choose one of {', '.join(METRIC_NAMES)}"
            )

    # ---- data -------------------------------------------------------------------------------
    def load_data(self) -> LabelledSplits:
        self.splits = load_labelled_splits(self.recipe.data, seed=self.recipe.train.seed)
        self.labels = self.splits.labels
        return self.splits

    def encode(self, frame, tokenizer, *, with_labels: bool = True) -> EncodedDataset:
        pairs = frame["text_pair"].tolist() if "text_pair" in frame.columns else None
        labels = self.labels.encode(frame, source="data") if with_labels else None
        return encode_texts(
            tokenizer, frame["text"].tolist(), pairs, max_length=self.recipe.train.max_length, labels=labels
        )

    # ---- model ------------------------------------------------------------------------------
    def load_model(self, model_dir: Path):
        return load_for_classification(
            model_dir, num_labels=len(self.labels), id2label=self.labels.id2label,
            label2id=self.labels.label2id, trust_remote_code=self.recipe.trust_remote_code,
        )

    def use_trained_labels(self, model) -> None:
        """For a model loaded from a finished run: its config carries the label map."""
        self.labels = LabelMap.from_config(model.config.id2label)

    # ---- training and evaluation ------------------------------------------------------------
    def compute_loss(self, model, batch) -> torch.Tensor:
        return model(**batch).loss

    def metric_mode(self, name: str) -> str:
        return metric_mode(name)

    @torch.no_grad()
    def evaluate(self, model, loader, accelerator, *, desc: str = "eval") -> dict:
        """Loss and classification metrics over a loader; keeps only predicted ids, never all logits."""
        model.eval()
        preds, golds, losses, weights = [], [], [], []
        for batch in tqdm(loader, desc=desc, leave=False, disable=not accelerator.is_local_main_process):
            out = model(**batch)
            logits, labels = accelerator.gather_for_metrics((out.logits, batch["labels"]))
            preds.append(logits.argmax(-1).cpu())
            golds.append(labels.cpu())
            losses.append(float(out.loss) * len(batch["labels"]))
            weights.append(len(batch["labels"]))
        model.train()
        y_pred, y_true = torch.cat(preds).numpy(), torch.cat(golds).numpy()
        metrics = classification_metrics(y_true, y_pred, self.labels.names)
        metrics["loss"] = sum(losses) / max(sum(weights), 1)
        return metrics

    def baselines(self, split_name: str) -> dict:
        """Reference points for the summary: the majority class on this split."""
        frames = self.splits.frames()
        y_train = self.labels.encode(frames["train"], source="train")
        y_eval = self.labels.encode(frames[split_name], source=split_name)
        return {"majority": majority_baseline(np.asarray(y_train), np.asarray(y_eval), self.labels.names)}

    def headline(self, metrics: dict) -> dict:
        """The few numbers printed in progress lines and the summary."""
        return {k: metrics[k] for k in ("loss", "accuracy", "macro_f1") if k in metrics}
