"""Every baseline of a run, after training: the task's own (majority, TF-IDF, the pretrained LM...) and
the scratch run (the same architecture from random weights, RUN/baselines/scratch): {split: {name: metrics}}."""

from __future__ import annotations

from typing import Any, Callable

from tunesmith.config.baselines import BaselinesSpec
from tunesmith.errors import TrainingInterrupted
from tunesmith.recipes.scratch import train_from_scratch
from tunesmith.train.distributed import main_process


def collect_baselines(recipe, task, split_names, run, *, finetune: Callable, echo: Callable[[str], None] = print) -> dict:
    """Every baseline the recipe asks for, on every held-out split: {split: {name: metrics}}.

    The task supplies its own (`task.baselines(split)`: majority and TF-IDF for classification), computed by the
    main process only in a multi-process run (the others' results are never written); the scratch baseline is a
    second training run into RUN/baselines/scratch, which every process trains together.
    """
    spec: BaselinesSpec = recipe.baselines
    own = (_guarded("task", lambda: task.baselines(list(split_names)), echo) if main_process() else None) or {}
    out = {name: dict(own.get(name) or {}) for name in split_names}
    if spec.scratch:
        scratch = _guarded("scratch", lambda: train_from_scratch(recipe, run.path, finetune=finetune, echo=echo),
                           echo)
        for name in split_names:
            if scratch is None:
                out[name]["scratch"] = {"skipped": "training from scratch failed (see the run's output)"}
            elif name in scratch["splits"]:
                out[name]["scratch"] = {**scratch["splits"][name], **scratch["run"]}
    for name, found in out.items():
        if found:
            echo(f"baselines on {name}: " + "; ".join(_headline(b, scores, task.summary_columns) for b, scores in found.items()))
    return out


def _guarded(name: str, compute: Callable[[], Any], echo: Callable[[str], None]):
    """A baseline runs after training, before eval.json is written: its failure is a warning, never the
    loss of the fine-tuned results. An interrupt (Ctrl-C, SIGTERM) still stops the run."""
    try:
        return compute()
    except TrainingInterrupted:
        raise
    except Exception as exc:  # noqa: BLE001
        echo(f"warning: the {name} baseline failed ({type(exc).__name__}: {exc}); the fine-tuned results are kept")
        return None


def _headline(name: str, scores: dict, columns) -> str:
    if scores.get("skipped"):
        return f"{name} skipped ({scores['skipped']})"
    shown = [f"{k} {scores[k]:.4f}" for k in columns if k != "loss" and isinstance(scores.get(k), float)]
    return f"{name} " + ", ".join(shown)
