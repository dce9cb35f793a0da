"""Where a training run (tunesmith/run.py) meets the data diagnostics and the imbalance counter-measures.

    hooks = ImbalanceRun(recipe, task, echo)
    hooks.inspect(splits, tokenizer)           # print warnings; DataError for inspect.fail_on findings
    train_loader = hooks.train_loader(...)     # resampling and/or augmentation of the training set
    hooks.save(run)                            # RUN/inspect.json
    hooks.tune_threshold(model, ...)           # binary: threshold on validation -> model config
    result.update(hooks.summary())             # "imbalance" and "inspect" in eval.json

Tasks other than classification pass through untouched.
"""

from __future__ import annotations

from torch.utils.data import DataLoader

from tunesmith.imbalance.config import THRESHOLD_METRICS


class ImbalanceRun:
    def __init__(self, recipe, task, echo=print):
        self.recipe = recipe
        self.task = task
        self.echo = echo
        self.setup = getattr(task, "imbalance", None)
        self.report = None
        self.threshold: dict | None = None
        self.loader_note: str | None = None

    # ---- diagnostics ------------------------------------------------------------------------
    def inspect(self, splits, tokenizer=None) -> None:
        if self.setup is None or not self.recipe.inspect.enabled:
            return
        from tunesmith.inspection import check_failures, inspect_splits

        self.report = inspect_splits(splits, self.recipe, tokenizer, max_length=self.task.max_length)
        for finding in self.report.findings:
            if finding.severity in ("error", "warning"):
                self.echo(f"{finding.severity}: [{finding.code}] {finding.message}")
        counts = self.report.to_dict()["summary"]
        self.echo(f"inspect: {counts['error']} errors, {counts['warning']} warnings, {counts['info']} notes "
                  f"(all in RUN/inspect.json; `tunesmith inspect RECIPE` shows them)")
        check_failures(self.report)

    def save(self, run) -> None:
        if self.report is not None:
            from tunesmith.inspection import save_report

            save_report(self.report, run.path / "inspect.json")

    # ---- training data ----------------------------------------------------------------------
    def train_loader(self, loader, dataset, frame, tokenizer):
        """`loader` itself, or a loader over the same rows re-sampled and/or augmented."""
        if self.setup is None:
            return loader
        spec = self.recipe.imbalance
        method = spec.resample.method
        augment = bool(spec.augment.probability and self.setup.augment_classes)
        if method == "none" and not augment:
            return loader
        seed = self.recipe.train.seed
        labels = self.task.labels.encode(frame, source="train")
        notes = []
        if augment:
            from tunesmith.imbalance.augment import AugmentedDataset

            pairs = frame["text_pair"].fillna("").tolist() if "text_pair" in frame.columns else None
            dataset = AugmentedDataset(
                dataset, frame["text"].tolist(), labels, tokenizer, max_length=self.task.max_length,
                classes=set(self.setup.augment_classes), probability=spec.augment.probability,
                operations=spec.augment.operations, strength=spec.augment.strength, seed=seed, pairs=pairs,
            )
            names = ", ".join(self.setup.names[c] for c in self.setup.augment_classes)
            notes.append(f"augmenting {names} with p={spec.augment.probability:g} "
                         f"({'/'.join(spec.augment.operations)})")
        sampler = loader.sampler
        if method != "none":
            from tunesmith.imbalance.sampling import ClassResampler

            sampler = ClassResampler(labels, method, ratio=spec.resample.ratio, seed=seed)
            shares = ", ".join(f"{n} {p:.1%}" for n, p in zip(self.setup.names, sampler.class_probabilities()))
            notes.append(f"{method} to ratio {spec.resample.ratio:g}: {len(sampler)} rows per epoch ({shares})")
        self.loader_note = "; ".join(notes)
        self.echo(f"imbalance: {self.loader_note}")
        return DataLoader(dataset, batch_size=loader.batch_size or self.recipe.train.batch_size, sampler=sampler,
                          collate_fn=loader.collate_fn)

    # ---- after training ---------------------------------------------------------------------
    def threshold_metric(self) -> str:
        chosen = self.recipe.imbalance.threshold.metric
        if chosen:
            return chosen
        stop = self.recipe.train.early_stopping.metric
        return stop if stop in THRESHOLD_METRICS else "macro_f1"

    def tune_threshold(self, model, loader, accelerator, run) -> dict | None:
        """Binary tasks with imbalance.threshold.tune: choose the threshold on `loader` (validation),
        apply it for the final evaluation, and store it in RUN/model/config.json."""
        if self.setup is None or not self.recipe.imbalance.threshold.tune or self.task.positive is None:
            return None
        from tunesmith.imbalance.threshold import tune_threshold, write_threshold

        positive = self.task.positive
        probs, gold, _ = self.task.predict_probs(model, loader, accelerator, desc="threshold")
        record = tune_threshold(probs[:, positive], gold == positive, self.threshold_metric())
        record = {"label": self.task.labels.names[positive], **record, "tuned_on": "validation"}
        self.task.threshold = self.threshold = record
        if accelerator.is_main_process:
            write_threshold(run.model_dir, record)
        self.echo(f"decision threshold for '{record['label']}': {record['value']:.4f} (validation {record['metric']} "
                  f"{record['score_at_0.5']:.4f} at 0.5 -> {record['score']:.4f}; validation scores below are "
                  f"optimistic, test scores are not)")
        return record

    def summary(self) -> dict:
        if self.setup is None:
            return {}
        out = {"imbalance": self.setup.summary()}
        if self.loader_note:
            out["imbalance"]["train_loader"] = self.loader_note
        if self.threshold:
            out["imbalance"]["threshold"] = self.threshold
        if self.report is not None:
            out["inspect"] = {**self.report.to_dict()["summary"],
                              "findings": [f"{f.severity}: {f.code}" for f in self.report.findings]}
        return out
