"""The registry-driven matrix (PEFT's habit): every task in tunesmith.tasks.TASKS runs through the same
contract, training, saving, reloading and inference checks the moment it is registered, with full
fine-tuning and with LoRA. A registered task without a fixture in task_fixtures.py fails here."""

from __future__ import annotations

import inspect
import json

import pytest
import yaml

from task_fixtures import TASK_FIXTURES
from tunesmith.config.recipe import load_recipe, validate_recipe
from tunesmith.recipes.finetune import finetune
from tunesmith.recipes.generate import TrainedLM
from tunesmith.recipes.predict import TrainedRun
from tunesmith.tasks import TASKS, make_task, task_class
from tunesmith.errors import RecipeError

TASK_NAMES = sorted(TASKS)


@pytest.fixture
def models(tiny_bert_dir, tiny_gpt2_dir, tiny_llama_dir):
    return {"bert": tiny_bert_dir, "gpt2": tiny_gpt2_dir, "llama": tiny_llama_dir}


def test_every_registered_task_has_a_fixture():
    assert set(TASKS) == set(TASK_FIXTURES), "add the new task to tests/tasks/task_fixtures.py"


@pytest.mark.parametrize("name", TASK_NAMES)
def test_the_task_declares_the_contract(name):
    cls = task_class(name)
    assert cls.name == name and not inspect.isabstract(cls), f"{cls.__name__} leaves hooks unimplemented"
    assert cls.default_metric in cls.metric_names and "loss" in cls.metric_names
    assert cls.inference in ("predict", "generate")
    assert set(cls.bounded_metrics) <= set(cls.metric_names)
    recipe = validate_recipe({"model": "m", "task": name, "data": {"train": "t.csv"}})
    task = make_task(recipe)
    assert {task.metric_mode(m) for m in cls.metric_names} <= {"max", "min"} and task.metric_mode("loss") == "min"
    assert task.stop_metric == cls.default_metric


def test_an_unknown_task_is_a_recipe_error_with_a_close_match():
    recipe = validate_recipe({"model": "m", "task": "regresion", "data": {"train": "t.csv"}})
    with pytest.raises(RecipeError, match="unknown task 'regresion' \\(did you mean 'regression'\\?\\)"):
        make_task(recipe)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_a_metric_of_another_task_is_refused(name):
    foreign = "perplexity" if "perplexity" not in task_class(name).metric_names else "macro_f1"
    recipe = validate_recipe({"model": "m", "task": name, "data": {"train": "t.csv"},
                              "train": {"early_stopping": {"metric": foreign}}})
    with pytest.raises(RecipeError, match=f"'{foreign}' is not a {name} metric"):
        make_task(recipe)


@pytest.mark.parametrize("method", ["full", "lora"])
@pytest.mark.parametrize("name", TASK_NAMES)
def test_train_save_reload_and_use(name, method, models, tmp_path, request):
    case = TASK_FIXTURES[name](models, tmp_path)
    request.node.add_marker(pytest.mark.preflight_expected(*case.get("preflight_expected", ())))
    raw = case["raw"]
    raw["method"] = method
    raw["baselines"] = False
    raw.setdefault("report", {})["html"] = False
    if method == "lora":
        raw["train"]["max_steps"] = 3
    recipe = validate_recipe(raw)
    before = recipe.model_dump(mode="json")
    result = finetune(recipe, echo=lambda line: None)
    assert recipe.model_dump(mode="json") == before, "the validated recipe was written to"

    run = tmp_path / "run"
    task = task_class(name)
    stop = task.default_metric
    assert result["best"]["metric"] == stop and result["task"] == name
    assert set(task.summary_columns) - {"n"} <= set(result["validation"]) | {"tokens"}
    assert json.loads((run / "eval.json").read_text())["best"] == result["best"]
    saved = yaml.safe_load((run / "recipe.yaml").read_text())
    assert saved["train"]["early_stopping"]["metric"] == stop, "derived settings go to RUN/recipe.yaml"
    assert load_recipe(run / "recipe.yaml").task == name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(r["type"] == "eval" and stop in r for r in records)

    if task.inference == "predict":
        trained = TrainedRun(run)
        frame = trained.predict_texts([case["predict_text"]])
        assert any(c.startswith("prediction") for c in frame.columns) and len(frame) == 1
        evaluated = trained.evaluate_file(str(raw["data"]["train"]), columns=raw["data"].get("columns"))
        assert stop in evaluated and evaluated["n" if "n" in evaluated else stop] is not None
    else:
        texts = TrainedLM(run).generate([case["prompt"]], max_new_tokens=4, temperature=0.0)
        assert len(texts) == 1 and isinstance(texts[0], str)
