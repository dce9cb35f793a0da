"""Baselines: the reference points a fine-tuned model's numbers are read against.

    majority   always predict the most frequent training class
    tfidf      word + character n-gram TF-IDF features and a logistic regression whose C is chosen
               by cross-validation on the training set (scikit-learn; seconds on CPU)
    scratch    the same architecture, randomly initialised, trained with the same recipe and budget
               (a second training run, written to RUN/baselines/scratch; off by default)

The recipe's `baselines:` section chooses them:

    baselines: {majority: true, tfidf: true, scratch: false, cv_folds: 5}   # the default
    baselines: [tfidf, scratch]      # exactly these
    baselines: false                 # none

Results land in eval.json as `baselines: {split: {name: metrics}}`, next to the fine-tuned model's.
This module only holds the recipe section and the orchestration; scikit-learn and torch are imported
by the modules that need them, when they run.
"""

from __future__ import annotations

from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAMES = ("majority", "tfidf", "scratch")


class BaselinesSpec(BaseModel):
    """The recipe's `baselines:` section (defaults: majority and tfidf on, scratch off)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # inf, nan: refused

    majority: bool = True
    tfidf: bool = True
    scratch: bool = Field(False, description="train the same architecture from random weights with the same recipe")
    cv_folds: int = Field(5, ge=2, description="cross-validation folds that choose the TF-IDF model's C")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        """`false`/`null`/`[]` turn every baseline off; a name or a list of names turns on exactly those."""
        if value is None or value is False:
            return {name: False for name in NAMES}
        if value is True:
            return {}
        if isinstance(value, str):
            value = [value]
        if isinstance(value, (list, tuple)):
            unknown = [v for v in value if v not in NAMES]
            if unknown:
                raise ValueError(f"unknown baseline {unknown[0]!r}; choose from {', '.join(NAMES)}")
            return {name: name in value for name in NAMES}
        if not isinstance(value, (dict, BaselinesSpec)):
            raise ValueError(f"must be true, false, a baseline name ({', '.join(NAMES)}), a list of names, or a "
                             f"mapping such as {{tfidf: false}}")
        return value

    @property
    def enabled(self) -> list[str]:
        return [name for name in NAMES if getattr(self, name)]


def text_baselines(spec: BaselinesSpec, splits, labels, *, metric: str = "macro_f1", seed: int = 0,
                   positive: int | None = None) -> dict:
    """Majority and TF-IDF baselines of a labelled-text task -> {held-out split: {name: metrics}}.

    `splits` is a LabelledSplits (frames with text[, text_pair], label); `labels` its LabelMap;
    `positive` the positive class id of a binary task (adds PR-AUC to the TF-IDF scores).
    """
    import numpy as np

    frames = splits.frames()
    held_out = [name for name in frames if name != "train"]
    y_train = np.asarray(labels.encode(frames["train"], source="train"))
    y_eval = {name: np.asarray(labels.encode(frames[name], source=name)) for name in held_out}
    out: dict[str, dict] = {name: {} for name in held_out}
    if spec.majority:
        from tunesmith.baselines.majority import majority_scores

        for name, scores in majority_scores(y_train, y_eval, labels.names).items():
            out[name]["majority"] = scores
    if spec.tfidf:
        from tunesmith.baselines.tfidf import tfidf_scores, texts_of

        scores = tfidf_scores(texts_of(frames["train"]), y_train, {n: texts_of(frames[n]) for n in held_out},
                              y_eval, labels.names, metric=metric, folds=spec.cv_folds, seed=seed,
                              positive=positive)
        for name, split_scores in scores.items():
            out[name]["tfidf"] = split_scores
    return out


def collect_baselines(recipe, task, split_names, run, *, echo: Callable[[str], None] = print) -> dict:
    """Every baseline the recipe asks for, on every held-out split: {split: {name: metrics}}.

    The task supplies its own (`task.baselines(split)`: majority and TF-IDF for classification); the
    scratch baseline is a second training run into RUN/baselines/scratch.
    """
    spec: BaselinesSpec = getattr(recipe, "baselines", None) or BaselinesSpec()
    own = getattr(task, "baselines", None)
    out = {name: dict(_guarded("task", lambda: own(name), echo) or {}) if own is not None else {}
           for name in split_names}
    if spec.scratch:
        from tunesmith.baselines.scratch import train_from_scratch

        scratch = _guarded("scratch", lambda: train_from_scratch(recipe, run.path, echo=echo), echo)
        for name in split_names:
            if scratch is None:
                out[name]["scratch"] = {"skipped": "training from scratch failed (see the run's output)"}
            elif name in scratch["splits"]:
                out[name]["scratch"] = {**scratch["splits"][name], **scratch["run"]}
    for name, found in out.items():
        if found:
            echo(f"baselines on {name}: " + "; ".join(_headline(b, scores) for b, scores in found.items()))
    return out


def _guarded(name: str, compute: Callable[[], Any], echo: Callable[[str], None]):
    """A baseline runs after training, before eval.json is written: its failure is a warning, never the
    loss of the fine-tuned results. An interrupt (Ctrl-C, SIGTERM) still stops the run."""
    from tunesmith.errors import TrainingInterrupted

    try:
        return compute()
    except TrainingInterrupted:
        raise
    except Exception as exc:  # noqa: BLE001
        echo(f"warning: the {name} baseline failed ({type(exc).__name__}: {exc}); the fine-tuned results are kept")
        return None


def _headline(name: str, scores: dict) -> str:
    if scores.get("skipped"):
        return f"{name} skipped ({scores['skipped']})"
    shown = [f"{k} {scores[k]:.4f}" for k in ("accuracy", "macro_f1", "perplexity")  # perplexity: LM tasks
             if isinstance(scores.get(k), float)]
    return f"{name} " + ", ".join(shown)
