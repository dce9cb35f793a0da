"""The imbalance counter-measures that act on a training run, called by the classification task's hooks:

    loader, note = rebalanced_loader(...)     # re-sampling and/or augmentation of the training set
    record = tune_decision_threshold(...)     # binary: threshold chosen on validation -> model config
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch.utils.data import DataLoader

from tunesmith.config.imbalance import THRESHOLD_METRICS, ImbalanceSpec
from tunesmith.imbalance.augment import AugmentedDataset
from tunesmith.imbalance.configure import ImbalanceSetup
from tunesmith.imbalance.sampling import ClassResampler
from tunesmith.imbalance.threshold import tune_threshold, write_threshold


@dataclass(frozen=True)
class TrainingRows:
    """The training split as the loader sees it: encoded rows, their texts (for augmentation) and class ids."""

    dataset: object
    texts: list[str]
    pairs: list[str] | None
    labels: list[int]


def rebalanced_loader(loader, rows: TrainingRows, spec: ImbalanceSpec, setup: ImbalanceSetup, tokenizer, *,
                      max_length: int, seed: int) -> tuple[DataLoader, str | None]:
    """(`loader` itself, None), or (a loader over the same rows re-sampled and/or augmented, a note)."""
    method = spec.resample.method
    augment = bool(spec.augment.probability and setup.augment_classes)
    if method == "none" and not augment:
        return loader, None
    dataset, notes = rows.dataset, []
    if augment:
        dataset = AugmentedDataset(
            dataset, rows.texts, rows.labels, tokenizer, max_length=max_length,
            classes=set(setup.augment_classes), probability=spec.augment.probability,
            operations=spec.augment.operations, strength=spec.augment.strength, seed=seed, pairs=rows.pairs,
        )
        names = ", ".join(setup.names[c] for c in setup.augment_classes)
        notes.append(f"augmenting {names} with p={spec.augment.probability:g} ({'/'.join(spec.augment.operations)})")
    sampler = loader.sampler
    if method != "none":
        sampler = ClassResampler(rows.labels, method, ratio=spec.resample.ratio, seed=seed)
        shares = ", ".join(f"{n} {p:.1%}" for n, p in zip(setup.names, sampler.class_probabilities()))
        notes.append(f"{method} to ratio {spec.resample.ratio:g}: {len(sampler)} rows per epoch ({shares})")
    rebalanced = DataLoader(dataset, batch_size=loader.batch_size, sampler=sampler, collate_fn=loader.collate_fn)
    return rebalanced, "; ".join(notes)


def threshold_metric(spec: ImbalanceSpec, stop_metric: str) -> str:
    """imbalance.threshold.metric, else the early-stopping metric when a threshold can optimise it, else macro-F1."""
    if spec.threshold.metric:
        return spec.threshold.metric
    return stop_metric if stop_metric in THRESHOLD_METRICS else "macro_f1"


def tune_decision_threshold(probs: np.ndarray, gold: np.ndarray, positive: int, names: list[str], metric: str,
                            model_dir=None) -> dict:
    """The threshold on P(positive) that maximises `metric` on these (validation) predictions; stored in
    `model_dir`/config.json when given."""
    record = tune_threshold(probs[:, positive], gold == positive, metric)
    record = {"label": names[positive], **record, "tuned_on": "validation"}
    if model_dir is not None:
        write_threshold(model_dir, record)
    return record
