"""The recipe: validation messages name the key, overrides apply, the resolved recipe round-trips."""

import pytest
import yaml

from tunesmith.errors import RecipeError
from tunesmith.config.recipe import load_recipe

BASE = {"model": "minilm", "data": {"train": "train.csv"}}


def load(*overrides, base=None):
    return load_recipe(None, list(overrides), base=yaml.safe_load(yaml.safe_dump(base or BASE)))


def test_defaults_are_filled_in():
    recipe = load()
    assert recipe.task == "classification"
    assert recipe.train.optimizer == "adamw" and recipe.train.lr == 5e-5 and recipe.train.epochs == 3
    assert recipe.data.validation.split == 0.2 and recipe.data.validation.stratify is True
    assert recipe.data.columns == {"text": "text", "label": "label"}


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.lrr=3e-5", "unknown key 'train.lrr' (did you mean 'train.lr'?)"),
        ("trian.lr=1", "unknown key 'trian' (did you mean 'train'?)"),
        ("train.early_stopping.patiance=2", "did you mean 'train.early_stopping.patience'?"),
        ("train.lr=-1", "key 'train.lr': Input should be greater than 0"),
        ("train.optimizer=adamx", "key 'train.optimizer'"),
        ("train.batch_size=abc", "key 'train.batch_size'"),
        ("train.eval_every=0", "must be 'epoch' or a positive number of steps"),
        ("data.validation.split=1.5", "key 'data.validation.split'"),
        ("data.columns.foo=1", "unknown column role 'foo'"),
        ("train.precision=fp8", "key 'train.precision'"),
    ],
)
def test_bad_values_name_the_key(override, expected):
    with pytest.raises(RecipeError) as info:
        load(override)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_required_key():
    with pytest.raises(RecipeError, match="missing key 'model'"):
        load_recipe(None, [], base={"data": {"train": "x.csv"}})


def test_overrides_apply_with_yaml_types():
    recipe = load("train.lr=3e-5", "train.eval_every=50", "data.validation=dev.tsv", "output=runs/x")
    assert recipe.train.lr == pytest.approx(3e-5)
    assert recipe.train.eval_every == 50
    assert recipe.data.validation.path == "dev.tsv" and recipe.data.validation.split is None
    assert recipe.output == "runs/x"


def test_override_needs_key_value():
    with pytest.raises(RecipeError, match="expected KEY=VALUE"):
        load("train.lr")


def test_resolved_recipe_round_trips(tmp_path):
    recipe = load("train.lr=1e-4")
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe.to_yaml())
    assert load_recipe(path) == recipe


def test_yaml_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: minilm\ndata: [unclosed\n")
    with pytest.raises(RecipeError, match=r"bad\.yaml, line \d+: not valid YAML"):
        load_recipe(path)
    with pytest.raises(RecipeError, match="recipe file does not exist"):
        load_recipe(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(RecipeError, match="a recipe is a YAML mapping"):
        load_recipe(tmp_path / "list.yaml")


def test_shipped_example_recipe_is_valid():
    recipe = load_recipe("examples/sms_spam.yaml")
    assert recipe.model == "minilm" and recipe.data.columns == {"label": 0, "text": 1}
