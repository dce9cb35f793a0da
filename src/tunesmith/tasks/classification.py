"""Sequence classification (single text or text pair -> one of N labels).

What is specific to classification lives here and is reached through the task contract (tasks/base.py):
the data diagnostics (inspection.py), the imbalance counter-measures (imbalance/: loss, re-sampling,
augmentation, the decision threshold of a binary task) and the majority / TF-IDF baselines.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from tunesmith.baselines import text_baselines
from tunesmith.data.encode import EncodedDataset
from tunesmith.data.labels import LabelMap
from tunesmith.data.prepare import LabelledSplits, load_labelled_splits
from tunesmith.evaluation.classification import BOUNDED_METRICS, METRIC_NAMES, classification_metrics, metric_mode
from tunesmith.imbalance.configure import ImbalanceSetup, build_setup, collapse_message, predict_ids
from tunesmith.imbalance.threshold import POSITIVE_KEY, read_threshold
from tunesmith.imbalance.training import TrainingRows, rebalanced_loader, threshold_metric, tune_decision_threshold
from tunesmith.inspection import check_failures, inspect_recipe, inspect_splits, save_report
from tunesmith.models import load_for_classification
from tunesmith.tasks.sequence import SequenceTask


class ClassificationTask(SequenceTask):
    name = "classification"
    metric_names = METRIC_NAMES
    default_metric = "macro_f1"
    bounded_metrics = BOUNDED_METRICS
    summary_columns = ("loss", "accuracy", "macro_f1")
    exportable = True

    def __init__(self, recipe):
        super().__init__(recipe)
        self.labels: LabelMap | None = None
        self.splits: LabelledSplits | None = None
        self.imbalance: ImbalanceSetup | None = None  # the imbalance: section, set up by load_data
        self.positive: int | None = None  # binary tasks: the class PR-AUC and the threshold are about
        self.threshold: dict | None = None  # binary decision threshold (tunesmith_threshold in the model config)
        self.inspection = None  # the data diagnostics' Report (inspection.py)
        self.loader_note: str | None = None  # how the training loader re-samples / augments
        self.warn = lambda message: tqdm.write(f"warning: {message}")
        self._baselines: dict | None = None

    # ---- data -------------------------------------------------------------------------------
    def load_data(self) -> LabelledSplits:
        self.splits = load_labelled_splits(self.recipe.data, seed=self.recipe.train.seed)
        self.labels = self.splits.labels
        y_train = self.labels.encode(self.splits.train, source="train")
        self.imbalance = build_setup(self.recipe.imbalance, self.labels, y_train, self.stop_metric)
        self.positive = self.imbalance.positive
        return self.splits

    def describe_splits(self, splits) -> str:
        return f"{super().describe_splits(splits)}; {len(splits.labels)} labels: {', '.join(splits.labels.names)}"

    def inspect_data(self, splits, tokenizer, echo) -> None:
        """Balance, duplicates, leakage, lengths (inspection.py): warnings printed, inspect.fail_on stops."""
        if not self.recipe.inspect.enabled:
            return
        self.inspection = inspect_splits(splits, self.recipe, tokenizer, max_length=self.max_length)
        self.inspection.echo_findings(echo)
        check_failures(self.inspection)

    def inspect_recipe(self, *, tokens: bool = True):
        return inspect_recipe(self.recipe, tokens=tokens)

    def inspect_summary(self) -> dict | None:
        return None if self.inspection is None else self.inspection.summary()

    def encode(self, frame, tokenizer, *, with_labels: bool = True) -> EncodedDataset:
        labels = self.labels.encode(frame, source=frame.attrs.get("source", "data")) if with_labels else None
        return self.encode_rows(frame, tokenizer, labels)

    def encode_settings(self, tokenizer) -> dict | None:
        if self.labels is None:
            return None
        return {"max_length": self.max_length, "labels": list(self.labels.names)}  # names -> ids

    def train_loader(self, loader, dataset, frame, tokenizer, echo):
        """Re-sampled and/or augmented as the imbalance: section asks (imbalance/training.py)."""
        rows = TrainingRows(dataset, frame["text"].tolist(),
                            frame["text_pair"].fillna("").tolist() if "text_pair" in frame.columns else None,
                            self.labels.encode(frame, source="train"))
        loader, self.loader_note = rebalanced_loader(loader, rows, self.recipe.imbalance, self.imbalance, tokenizer,
                                                     max_length=self.max_length,
                                                     seed=self.recipe.train.seed)
        if self.loader_note:
            echo(f"imbalance: {self.loader_note}")
        return loader

    # ---- model ------------------------------------------------------------------------------
    def load_model(self, model_dir: Path):
        model, tokenizer = load_for_classification(
            model_dir, num_labels=len(self.labels), id2label=self.labels.id2label,
            label2id=self.labels.label2id, trust_remote_code=self.recipe.trust_remote_code,
            allow_pickle=self.recipe.allow_pickle,  # checked (and refused unless true) by models.check_weights_safe
            start=self.start_head(self.labels.id2label),  # model: an earlier run: its head kept or new
        )
        if self.positive is not None:  # saved with the model: predict/evaluate know the positive class
            setattr(model.config, POSITIVE_KEY, self.labels.names[self.positive])
        self.fit_max_length(model.config, announce=True)
        return model, tokenizer

    def use_trained(self, model) -> None:
        """The label map, and for a binary task the positive class and any tuned decision threshold."""
        self.labels = LabelMap.from_config(model.config.id2label)
        self.threshold = read_threshold(model.config)
        positive = (self.threshold or {}).get("label") or getattr(model.config, POSITIVE_KEY, None)
        self.positive = self.labels.label2id.get(str(positive)) if len(self.labels) == 2 else None
        if self.positive is None and len(self.labels) == 2:
            self.positive = 1

    def decisions(self, logits: np.ndarray) -> np.ndarray:
        """The classes predict gives: argmax, or the tuned binary threshold."""
        return self.predict_ids(torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=-1).numpy())

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
        probs, golds, loss_sum = [], [], 0.0
        for batch in tqdm(loader, desc=desc, leave=False, disable=not accelerator.is_local_main_process):
            out = model(**{k: v for k, v in batch.items() if k != "labels"})
            # every example once, from every process: the loss too is computed from the gathered rows
            logits, labels = accelerator.gather_for_metrics((out.logits.float(), batch["labels"]))
            probs.append(torch.softmax(logits, dim=-1).cpu())
            golds.append(labels.cpu())
            loss_sum += float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
        model.train()
        count = sum(len(g) for g in golds)
        return torch.cat(probs).numpy(), torch.cat(golds).numpy(), loss_sum / max(count, 1)

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

    def after_training(self, model, validation_loader, accelerator, run, echo) -> bool:
        """Binary tasks with imbalance.threshold.tune: choose the threshold on validation, apply it for the
        final evaluation, and store it in RUN/model/config.json."""
        if not self.recipe.imbalance.threshold.tune or self.positive is None:
            return False
        probs, gold, _ = self.predict_probs(model, validation_loader, accelerator, desc="threshold")
        record = tune_decision_threshold(probs, gold, self.positive, self.labels.names,
                                         threshold_metric(self.recipe.imbalance, self.stop_metric),
                                         model_dir=run.model_dir if accelerator.is_main_process else None)
        self.threshold = record
        echo(f"decision threshold for '{record['label']}': {record['value']:.4f} (validation {record['metric']} "
             f"{record['score_at_0.5']:.4f} at 0.5 -> {record['score']:.4f}; validation scores below are "
             f"optimistic, test scores are not)")
        return True

    # ---- results ----------------------------------------------------------------------------
    def baselines(self, split_names: list[str]) -> dict:
        """The majority class and TF-IDF + logistic regression (baselines/; fitted once, for every split)."""
        if self._baselines is None:
            self._baselines = text_baselines(self.recipe.baselines, self.splits, self.labels,
                                             metric=self.stop_metric, seed=self.recipe.train.seed,
                                             positive=self.positive)
        return {name: self._baselines.get(name, {}) for name in split_names}

    def extra_results(self, model, tokenizer, accelerator) -> dict:
        """eval.json "imbalance" (loss, weights, sampling, threshold) and "inspect" (finding counts)."""
        out = {}
        if self.imbalance is not None:
            out["imbalance"] = self.imbalance.summary()
            if self.loader_note:
                out["imbalance"]["train_loader"] = self.loader_note
            if self.threshold:
                out["imbalance"]["threshold"] = self.threshold
        if self.inspection is not None:
            out["inspect"] = self.inspect_summary()
        return out

    def save_artifacts(self, run, model, eval_loaders: dict, accelerator) -> None:
        if self.inspection is not None:
            save_report(self.inspection, run.path / "inspect.json")

    # ---- using a finished run ---------------------------------------------------------------
    @torch.no_grad()
    def predictions(self, model, loader) -> dict:
        """`prediction` (the label) and one `prob_<label>` column per label."""
        probs = [torch.softmax(model(**batch).logits.float(), dim=-1) for batch in loader]
        probs = torch.cat(probs).numpy() if probs else np.zeros((0, len(self.labels)))
        names = self.labels.names
        columns = {"prediction": [names[i] for i in self.predict_ids(probs)] if len(probs) else []}
        for index, name in enumerate(names):
            columns[f"prob_{name}"] = probs[:, index]
        return columns
