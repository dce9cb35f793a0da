"""`tunesmith tune RECIPE`: search the recipe's `tune.space` with Optuna; every trial an ordinary run.

    TUNE/                 (--output; default: the recipe's output + "-tune")
      study.db            the Optuna study (SQLite; --storage names any Optuna storage URL instead)
      trials/000/ ...     one run directory per trial (recipe.yaml, eval.json, model/, report.html)
      tune.json           every trial: its values, state, objective, steps, seconds, run directory
      best.yaml           the recipe with the best trial's values: `tunesmith train best.yaml`
      report.html         the trials, the optimisation history, the parameters' importances

The objective is the early-stopping metric on validation (the task's default or train.early_stopping.metric),
maximised or minimised as the task says, taken at each trial's best evaluation. After each evaluation a trial
reports the metric to the pruner (median or successive halving), which may stop it; a pruned trial still
finishes as a run (its best model saved and evaluated). Trials run without baselines (they are the same for
every trial): `tunesmith train best.yaml` gives the full report.

Rerunning the same command continues the study: finished trials (complete, pruned, failed with an error) are
counted, not repeated, until `--trials` are done. A trial the previous process left unfinished (killed, or
stopped by SIGINT/SIGTERM with a checkpoint) is tried again with the same values in its own run directory,
resumed from its newest checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable

from tunesmith.artifacts import write_text_atomic
from tunesmith.config.recipe import Recipe, validate_recipe
from tunesmith.config.tune import Dimension
from tunesmith.errors import RunError, TrainingError, TrainingInterrupted, shown
from tunesmith.recipes.finetune import finetune
from tunesmith.recipes.tune_space import apply_values, base_mapping, check_space, sample_values, trial_recipe
from tunesmith.recipes.tune_study import (finished_count, open_study, retry_unfinished, study_summary,
                                          trial_dir, write_outputs)
from tunesmith.tasks import make_task
from tunesmith.train.run_lock import RunLock

MARKER = ".tunesmith-tune.json"
OWN_FILES = {MARKER, ".tunesmith.lock", "study.db", "study.db-journal", "trials", "tune.json", "best.yaml",
             "report.html"}


def tune(recipe: Recipe, source: str, *, trials: int | None = None, timeout_s: float | None = None,
         storage: str | None = None, output: str | None = None, echo: Callable = print) -> dict:
    """Run (or continue) the study; return its summary (also TUNE/tune.json)."""
    dimensions = check_space(recipe, source)  # before anything is written
    task = make_task(recipe)
    metric = task.stop_metric
    direction = "maximize" if task.metric_mode(metric) == "max" else "minimize"
    tune_dir = Path(output or f"{recipe.output}-tune")
    claim_tune_dir(tune_dir, source)
    wanted = trials or recipe.tune.trials
    with RunLock(tune_dir, echo):
        study = open_study(recipe, tune_dir, storage, direction, space_fingerprint(recipe))
        for note in retry_unfinished(study, tune_dir):
            echo(f"note: {note}")
        done = finished_count(study)
        remaining = max(wanted - done, 0)
        echo(f"tuning {metric} ({direction}) over {len(dimensions)} keys: {done} of {wanted} trials done, "
             f"{remaining} to run; study in {tune_dir}")
        objective = Objective(recipe, source, dimensions, tune_dir, metric, echo)
        if remaining:
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            study.optimize(objective, n_trials=remaining, timeout=timeout_s, catch=(TrainingError,))
        summary = study_summary(study, metric, direction, recipe.tune, wanted)
        best_recipe = None
        if summary["best"] is not None:
            best_recipe = validate_recipe(apply_values(base_mapping(recipe), summary["best"]["values"]), source)
        summary["files"] = write_outputs(tune_dir, summary, best_recipe)
    return summary


class Objective:
    """One trial: sample the values, train the trial's recipe with the pruner as its early-stopping judge."""

    def __init__(self, recipe: Recipe, source: str, dimensions: list[Dimension], tune_dir: Path, metric: str,
                 echo: Callable):
        self.source, self.dimensions = source, dimensions
        self.base = base_mapping(recipe)
        self.tune_dir, self.metric, self.echo = tune_dir, metric, echo
        self.spec = recipe.tune

    def __call__(self, trial) -> float:
        import optuna

        values = sample_values(self.dimensions, self.base, lambda dimension: suggest(trial, dimension))
        run_dir = trial.user_attrs.get("run_dir") or str(trial_dir(self.tune_dir, trial.number))
        trial.set_user_attr("run_dir", run_dir)
        trial.set_user_attr("values", values)
        shown_values = ", ".join(f"{key}={format_value(value)}" for key, value in values.items())
        self.echo(f"trial {trial.number}: {shown_values} -> {run_dir}")
        started = time.perf_counter()
        try:
            result = finetune(trial_recipe(self.base, values, run_dir, self.source), echo=self.echo,
                              judge=self.judge(trial))
        except TrainingInterrupted:
            trial.set_user_attr("interrupted", True)  # tried again, resumed, when tune is run again
            raise
        except TrainingError as exc:
            trial.set_user_attr("error", str(exc))
            self.echo(f"trial {trial.number} failed: {exc}")
            raise
        trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
        trial.set_user_attr("steps", result.get("steps"))
        trial.set_user_attr("stop_reason", result.get("stop_reason"))
        best = result["best"]
        trial.set_user_attr("best_step", best.get("step"))
        self.echo(f"trial {trial.number}: best {self.metric} {format_value(best['value'])} at step {best['step']}"
                  f" ({result.get('stop_reason')})")
        if str(result.get("stop_reason", "")).startswith(PRUNED):
            raise optuna.TrialPruned(result["stop_reason"])
        if best["value"] is None:
            message = f"trial {trial.number} ended without a validation {self.metric}"
            trial.set_user_attr("error", message)  # failed, counted, not retried
            raise TrainingError(message)
        return float(best["value"])

    def judge(self, trial):
        """After each validation: report the value; the pruner's word decides whether the trial stops here."""
        evaluations = 0
        warmup = self.spec.warmup_evals

        def decide(value: float, step: int) -> str | None:
            nonlocal evaluations
            evaluations += 1
            trial.report(float(value), step)
            if evaluations > warmup and trial.should_prune():
                return f"{PRUNED} at step {step} ({self.metric} {value:.4f}; pruner: {self.spec.pruner})"
            return None

        return decide


