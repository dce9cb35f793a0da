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
        ("train.eval_every=0", "key 'train.eval_every': must be 'epoch' or a whole number >= 1 (got 0)"),
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


def _sections(model, seen=None) -> set:
    """Every pydantic model reachable from ``model``'s fields (the recipe's sections)."""
    import typing

    from pydantic import BaseModel

    seen = set() if seen is None else seen
    seen.add(model)
    for field in model.model_fields.values():
        stack = [field.annotation]
        while stack:
            kind = stack.pop()
            if isinstance(kind, type) and issubclass(kind, BaseModel) and kind not in seen:
                _sections(kind, seen)
            stack.extend(typing.get_args(kind))
    return seen


def test_every_section_refuses_inf_and_nan():
    from tunesmith.config.recipe import Recipe

    sections = _sections(Recipe)
    assert len(sections) >= 14
    assert [s.__name__ for s in sections if s.model_config.get("allow_inf_nan") is not False] == []


@pytest.mark.parametrize("override, expected", [
    ("train.lr=.inf", "key 'train.lr': Input should be a finite number (got inf)"),
    ("train.epochs=.inf", "key 'train.epochs': Input should be a finite number (got inf)"),
    ("train.lr=nan", "key 'train.lr': Input should be a finite number (got 'nan')"),
    ("imbalance.gamma=.inf", "key 'imbalance.gamma': Input should be a finite number (got inf)"),
    ("imbalance.class_weights={pos: .inf}", "key 'imbalance.class_weights.pos': Input should be a finite number (got inf)"),
    ("imbalance.alpha={pos: .nan}", "key 'imbalance.alpha.pos': Input should be a finite number (got nan)"),
    ("method.alpha=.inf", "key 'method.alpha': Input should be a finite number (got inf)"),
    ("train.early_stopping.target=.nan", "key 'train.early_stopping.target': Input should be a finite number (got nan)"),
    ("train.seed=-1", "key 'train.seed': Input should be greater than or equal to 0 (got -1)"),
    ("train.seed=99999999999999999999",
     "key 'train.seed': Input should be less than or equal to 4294967295 (got 99999999999999999999)"),
    ("train.eval_every=0.5", "key 'train.eval_every': must be 'epoch' or a whole number >= 1 (got 0.5)"),
    ("train.eval_every=soon", "key 'train.eval_every': must be 'epoch' or a whole number >= 1 (got 'soon')"),
    ("data.columns.text=1.5", "key 'data.columns.text': must be a string, a whole number or a list (got 1.5)"),
    ("imbalance.class_weights=bogus", "key 'imbalance.class_weights': must be 'inverse', 'sqrt_inverse', "
                                      "'effective_number', a mapping or null (got 'bogus')"),
    ("imbalance.positive=[1]", "key 'imbalance.positive': must be a string, a number, true, false or null (got [1])"),
    ("data.validation=[1]", "key 'data.validation': must be a fraction of the training rows (e.g. 0.2), the path "
                            "of a validation file, or a mapping with split, path, stratify (got [1])"),
    ("baselines=5", "key 'baselines': must be true, false, a baseline name (majority, tfidf, scratch), a list of "
                    "names, or a mapping such as {tfidf: false} (got 5)"),
    ("method=5", "key 'method': must be a method name (full, freeze, bitfit, lora, dora) or a mapping with name: "
                 "and the method's options (got 5)"),
    ("resume=1", "key 'resume': must be true, false or auto (got 1)"),
    ("train=5", "key 'train': must be a mapping (key: value lines) (got 5)"),
    ("data.columns={text: label, label: label}",
     "key 'data.columns': roles 'text' and 'label' both map to column 'label'; each role needs a column of its own"),
    ("data.extra_fields=maybe", "key 'data.extra_fields': Input should be 'error' or 'ignore' (got 'maybe')"),
])
def test_messages_name_the_key_and_the_accepted_forms(override, expected):
    with pytest.raises(RecipeError) as info:
        load(override)
    assert str(info.value) == f"recipe: {expected}"


def test_accepted_edges():
    assert load("train.seed=4294967295").train.seed == 2**32 - 1
    assert load("train.eval_every=1").train.eval_every == 1
    assert load("data.validation=0.1").data.validation.split == 0.1
    assert load("data.extra_fields=ignore").data.extra_fields == "ignore"
    assert load().data.extra_fields == "error"


def test_echoed_values_are_cut_short():
    with pytest.raises(RecipeError) as info:
        load("train.lr=" + "x" * 5000)
    assert str(info.value) == "recipe: key 'train.lr': Input should be a valid number, unable to parse string as a " \
                              "number (got '" + "x" * 78 + "…)"
    with pytest.raises(RecipeError) as info:
        load("data.columns={text: text, " + "y" * 5000 + ": 1}")
    assert len(str(info.value)) < 400 and "…" in str(info.value)


def billion_laughs(levels: int) -> str:
    lines = ["model: minilm", "data: {train: train.csv}", "anchors:",
             "  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"  l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, levels)]
    return "\n".join(lines + ["train:", f"  lr: *l{levels - 1}", ""])


def test_a_yaml_alias_bomb_is_refused_with_a_short_line(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(billion_laughs(9))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert str(info.value) == (f"{path}: not valid YAML (its aliases (*name) expand to more than 10000 values; "
                               f"write the values out instead of nesting aliases)")
    path.write_text("model: minilm\ndata: {train: train.csv}\ntrain:\n  lr: &a [*a]\n")
    with pytest.raises(RecipeError, match=r"an alias \(\*name\) is used inside the value it names"):
        load_recipe(path)
    flow = ["&l0 [" + ", ".join(["lol"] * 9) + "]"] + [f"&l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, 9)]
    with pytest.raises(RecipeError) as info:  # the same in a --set value: read as text, echoed cut short
        load(f"train.lr=[{', '.join(flow)}]")
    assert str(info.value).startswith("recipe: key 'train.lr': Input should be a valid number") and len(str(info.value)) < 300


def test_a_few_aliases_are_fine(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text("model: minilm\ndata: &d {train: train.csv}\ntrain: {lr: &lr 0.001, warmup: *lr}\n"
                    "lm: {sample_prompts: &p [a, b]}\n")
    recipe = load_recipe(path)
    assert recipe.train.warmup == 0.001 and recipe.lm.sample_prompts == ["a", "b"]
