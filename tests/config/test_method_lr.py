"""train.lr left out: each method brings its own default, said where it comes from (printed, RUN/recipe.yaml,
eval.json); a set rate far below the method's own is called out; tune trials of another method get theirs."""

from __future__ import annotations

import pytest
import yaml

from pipeline_helpers import sentiment_rows, tiny_recipe, write_csv
from tunesmith.config.method import DEFAULT_LR, HEAD_ONLY_LR
from tunesmith.config.recipe import load_recipe, validate_recipe
from tunesmith.recipes.finetune import finetune, learning_rate_note
from tunesmith.recipes.tune_space import base_mapping, trial_recipe

BASE = {"model": "m", "data": {"train": "x.csv"}}


@pytest.mark.parametrize("method, lr", [
    ("full", 5e-5), ("lora", 1e-3), ("dora", 1e-3), ("bitfit", 5e-3),
    ({"name": "freeze"}, HEAD_ONLY_LR),  # all_but_head: only the head trains
    ({"name": "freeze", "freeze": "layers", "layers": 2}, 5e-5), ({"name": "freeze", "freeze": "embeddings"}, 5e-5),
])
def test_each_method_brings_its_default_learning_rate(method, lr):
    recipe = validate_recipe({**BASE, "method": method})
    assert recipe.train.lr == lr and recipe.lr_source == f"the default for method {recipe.method.name}"
    assert "lr" not in recipe.to_mapping()["train"]
    assert validate_recipe(recipe.to_mapping()).train.lr == lr


def test_a_set_learning_rate_is_kept_and_a_full_fine_tuning_rate_under_lora_is_called_out():
    recipe = validate_recipe({**BASE, "method": "lora", "train": {"lr": 1e-4}})
    assert recipe.train.lr == 1e-4 and recipe.lr_source == "the recipe"
    assert recipe.to_mapping()["train"]["lr"] == 1e-4
    assert learning_rate_note(recipe) == (
        "warning: train.lr 0.0001 is 10x below method lora's default (0.001): a full fine-tuning rate under lora "
        "often learns little. Leave train.lr out to use the default, or try --set train.lr=0.001")
    assert learning_rate_note(validate_recipe({**BASE, "train": {"lr": 1e-4}})) == "train.lr 0.0001: set in the recipe"
    assert learning_rate_note(validate_recipe({**BASE, "method": "lora", "train": {"lr": 5e-4}})).startswith(
        "train.lr 0.0005: set")  # 2x below: a choice, not a mistake
    assert learning_rate_note(validate_recipe({**BASE, "method": "lora"})) == (
        "train.lr 0.001: the default for method lora (train.lr not set; full fine-tuning's is 5e-05)")
    assert load_recipe(None, ["method.name=lora"], base=dict(BASE)).train.lr == DEFAULT_LR["lora"]  # --set


def test_the_default_is_printed_and_saved_in_the_run(tiny_bert_dir, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(40, seed=1))
    raw = tiny_recipe(tiny_bert_dir, train, tmp_path / "run", epochs=1)
    del raw["train"]["lr"]
    raw["method"] = "lora"
    lines = []
    result = finetune(validate_recipe(raw), echo=lines.append)
    assert "train.lr 0.001: the default for method lora (train.lr not set; full fine-tuning's is 5e-05)" in lines
    assert result["learning_rate"] == {"value": 1e-3, "source": "the default for method lora"}
    text = (tmp_path / "run" / "recipe.yaml").read_text()
    assert text.startswith("# train.lr 0.001: the default for method lora\n")
    saved = yaml.safe_load(text)
    assert saved["train"]["lr"] == 1e-3  # explicit in the run: resuming or repeating it uses the same rate
    assert load_recipe(tmp_path / "run" / "recipe.yaml").lr_source == "the recipe"


def test_a_tune_trial_of_another_method_gets_that_methods_default():
    recipe = validate_recipe({**BASE, "tune": {"space": {"method.name": ["full", "lora"]}}})
    base = base_mapping(recipe)
    assert trial_recipe(base, {"method.name": "lora"}, "out/1", "r").train.lr == 1e-3
    assert trial_recipe(base, {"method.name": "full"}, "out/0", "r").train.lr == 5e-5
    fixed = validate_recipe({**BASE, "train": {"lr": 3e-4}, "tune": {"space": {"method.name": ["full", "lora"]}}})
    assert trial_recipe(base_mapping(fixed), {"method.name": "lora"}, "out/1", "r").train.lr == 3e-4
