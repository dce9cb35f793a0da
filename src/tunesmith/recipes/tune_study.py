"""The Optuna study behind `tunesmith tune` (recipes/tune.py): open or continue it, retry what a stopped process
left unfinished, summarise it, and write TUNE/tune.json, best.yaml and report.html."""

from __future__ import annotations

import json
from pathlib import Path

from tunesmith.artifacts import write_text_atomic
from tunesmith.config.tune import TuneSpec
from tunesmith.errors import RunError
from tunesmith.report.tune import write_tune_report

STUDY_NAME = "tunesmith"


def trial_dir(tune_dir: Path, number: int) -> Path:
    return tune_dir / "trials" / f"{number:03d}"


def open_study(recipe, tune_dir: Path, storage: str | None, direction: str, fingerprint: str):
    """The study in TUNE/study.db (or `storage`), created or continued; RunError when it holds another search."""
    import optuna

    url = storage or f"sqlite:///{(tune_dir / 'study.db').resolve()}"
    try:
        study = optuna.create_study(study_name=STUDY_NAME, storage=url, direction=direction, load_if_exists=True,
                                    pruner=make_pruner(recipe.tune))
    except Exception as exc:  # noqa: BLE001 - a bad URL, an unreachable database: one line
        raise RunError(f"--storage {url}: cannot open the Optuna study ({type(exc).__name__}: "
                       f"{' '.join(str(exc).split())[:200]})") from None
    saved = study.user_attrs.get("fingerprint")
    if saved is None:
        study.set_user_attr("fingerprint", fingerprint)
    elif saved != fingerprint or study.direction.name.lower() != direction:
        raise RunError(f"{tune_dir}: its study was run with another recipe or search space; tune into another "
                       f"--output (or remove {tune_dir} to start over)")
    study.sampler = make_sampler(recipe.tune, recipe.train.seed + len(study.trials))  # resumed: new draws
    return study


def make_sampler(spec: TuneSpec, seed: int):
    import optuna

    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.startup_trials)


def make_pruner(spec: TuneSpec):
    import optuna

    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials, n_warmup_steps=0)
    if spec.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def inside(trial, tune_dir: Path) -> bool:
    run_dir = trial.user_attrs.get("run_dir")
    return run_dir is None or Path(run_dir).resolve().is_relative_to(tune_dir.resolve())


def retry_unfinished(study, tune_dir: Path) -> list[str]:
    """Trials a stopped process left running (killed) or failed without an error (SIGINT/SIGTERM) are enqueued
    again with their values and run directories (resumed from their checkpoints); returns one note each."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    notes = []
    for trial in trials:
        state = trial.state
        if state == TrialState.RUNNING and inside(trial, tune_dir):  # its process is gone: we hold TUNE's lock
            study.tell(trial.number, state=TrialState.FAIL)
            state = TrialState.FAIL
        if state != TrialState.FAIL or "error" in trial.user_attrs or trial.number in retried:
            continue
        if not trial.params or not inside(trial, tune_dir):
            continue
        run_dir = trial.user_attrs["run_dir"]
        study.enqueue_trial(trial.params, user_attrs={"run_dir": run_dir, "retry_of": trial.number},
                            skip_if_exists=False)
        notes.append(f"trial {trial.number} did not finish: it runs again with the same values, resumed in {run_dir}")
    return notes


def finished_count(study) -> int:
    """Trials that count towards --trials: complete, pruned, or failed with an error (not retried)."""
    from optuna.trial import TrialState

    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
               or t.state == TrialState.FAIL and "error" in t.user_attrs)


def study_summary(study, metric: str, direction: str, spec: TuneSpec, wanted: int) -> dict:
    from optuna.trial import TrialState

    rows = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        rows.append({
            "number": trial.number, "state": trial.state.name.lower(), "value": trial.value,
            "values": attrs.get("values", trial.params), "best_step": attrs.get("best_step"),
            "steps": attrs.get("steps"), "seconds": attrs.get("seconds"), "stop_reason": attrs.get("stop_reason"),
            "run_dir": attrs.get("run_dir"), "retry_of": attrs.get("retry_of"), "error": attrs.get("error"),
            "intermediate": {str(step): value for step, value in sorted(trial.intermediate_values.items())},
        })
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    best = None
    if complete:
        trial = study.best_trial
        best = {"number": trial.number, "value": trial.value,
                "values": trial.user_attrs.get("values", trial.params), "run_dir": trial.user_attrs.get("run_dir")}
    return {"metric": metric, "direction": direction, "trials_wanted": wanted, "space": spec.space,
            "pruner": spec.pruner, "sampler": spec.sampler, "best": best, "importances": importances(study),
            "trials": rows}


def importances(study) -> dict | None:
    """Optuna's fANOVA importance of each parameter (over the complete trials), or None while it cannot say."""
    import warnings

    import optuna

    try:
        with warnings.catch_warnings():  # few trials: "may be inaccurate" (the report says how many there are)
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (RuntimeError, ValueError):  # fewer than two complete trials, or no parameter that varies
        return None
    return {name: round(float(value), 4) for name, value in found.items()} or None


def write_outputs(tune_dir: Path, summary: dict, best_recipe) -> dict:
    files = {"summary": str(tune_dir / "tune.json"), "report": str(tune_dir / "report.html")}
    if best_recipe is not None:
        best = summary["best"]
        header = (f"# written by tunesmith tune: trial {best['number']}, validation {summary['metric']} "
                  f"{best['value']:.6g} ({best['run_dir']})\n")
        write_text_atomic(tune_dir / "best.yaml", header + best_recipe.to_yaml())
        files["best_recipe"] = str(tune_dir / "best.yaml")
    write_text_atomic(tune_dir / "tune.json", json.dumps(summary | {"files": files}, indent=2, default=str) + "\n")
    write_tune_report(tune_dir, summary)
    return files
