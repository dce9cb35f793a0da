"""tunesmith tune: the search space checked before any trial, trials as ordinary runs, pruning, best.yaml, the
report, and a killed study continued without repeating its finished trials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline_helpers import sentiment_rows, tiny_recipe, write_csv
from tunesmith.cli import main
from tunesmith.config.recipe import load_recipe, validate_recipe
from tunesmith.errors import RecipeError
from tunesmith.recipes.finetune import finetune
from tunesmith.recipes.tune import tune
from tunesmith.recipes.tune_space import check_space, sample_values, base_mapping

# trials sample learning rates over a range, some far below the method's default on purpose (weak trials get
# pruned): their preflight lr_below_method warnings are expected
pytestmark = pytest.mark.preflight_fault

SRC = Path(__file__).resolve().parents[2] / "src"


def quiet(*_args, **_kwargs):
    pass


def recipe_with_space(tmp_path: Path, model_dir: Path, space: dict, rows: int = 64, baselines: bool = False,
                      **tune_settings) -> dict:
    train = write_csv(tmp_path / "train.csv", sentiment_rows(rows, seed=3))
    raw = tiny_recipe(model_dir, train, tmp_path / "run", epochs=2, eval_every=4)
    raw["baselines"] = baselines
    raw["tune"] = {"space": space, **tune_settings}
    return raw


def write_recipe(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


# --- the space, before any trial ----------------------------------------------------------------------------

@pytest.mark.parametrize("space, message", [
    ({"train.lrr": [1e-3]}, "tune.space 'train.lrr': section 'train' has no key 'lrr' (did you mean 'train.lr'?)"),
    ({"trian.lr": [1e-3]}, "tune.space 'trian.lr': the recipe has no key 'trian' (did you mean 'train.lr'?)"),
    ({"train": [1]}, "tune.space 'train' is a section; search its keys, e.g. 'train.epochs'"),
    ({"train.lr.x": [1]}, "tune.space 'train.lr.x': 'train.lr' is a value, not a section"),
    ({"output": ["a", "b"]}, "tune.space 'output' cannot be searched: each trial writes its own run directory"),
    ({"train.early_stopping.metric": ["loss"]},
     "tune.space 'train.early_stopping.metric' cannot be searched: it is the objective every trial is compared on"),
    ({"method.r": [4, 8]}, "tune.space 'method.r': an option of lora and dora, but the method is only ever full; "
                           "search method.name too, or drop it"),
    ({"train.batch_size": [0, 8]}, "tune.space gives an invalid trial (train.batch_size=0): key 'train.batch_size'"),
    ({"method.name": ["full", "lorra"]}, "tune.space gives an invalid trial (method.name='lorra'): key 'method.name'"),
])
def test_a_bad_space_is_one_line_naming_the_key(tmp_path, space, message):
    raw = recipe_with_space(tmp_path, tmp_path / "model", space)
    with pytest.raises(RecipeError) as caught:
        check_space(validate_recipe(raw), "recipe.yaml")
    assert str(caught.value).startswith("recipe.yaml: ")
    assert message in str(caught.value)


@pytest.mark.parametrize("value, message", [
    ({"log_uniform": [0, 1e-3]}, "space: 'train.lr': log_uniform: a log range needs low > 0 (got 0)"),
    ({"uniform": [0.2, 0.1]}, "space: 'train.lr': uniform: low (0.2) must be below high (0.1)"),
    ({"int": [1.5, 3]}, "space: 'train.lr': int: the bounds must be whole numbers (got 1.5, 3)"),
    ({"uniform": [0, 1], "step": 2}, "space: 'train.lr': uniform: step must be a number in (0, high - low] (got 2)"),
    ({"between": [1, 2]}, "space: 'train.lr': a range is one of log_uniform, uniform, int, log_int"),
    ([], "space: 'train.lr': an empty list of choices"),
    ([1e-3, 1e-3], "space: 'train.lr': a choice is listed twice"),
])
def test_an_impossible_range_is_refused_by_the_schema(tmp_path, value, message):
    raw = recipe_with_space(tmp_path, tmp_path / "model", {"train.lr": value})
    with pytest.raises(RecipeError) as caught:
        validate_recipe(raw)
    assert "tune.space" in str(caught.value) and message in str(caught.value)


def test_a_bad_space_stops_the_command_before_any_trial(tmp_path, capsys):
    raw = recipe_with_space(tmp_path, tmp_path / "model", {"method.alpha": [8, 16]})
    path = write_recipe(tmp_path, raw)
    assert main(["tune", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and "method.alpha" in err
    assert not (tmp_path / "run-tune").exists()  # nothing written


def test_method_options_are_sampled_only_under_their_method(tmp_path):
    raw = recipe_with_space(tmp_path, tmp_path / "model", {"method.name": ["full", "lora"], "method.r": [2, 4],
                                                           "train.lr": {"log_uniform": [1e-4, 1e-2]}})
    recipe = validate_recipe(raw)
    dimensions = check_space(recipe, "recipe.yaml")  # r is valid: lora is a candidate
    asked = []

    def pick(dimension):
        asked.append(dimension.key)
        return {"method.name": "full", "train.lr": 1e-3}.get(dimension.key, 4)

    assert sample_values(dimensions, base_mapping(recipe), pick) == {"method.name": "full", "train.lr": 1e-3}
    assert asked == ["method.name", "train.lr"]  # method first; r never asked under full


# --- trials --------------------------------------------------------------------------------------------------

def test_a_judge_stops_a_run_at_an_evaluation(tiny_bert_dir, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(64, seed=3))
    recipe = validate_recipe(tiny_recipe(tiny_bert_dir, train, tmp_path / "run", epochs=2, eval_every=2))
    seen = []

    def judge(value, step):
        seen.append(step)
        return "stopped by the judge" if step == 4 else None

    result = finetune(recipe, echo=quiet, judge=judge)
    assert result["stop_reason"] == "stopped by the judge" and result["steps"] == 4
    assert seen == [2, 4]
    assert (tmp_path / "run" / "model").is_dir()  # a finished run with its best model


def test_a_study_runs_trials_as_runs_and_writes_best_yaml_and_report(tiny_bert_dir, tmp_path, capsys):
    raw = recipe_with_space(tmp_path, tiny_bert_dir, {"train.lr": {"log_uniform": [1e-4, 3e-3]},
                                                      "method.name": ["full", "lora"], "method.r": [2, 4]},
                            trials=3, sampler="random", baselines=True)
    path = write_recipe(tmp_path, raw)
    assert main(["tune", str(path), "--output", str(tmp_path / "study")]) == 0
    summary = json.loads((tmp_path / "study" / "tune.json").read_text())
    assert [row["state"] for row in summary["trials"]].count("complete") + \
        [row["state"] for row in summary["trials"]].count("pruned") == 3
    for row in summary["trials"]:
        run = Path(row["run_dir"])
        assert run == tmp_path / "study" / "trials" / f"{row['number']:03d}"
        result = json.loads((run / "eval.json").read_text())  # every trial an ordinary, finished run
        assert result["baselines"] == {"validation": {}}  # trials skip the baselines (the same for all)
        saved = yaml.safe_load((run / "recipe.yaml").read_text())
        assert saved["train"]["lr"] == pytest.approx(row["values"]["train.lr"])
        assert saved["method"]["name"] == row["values"]["method.name"]
        assert ("r" in saved["method"]) == (row["values"]["method.name"] == "lora")
        assert ("method.r" in row["values"]) == (row["values"]["method.name"] == "lora")
        if row["state"] == "complete":
            assert row["value"] == pytest.approx(result["best"]["value"])
    complete = [row for row in summary["trials"] if row["state"] == "complete"]
    best = max(complete, key=lambda row: row["value"])
    assert summary["best"]["number"] == best["number"]
    best_recipe = load_recipe(tmp_path / "study" / "best.yaml")  # a valid recipe with the best values
    assert best_recipe.train.lr == pytest.approx(best["values"]["train.lr"])
    assert best_recipe.method.name == best["values"]["method.name"]
    assert best_recipe.output == str(tmp_path / "run") and best_recipe.tune is None
    assert best_recipe.baselines.enabled == ["majority", "tfidf"]  # the recipe's own, not the trials' override
    report = (tmp_path / "study" / "report.html").read_text()
    assert "optimisation history" in report and f"trial {best['number']}" in report
    out = capsys.readouterr().out
    assert "best: trial" in out and "best.yaml" in out


def test_a_weak_trial_is_pruned_at_an_evaluation(tiny_bert_dir, tmp_path):
    raw = recipe_with_space(tmp_path, tiny_bert_dir, {"train.lr": [5e-3, 1e-7]}, rows=96, trials=2,
                            sampler="random", startup_trials=1, warmup_evals=1)
    raw["train"].update(seed=PRUNE_SEED, epochs=3)  # the random sampler draws 5e-3 first, then 1e-7
    summary = tune(validate_recipe(raw), "recipe.yaml", output=str(tmp_path / "study"), echo=quiet)
    first, second = summary["trials"]
    assert first["values"] == {"train.lr": 5e-3} and second["values"] == {"train.lr": 1e-7}
    assert first["state"] == "complete" and first["steps"] == 27  # 72 rows / 8 = 9 steps an epoch
    good_at_24 = first["intermediate"]["24"]
    assert good_at_24 > second["intermediate"]["24"]  # the tiny model learns only after step 20
    # below trial 0 at step 24 (the median of one trial), the first evaluation where they differ: stopped there
    assert second["state"] == "pruned" and second["steps"] == 24
    assert second["stop_reason"].startswith("pruned by tune at step 24 (macro_f1 ")
    assert list(second["intermediate"]) == ["4", "8", "12", "16", "20", "24"]
    assert summary["best"]["number"] == 0
    assert (Path(second["run_dir"]) / "eval.json").is_file()  # a pruned trial is a finished run too


PRUNE_SEED = 10


def test_a_killed_study_continues_without_repeating_finished_trials(tiny_bert_dir, tmp_path):
    raw = recipe_with_space(tmp_path, tiny_bert_dir, {"train.lr": {"log_uniform": [1e-4, 3e-3]}}, rows=96,
                            trials=3, sampler="random", pruner="none")
    raw["train"].update(epochs=6)
    path = write_recipe(tmp_path, raw)
    command = [sys.executable, "-m", "tunesmith.cli", "tune", str(path), "--output", str(tmp_path / "study")]
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = tmp_path / "study" / "trials" / "001" / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not second.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # mid-trial 1: trial 0 has finished
    process.wait(timeout=60)
    first_eval = tmp_path / "study" / "trials" / "000" / "eval.json"
    assert first_eval.is_file() and not (tmp_path / "study" / "trials" / "001" / "eval.json").exists()
    stamp = first_eval.stat().st_mtime_ns

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "trial 1 did not finish: it runs again with the same values, resumed in" in rerun.stdout
    summary = json.loads((tmp_path / "study" / "tune.json").read_text())
    states = [(row["number"], row["state"], row["retry_of"]) for row in summary["trials"]]
    assert states == [(0, "complete", None), (1, "fail", None), (2, "complete", 1), (3, "complete", None)]
    assert first_eval.stat().st_mtime_ns == stamp  # trial 0 was not run again
    retry = summary["trials"][2]
    assert retry["values"] == summary["trials"][1]["values"]
    assert retry["run_dir"] == str(tmp_path / "study" / "trials" / "001")


def test_storage_timeout_and_pruner_options_reach_optuna(tiny_bert_dir, tmp_path):
    import optuna

    from tunesmith.recipes.tune_study import make_pruner, make_sampler

    raw = recipe_with_space(tmp_path, tiny_bert_dir, {"train.lr": {"log_uniform": [1e-4, 3e-3]}}, trials=5)
    storage = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    summary = tune(validate_recipe(raw), "recipe.yaml", storage=storage, timeout_s=0.001,
                   output=str(tmp_path / "study"), echo=quiet)
    assert len(summary["trials"]) == 1  # the timeout stops new trials; the running one finishes
    assert (tmp_path / "elsewhere.db").is_file() and not (tmp_path / "study" / "study.db").exists()
    loaded = optuna.load_study(study_name="tunesmith", storage=storage)
    assert [t.state.name for t in loaded.trials] == ["COMPLETE"]
    spec = validate_recipe({**raw, "tune": {**raw["tune"], "pruner": "halving", "sampler": "random"}}).tune
    assert isinstance(make_pruner(spec), optuna.pruners.SuccessiveHalvingPruner)
    assert isinstance(make_sampler(spec, 0), optuna.samplers.RandomSampler)
    spec = validate_recipe({**raw, "tune": {**raw["tune"], "pruner": "none"}}).tune
    assert isinstance(make_pruner(spec), optuna.pruners.NopPruner)
    assert isinstance(make_sampler(spec, 0), optuna.samplers.TPESampler)


def test_a_tune_directory_of_other_files_or_another_space_is_refused(tiny_bert_dir, tmp_path, capsys):
    raw = recipe_with_space(tmp_path, tiny_bert_dir, {"train.lr": [1e-3]}, trials=1)
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("keep me")
    path = write_recipe(tmp_path, raw)
    assert main(["tune", str(path), "--output", str(tmp_path / "theirs")]) == 2
    assert "not a tunesmith tune directory (holds notes.txt)" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "theirs").iterdir()) == ["notes.txt"]
    assert main(["tune", str(path), "--output", str(tmp_path / "study")]) == 0
    raw["tune"]["space"] = {"train.lr": [2e-3]}
    path = write_recipe(tmp_path, raw)
    capsys.readouterr()
    assert main(["tune", str(path), "--output", str(tmp_path / "study")]) == 2
    assert "its study was run with another recipe or search space" in capsys.readouterr().err