PRUNED = "pruned by tune"


def suggest(trial, dimension: Dimension):
    """The trial's value for one dimension (Optuna's suggest_* by the dimension's kind)."""
    name = dimension.key
    if dimension.kind == "choice":
        return trial.suggest_categorical(name, list(dimension.choices))
    if dimension.kind in ("int", "log_int"):
        return trial.suggest_int(name, dimension.low, dimension.high, step=dimension.step or 1,
                                 log=dimension.kind == "log_int")
    return trial.suggest_float(name, dimension.low, dimension.high, step=dimension.step,
                               log=dimension.kind == "log_uniform")


def format_value(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else shown(value)


def space_fingerprint(recipe: Recipe) -> str:
    """What a study's trials are comparable under: the base recipe (without output/tune) and the space."""
    base = {k: v for k, v in recipe.model_dump(mode="json").items() if k not in ("output", "tune", "resume",
                                                                                  "overwrite")}
    text = json.dumps({"recipe": base, "space": recipe.tune.space}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def claim_tune_dir(tune_dir: Path, source: str) -> None:
    """TUNE is new, empty, or a tune directory; never a directory of other files (nothing of theirs is touched)."""
    if tune_dir.exists() and not tune_dir.is_dir():
        raise RunError(f"{tune_dir}: exists and is not a directory; choose another --output")
    if tune_dir.is_dir() and not (tune_dir / MARKER).is_file() and any(tune_dir.iterdir()):
        names = sorted(p.name for p in tune_dir.iterdir())
        foreign = [name for name in names if name not in OWN_FILES]  # the user's files named first
        raise RunError(f"{tune_dir}: not a tunesmith tune directory (holds {', '.join((foreign or names)[:3])}); "
                       f"choose another --output")
    tune_dir.mkdir(parents=True, exist_ok=True)
    if not (tune_dir / MARKER).is_file():
        write_text_atomic(tune_dir / MARKER, json.dumps({"format": "tunesmith-tune/1", "recipe": source}) + "\n")
