"""Optional experiment trackers, through Accelerate's tracker integration.

    report: {trackers: [tensorboard]}     # or [mlflow], or both; default: none (the run directory only)

The run directory stays the record (metrics.jsonl, eval.json); a tracker gets the same numbers as it
goes: `train/loss`, `train/lr`, `validation/<metric>` at their step, the flattened recipe as
hyper-parameters, and the final metrics of the best model as `best/<split>/<metric>`.

    tensorboard  RUN/tensorboard (`tensorboard --logdir RUN/tensorboard`); needs the `tensorboard` package or
                 the smaller `tensorboardX` (pinned in requirements.txt)
    mlflow       experiment "tunesmith", run named after the run directory, stored where mlflow's own
                 settings say (MLFLOW_TRACKING_URI; default ./mlruns); needs `pip install mlflow`

A tracker named in the recipe but not installed is a RecipeError before any data or model is loaded.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

from tunesmith.errors import RecipeError

PROJECT = "tunesmith"
INSTALL = {"tensorboard": "pip install tensorboardX (or tensorboard)", "mlflow": "pip install mlflow"}


def _available(name: str) -> bool:
    from accelerate.utils import is_mlflow_available, is_tensorboard_available

    return {"tensorboard": is_tensorboard_available, "mlflow": is_mlflow_available}[name]()


def make_trackers(recipe, output=None) -> list:
    """Accelerate tracker objects for the recipe's `report.trackers` (empty list when none), logging under
    `output` (default: the recipe's output; the run directory being written).

    Raises RecipeError naming the package to install when a tracker's library is missing.
    """
    spec = getattr(recipe, "report", None)
    names = list(getattr(spec, "trackers", None) or [])
    for name in names:
        if not _available(name):
            raise RecipeError(f"report.trackers: '{name}' is not installed: {INSTALL[name]}, "
                              f"or remove it from report.trackers")
    trackers = []
    output = Path(output or recipe.output)
    for name in names:
        if name == "tensorboard":
            from accelerate.tracking import TensorBoardTracker

            trackers.append(TensorBoardTracker("tensorboard", output))
        elif name == "mlflow":
            from accelerate.tracking import MLflowTracker

            trackers.append(MLflowTracker(PROJECT, run_name=Path(recipe.output).name or PROJECT))
    return trackers


def start_tracking(accelerator, recipe, write: Callable[[dict], None]) -> Callable[[dict], None]:
    """Start the Accelerator's trackers (if any); return the logger for the loop: the run directory's
    `write` and, when trackers run, `accelerator.log` of the record's numbers too."""
    if not getattr(accelerator, "log_with", None):
        return write
    accelerator.init_trackers(PROJECT, config=hyperparameters(recipe))

    def log(record: dict) -> None:
        write(record)
        values, step = tracker_values(record)
        if values:
            accelerator.log(values, step=step)

    return log


def finish_tracking(accelerator) -> None:
    """Flush and close the trackers (not `end_training`, which would also tear down the process group)."""
    for tracker in getattr(accelerator, "trackers", None) or []:
        tracker.finish()


def tracker_values(record: dict) -> tuple[dict, int | None]:
    """A metrics.jsonl record -> ({"train/loss": ..., "validation/macro_f1": ...}, step)."""
    kind = record.get("type")
    if kind == "train":
        prefix = "train"
    elif kind == "eval":
        split = record.get("split", "validation")
        prefix = f"best/{split}" if record.get("final") else split
    else:
        prefix = str(kind or "other")
    skip = {"type", "split", "step", "final", "is_best"}
    values = {f"{prefix}/{k}": float(v) for k, v in record.items()
              if k not in skip and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    step = record.get("step")
    return values, int(step) if isinstance(step, (int, float)) else None


def hyperparameters(recipe) -> dict:
    """The recipe flattened to dotted keys with scalar values (what TensorBoard's hparams accept)."""
    flat = {}
    for key, value in flatten(recipe.model_dump(mode="json")).items():
        flat[key] = value if isinstance(value, (bool, int, float, str)) else json.dumps(value)
    return flat


def flatten(mapping: dict, prefix: str = "") -> dict:
    """{"train": {"lr": 1}} -> {"train.lr": 1}; lists stay values."""
    out = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out
