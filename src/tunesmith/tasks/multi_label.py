"""Multi-label classification: a text (or text pair) -> a set of labels, possibly empty.

- Data (data/label_sets.py): `data.columns.label` holds a JSON list of names (jsonl / json / parquet) or names
  joined by `data.label_separator` (csv / tsv); each bad cell is one DataError naming the file and line.
  Labels are the sorted names, ids in that order, stored in the model config with
  `problem_type: multi_label_classification` (transformers' text-classification pipeline gives sigmoid scores).
- Loss (evaluation/multi_label_losses.py): BCE with logits on float multi-hot labels, or focal BCE; optional
  `pos_weight` (none | counts | {label: w}), saved in the model config so evaluate scores the same loss.
- Thresholds (evaluation/multi_label_thresholds.py): `threshold.value` until tuned; with `threshold.tune` one
  global or one per-label threshold chosen on validation after training, stored as `tunesmith_thresholds`.
- Metrics (evaluation/multi_label.py): micro / macro / samples F1, subset accuracy, Hamming loss, mean AP.
- Inspection (evaluation/label_set_inspection.py) and baselines (baselines/multi_label.py): the modal label
  set and TF-IDF + one-vs-rest logistic regression.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tunesmith.artifacts import write_text_atomic
from tunesmith.baselines.multi_label import majority_scores, tfidf_scores
from tunesmith.baselines.tfidf import texts_of
from tunesmith.data.encode import EncodedDataset
from tunesmith.data.label_sets import (ROLE, LabelSetSplits, join_labels, label_set_columns, load_label_set_splits,
                                       multi_hot, read_label_set_file)
from tunesmith.data.prepare import read_with_spec
from tunesmith.errors import RecipeError
from tunesmith.evaluation.label_set_inspection import inspect_label_sets
from tunesmith.evaluation.multi_label import (BOUNDED_METRICS, METRIC_NAMES, THRESHOLD_METRICS, decide, fast_score,
                                              metric_mode, multi_label_metrics)
from tunesmith.evaluation.multi_label_losses import multi_label_loss, resolve_pos_weight
from tunesmith.evaluation.multi_label_thresholds import (read_thresholds, threshold_record, tune_thresholds,
                                                         write_thresholds)
from tunesmith.inspection import check_failures, report_json, tokenizer_for
from tunesmith.models import load_for_classification
from tunesmith.tasks.sequence import SequenceTask, outputs_of

PROBLEM_TYPE = "multi_label_classification"
POS_WEIGHT_KEY = "tunesmith_pos_weight"


class MultiLabelTask(SequenceTask):
    name = "multi_label"
    metric_names = METRIC_NAMES
    default_metric = "micro_f1"
    bounded_metrics = BOUNDED_METRICS
    summary_columns = ("loss", "micro_f1", "macro_f1", "subset_accuracy")
    random_held_out = "label sets"
    exportable = True

    def __init__(self, recipe):
        super().__init__(recipe)
        self.spec = recipe.multi_label
        self.threshold_metric = self.choose_threshold_metric()
        self.splits: LabelSetSplits | None = None
        self.names: list[str] = []
        self.pos_weight: np.ndarray | None = None
        self.thresholds: np.ndarray | None = None  # one per label, applied by evaluate / predict
        self.tuning: dict | None = None  # how the thresholds were tuned (after_training)
        self.inspection = None  # LabelSetInspection
        self._baselines: dict | None = None

    def choose_threshold_metric(self) -> str:
        asked = self.spec.threshold.metric
        if asked is None:
            return self.stop_metric if self.stop_metric in THRESHOLD_METRICS else "micro_f1"
        if asked not in THRESHOLD_METRICS:
            raise RecipeError(f"multi_label.threshold.metric: '{asked}' cannot be tuned; choose one of "
                              f"{', '.join(THRESHOLD_METRICS)}")
        return asked

    # ---- data -------------------------------------------------------------------------------
    def load_data(self) -> LabelSetSplits:
        self.check_random_held_out()
        self.splits = load_label_set_splits(self.recipe.data, seed=self.recipe.train.seed)
        self.names = list(self.splits.names)
        y_train = multi_hot(self.splits.train, self.names, self.recipe.data.train)
        self.pos_weight = resolve_pos_weight(self.spec.pos_weight, y_train, self.names, self.spec.max_pos_weight)
        self.thresholds = np.full(len(self.names), self.spec.threshold.value)
        return self.splits

    def describe_splits(self, splits) -> str:
        mean = np.mean([len(s) for s in splits.train[ROLE]])
        return (f"{super().describe_splits(splits)}; {len(splits.names)} labels, {mean:.2f} per training row: "
                f"{', '.join(splits.names)}")

    def inspect_data(self, splits, tokenizer, echo) -> None:
        if not self.recipe.inspect.enabled:
            return
        settings = self.recipe.inspect
        self.inspection = inspect_label_sets(splits, tokenizer=tokenizer, max_length=self.max_length,
                                             fail_on=settings.fail_on, examples=settings.examples)
        self.inspection.echo_findings(echo, counts=False)
        check_failures(self.inspection)

    def inspect_recipe(self, *, tokens: bool = True):
        splits = self.load_data()
        tokenizer, note = tokenizer_for(self.recipe.model, self.recipe.trust_remote_code) if tokens else (None, None)
        settings = self.recipe.inspect
        report = inspect_label_sets(splits, tokenizer=tokenizer, max_length=self.recipe.train.max_length,
                                    fail_on=settings.fail_on, examples=settings.examples)
        report.notes += [note] if note else []
        return report

    def inspect_summary(self) -> dict | None:
        return None if self.inspection is None else self.inspection.summary()

    def read_rows(self, spec, path: str, *, labelled: bool):
        if labelled:
            return read_label_set_file(spec, path)
        columns = {role: column for role, column in label_set_columns(spec).items() if role != ROLE}
        return read_with_spec(spec, path, columns=columns, required=("text",))

    def encode(self, frame, tokenizer, *, with_labels: bool = True) -> EncodedDataset:
        labels = None
        if with_labels:
            labels = multi_hot(frame, self.names, frame.attrs.get("source", "data")).tolist()  # floats: BCE
        return self.encode_rows(frame, tokenizer, labels)

    def encode_settings(self, tokenizer) -> dict | None:
        return {"max_length": self.max_length, "labels": list(self.names)} if self.names else None

    # ---- model ------------------------------------------------------------------------------
    def load_model(self, model_dir: Path):
        id2label = dict(enumerate(self.names))
        model, tokenizer = load_for_classification(
            model_dir, num_labels=len(self.names), id2label=id2label, label2id={v: k for k, v in id2label.items()},
            problem_type=PROBLEM_TYPE, trust_remote_code=self.recipe.trust_remote_code,
            allow_pickle=self.recipe.allow_pickle, start=self.start_head(id2label))
        if self.pos_weight is not None:  # evaluate after reloading scores the training loss
            setattr(model.config, POS_WEIGHT_KEY, [float(w) for w in self.pos_weight])
        self.fit_max_length(model.config, announce=True)
        return model, tokenizer

    def use_trained(self, model) -> None:
        config = model.config
        self.names = [config.id2label[k] for k in sorted(int(k) for k in config.id2label)]
        self.thresholds = read_thresholds(config, self.names, self.spec.threshold.value)
        stored = getattr(config, POS_WEIGHT_KEY, None)
        self.pos_weight = np.asarray(stored, dtype=np.float32) if stored else None

    # ---- training and evaluation ------------------------------------------------------------
    def loss_of(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        weight = None if self.pos_weight is None else torch.from_numpy(np.asarray(self.pos_weight))
        return multi_label_loss(self.spec.loss, logits, labels, pos_weight=weight, gamma=self.spec.gamma)

    def compute_loss(self, model, batch) -> torch.Tensor:
        return self.loss_of(outputs_of(model, batch), batch["labels"])

    def metric_mode(self, name: str) -> str:
        return metric_mode(name)

    def predict_probs(self, model, loader, accelerator, *, desc: str = "eval") -> tuple[np.ndarray, np.ndarray, float]:
        """(N x L sigmoid probabilities, N x L gold 0/1, mean loss) over a labelled loader."""
        logits, gold, loss = self.gathered_outputs(model, loader, accelerator, desc=desc)
        return torch.sigmoid(torch.from_numpy(logits)).numpy(), gold, loss

    def evaluate(self, model, loader, accelerator, *, desc: str = "eval") -> dict:
        probs, gold, loss = self.predict_probs(model, loader, accelerator, desc=desc)
        metrics = multi_label_metrics(gold, probs, self.thresholds, self.names)
        metrics["loss"] = loss
        return metrics

    def after_training(self, model, validation_loader, accelerator, run, echo) -> bool:
        """With multi_label.threshold.tune: the thresholds that maximise the threshold metric on validation,
        applied to the final evaluations and stored in RUN/model/config.json."""
        setting = self.spec.threshold
        if not setting.tune:
            return False
        probs, gold, _ = self.predict_probs(model, validation_loader, accelerator, desc="thresholds")
        metric = self.threshold_metric
        cuts = tune_thresholds(probs, gold, metric, per_label=setting.per_label, default=setting.value)
        before = fast_score(gold, decide(probs, setting.value), metric)
        after = fast_score(gold, decide(probs, cuts), metric)
        self.tuning = threshold_record(self.names, cuts, metric=metric, per_label=setting.per_label, before=before,
                                       after=after, default=setting.value)
        self.thresholds = cuts
        if accelerator.is_main_process:
            write_thresholds(run.model_dir, self.tuning)
        shown = ", ".join(f"{n} {t:.2f}" for n, t in zip(self.names, cuts)) if setting.per_label else f"{cuts[0]:.2f}"
        echo(f"decision threshold{'s' if setting.per_label else ''}: {shown} (validation {metric} {before:.4f} at "
             f"{setting.value:g} -> {after:.4f}; validation scores below are optimistic, test scores are not)")
        return True

    # ---- results ----------------------------------------------------------------------------
    def baselines(self, split_names: list[str]) -> dict:
        """The modal training label set and TF-IDF + one-vs-rest logistic regression, fitted once."""
        if self._baselines is None:
            spec, frames = self.recipe.baselines, self.splits.frames()
            held_out = [name for name in frames if name != "train"]
            y = {name: multi_hot(frames[name], self.names, name) for name in frames}
            found: dict = {name: {} for name in held_out}
            if spec.majority:
                for name, scores in majority_scores(y["train"], {n: y[n] for n in held_out}, self.names).items():
                    found[name]["modal_set"] = scores
            if spec.tfidf:
                setting = self.spec.threshold
                scores = tfidf_scores(texts_of(frames["train"]), y["train"], {n: texts_of(frames[n]) for n in held_out},
                                      {n: y[n] for n in held_out}, self.names, metric=self.threshold_metric,
                                      tune=setting.tune, per_label=setting.per_label, default=setting.value,
                                      seed=self.recipe.train.seed)
                for name, split_scores in scores.items():
                    found[name]["tfidf_ovr"] = split_scores
            self._baselines = found
        return {name: self._baselines.get(name, {}) for name in split_names}

    def extra_results(self, model, tokenizer, accelerator) -> dict:
        out = {"multi_label": {
            "labels": list(self.names), "loss": self.spec.loss, "separator": self.recipe.data.label_separator,
            "pos_weight": None if self.pos_weight is None else dict(zip(self.names, map(float, self.pos_weight))),
            "thresholds": dict(zip(self.names, map(float, self.thresholds))), "tuning": self.tuning}}
        if self.inspection is not None:
            out["inspect"] = self.inspect_summary()
        return out

    def save_artifacts(self, run, model, eval_loaders: dict, accelerator) -> None:
        if self.inspection is not None:
            write_text_atomic(run.path / "inspect.json", report_json(self.inspection) + "\n")

    def decisions(self, logits: np.ndarray) -> np.ndarray:
        """The label sets predict gives: each label's sigmoid probability at its threshold (N x L 0/1)."""
        return decide(torch.sigmoid(torch.as_tensor(logits, dtype=torch.float32)).numpy(), self.thresholds)

    # ---- using a finished run ---------------------------------------------------------------
    @torch.no_grad()
    def predictions(self, model, loader) -> dict:
        """`prediction` (the labels joined by data.label_separator, "" for none) and `prob_<label>` per label."""
        probs = [torch.sigmoid(outputs_of(model, batch)) for batch in loader]
        probs = torch.cat(probs).numpy() if probs else np.zeros((0, len(self.names)))
        columns = {"prediction": join_labels(decide(probs, self.thresholds), self.names,
                                             self.recipe.data.label_separator)}
        for k, name in enumerate(self.names):
            columns[f"prob_{name}"] = probs[:, k]
        return columns
