"""`tunesmith tune`'s search space against the recipe: every key a recipe key, every value one the recipe takes,
every method option on a method that has it; and a trial's recipe built from the sampled values.

Checked before any trial starts, by validating the recipe with each dimension's ends (every choice, both ends of
a range) in every combination (a bounded number): a space that could give an invalid trial is refused with one
line naming `tune.space` and the key. A method option (`method.r`) is set only in trials whose method has it, so
`method.name: [full, lora]` with `method.r: [4, 8]` searches r under lora and leaves it out under full.
"""

from __future__ import annotations

import difflib
import itertools
import typing
from typing import Any, Callable

from pydantic import BaseModel

from tunesmith.config.method import OPTIONS as METHOD_OPTIONS
from tunesmith.config.recipe import Recipe, validate_recipe, with_values
from tunesmith.config.tune import Dimension
from tunesmith.errors import RecipeError, shown

# keys each trial sets itself, or that would change what is being optimised
NOT_SEARCHABLE = {
    "output": "each trial writes its own run directory", "resume": "tune resumes trials itself",
    "overwrite": "each trial writes a new run directory", "tune": "the search space cannot search itself",
    "checkpoint": "tune sets how trials are checkpointed", "task": "the objective is one task's metric",
    "train.early_stopping.metric": "it is the objective every trial is compared on",
}
MAX_COMBINATIONS = 4096  # the ends of at most this many combinations are validated; beyond, each key alone


def base_mapping(recipe: Recipe) -> dict:
    """The recipe as the mapping each trial starts from (its own values, with the tune: section left out)."""
    raw = recipe.to_mapping()  # a method-default train.lr left out: a trial's method brings its own
    raw.pop("tune", None)
    return raw


def check_space(recipe: Recipe, source: str) -> list[Dimension]:
    """The recipe's search space, checked; RecipeError (one line, naming the key) for the first problem."""
    if recipe.tune is None:
        raise RecipeError(f"{source}: no tune: section; add one with a space: of recipe keys to search, e.g. "
                          f"tune: {{space: {{train.lr: {{log_uniform: [1.0e-5, 1.0e-3]}}}}}}")
    dimensions = recipe.tune.dimensions
    for dimension in dimensions:
        check_key(dimension.key, source)
    methods = method_candidates(recipe, dimensions)
    for dimension in dimensions:
        owners = METHOD_OPTIONS.get(method_option(dimension.key))
        if owners and not set(owners) & set(methods):
            raise RecipeError(f"{source}: tune.space '{dimension.key}': an option of {' and '.join(owners)}, but "
                              f"the method is only ever {', '.join(methods)}; search method.name too, or drop it")
    base = base_mapping(recipe)
    for values in end_combinations(dimensions):
        try:
            validate_recipe(apply_values(base, method_fitted(values, base)), source)
        except RecipeError as exc:
            shown_values = ", ".join(f"{key}={shown(value)}" for key, value in values.items())
            raise RecipeError(f"{source}: tune.space gives an invalid trial ({shown_values}): "
                              f"{str(exc).removeprefix(source + ': ')}") from None
    return dimensions


def check_key(key: str, source: str) -> None:
    """`key` names a value of the Recipe schema (a leaf, not a section); RecipeError with a close match if not."""
    for blocked, why in NOT_SEARCHABLE.items():
        if key == blocked or key.startswith(blocked + "."):
            raise RecipeError(f"{source}: tune.space '{key}' cannot be searched: {why}")
    model: type[BaseModel] = Recipe
    parts = key.split(".")
    for depth, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            close = difflib.get_close_matches(key, leaf_keys(), n=1, cutoff=0.75)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            where = f"section '{'.'.join(parts[:depth])}'" if depth else "the recipe"
            raise RecipeError(f"{source}: tune.space '{key}': {where} has no key '{part}'{hint}")
        section = section_model(fields[part].annotation)
        if depth == len(parts) - 1:
            if section is not None:
                raise RecipeError(f"{source}: tune.space '{key}' is a section; search its keys, e.g. "
                                  f"'{key}.{next(iter(section.model_fields))}'")
            return
        if section is None:
            raise RecipeError(f"{source}: tune.space '{key}': '{'.'.join(parts[:depth + 1])}' is a value, "
                              f"not a section")
        model = section


def leaf_keys(model: type[BaseModel] = Recipe, prefix: str = "") -> list[str]:
    """Every dotted key of a value in the recipe schema (train.lr, method.r, ...)."""
    keys = []
    for name, info in model.model_fields.items():
        section = section_model(info.annotation)
        keys += leaf_keys(section, f"{prefix}{name}.") if section is not None else [prefix + name]
    return keys


def section_model(annotation) -> type[BaseModel] | None:
    """The recipe section (a pydantic model) an annotation holds, looking inside Optional/Union/Annotated."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        found = section_model(argument)
        if found is not None:
            return found
    return None


def method_option(key: str) -> str | None:
    return key.removeprefix("method.") if key.startswith("method.") and key != "method.name" else None


def method_candidates(recipe: Recipe, dimensions: list[Dimension]) -> list[str]:
    for dimension in dimensions:
        if dimension.key == "method.name":
            return [str(choice) for choice in dimension.choices] or [recipe.method.name]
    return [recipe.method.name]


def method_fitted(values: dict[str, Any], base: dict) -> dict[str, Any]:
    """The values, less the method options the trial's method does not have (they are not sampled there)."""
    method = values.get("method.name", base["method"]["name"])
    return {key: value for key, value in values.items()
            if (owners := METHOD_OPTIONS.get(method_option(key))) is None or method in owners}


def end_combinations(dimensions: list[Dimension]) -> list[dict[str, Any]]:
    """Every combination of the dimensions' ends, or (past MAX_COMBINATIONS) each dimension's ends alone."""
    ends = [dimension.ends for dimension in dimensions]
    count = 1
    for values in ends:
        count *= len(values)
    if count <= MAX_COMBINATIONS:
        keys = [dimension.key for dimension in dimensions]
        return [dict(zip(keys, combination)) for combination in itertools.product(*ends)]
    return [{dimension.key: value} for dimension in dimensions for value in dimension.ends]


def sample_values(dimensions: list[Dimension], base: dict, pick: Callable[[Dimension], Any]) -> dict[str, Any]:
    """One trial's values: `pick` (the sampler) is asked for method.name first, then for every other key except
    the method options the chosen method does not have."""
    ordered = sorted(dimensions, key=lambda d: d.key != "method.name")
    values: dict[str, Any] = {}
    for dimension in ordered:
        method = values.get("method.name", base["method"]["name"])
        owners = METHOD_OPTIONS.get(method_option(dimension.key))
        if owners is None or method in owners:
            values[dimension.key] = pick(dimension)
    return values


def trial_recipe(base: dict, values: dict[str, Any], output: str, source: str) -> Recipe:
    """The recipe of one trial: the base with the sampled values, its own run directory, resumed if one is there,
    and without baselines (the same for every trial: `tunesmith train best.yaml` computes them) nor a quality gate."""
    overrides = {**values, "output": output, "resume": "auto", "baselines": False, "quality_gate": None}
    return validate_recipe(apply_values(base, overrides), source)


def apply_values(base: dict, values: dict[str, Any]) -> dict:
    """The base mapping with the values set; the base method's options that the trial's method does not have
    (a lora recipe's r under method.name=full) are left out, as a recipe written for that method would."""
    raw = with_values(base, values)
    method = raw["method"]
    raw["method"] = {key: value for key, value in method.items()
                     if (owners := METHOD_OPTIONS.get(key)) is None or method["name"] in owners}
    return raw
