"""The recipe's `tune:` section: the search space of `tunesmith tune` (pure pydantic; recipes/tune.py runs it).

    tune:
      space:                                  # recipe key -> where to search
        train.lr: {log_uniform: [1.0e-5, 1.0e-3]}
        train.warmup: {uniform: [0.0, 0.2]}
        train.batch_size: [16, 32]            # a list: one of these values
        method.name: [full, lora]
        method.r: [4, 8, 16]                  # lora/dora options: sampled only in trials whose method has them
        train.epochs: {int: [1, 3]}           # also {log_int: [lo, hi]}; int/uniform take an optional step:
      trials: 20                              # --trials overrides
      pruner: median                          # median | halving | none: stop weak trials at their evaluations
      sampler: tpe                            # tpe | random (seeded with train.seed)
      startup_trials: 4                       # trials before the sampler models the space and the pruner prunes
      warmup_evals: 1                         # evaluations of a trial before it may be pruned

`tunesmith train` trains the recipe's own values and does not read this section. Whether each key is a recipe
key and each value fits it is checked by recipes/tune.py against the Recipe schema, before any trial starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

RANGE_KINDS = ("log_uniform", "uniform", "int", "log_int")
SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Dimension:
    """One searched recipe key: a list of choices, or a numeric range (`kind` in RANGE_KINDS)."""

    key: str
    kind: str  # "choice" or one of RANGE_KINDS
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    step: float | None = None

    @property
    def ends(self) -> list:
        """The values that bound the dimension: every choice, or both ends of the range."""
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]


def parse_dimension(key: str, value: Any) -> Dimension:
    """A `space:` entry as a Dimension; ValueError naming the key for an impossible one."""
    where = f"space: '{key}'"
    if isinstance(value, list):
        if not value:
            raise ValueError(f"{where}: an empty list of choices")
        if not all(isinstance(v, SCALARS) for v in value):
            raise ValueError(f"{where}: choices must be single values (numbers, strings, true/false)")
        if len({repr(v) for v in value}) < len(value):
            raise ValueError(f"{where}: a choice is listed twice")
        return Dimension(key, "choice", choices=tuple(value))
    if not isinstance(value, dict):
        raise ValueError(f"{where}: give a list of choices or a range such as {{log_uniform: [1.0e-5, 1.0e-3]}}")
    kinds = [k for k in value if k in RANGE_KINDS]
    unknown = [k for k in value if k not in RANGE_KINDS and k != "step"]
    if unknown or len(kinds) != 1:
        raise ValueError(f"{where}: a range is one of {', '.join(RANGE_KINDS)} (with an optional step:), "
                         f"e.g. {{uniform: [0.0, 0.2]}}; got keys {sorted(value)}")
    return _range_dimension(key, kinds[0], value[kinds[0]], value.get("step"))


def _range_dimension(key: str, kind: str, bounds: Any, step: Any) -> Dimension:
    where = f"space: '{key}': {kind}"
    numbers = isinstance(bounds, list) and len(bounds) == 2 and all(
        isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) for b in bounds)
    if not numbers:
        raise ValueError(f"{where} needs [low, high], two finite numbers")
    low, high = bounds
    if not low < high:
        raise ValueError(f"{where}: low ({low}) must be below high ({high})")
    if kind.startswith("log") and low <= 0:
        raise ValueError(f"{where}: a log range needs low > 0 (got {low})")
    if kind in ("int", "log_int") and not all(float(b).is_integer() for b in bounds):
        raise ValueError(f"{where}: the bounds must be whole numbers (got {low}, {high})")
    if step is not None:
        if kind.startswith("log"):
            raise ValueError(f"{where}: a log range takes no step")
        if isinstance(step, bool) or not isinstance(step, (int, float)) or not 0 < step <= high - low:
            raise ValueError(f"{where}: step must be a number in (0, high - low] (got {step})")
        if kind == "int" and not float(step).is_integer():
            raise ValueError(f"{where}: step must be a whole number (got {step})")
    if kind in ("int", "log_int"):
        low, high = int(low), int(high)
        step = int(step) if step is not None else None
    return Dimension(key, kind, low=low, high=high, step=step)


class TuneSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # inf, nan: refused

    space: dict[str, Any] = Field(min_length=1, description="recipe key -> a list of choices or a range")
    trials: int = Field(20, ge=1, description="trials in the study (a resumed study counts its finished trials)")
    pruner: Literal["median", "halving", "none"] = "median"
    sampler: Literal["tpe", "random"] = "tpe"
    startup_trials: int = Field(4, ge=0, description="trials sampled at random, and never pruned, before the "
                                                     "sampler models the space and the pruner compares")
    warmup_evals: int = Field(1, ge=0, description="evaluations of a trial before the pruner may stop it")

    @field_validator("space")
    @classmethod
    def _dimensions(cls, space: dict) -> dict:
        for key, value in space.items():
            parse_dimension(key, value)
        return space

    @property
    def dimensions(self) -> list[Dimension]:
        return [parse_dimension(key, value) for key, value in self.space.items()]
