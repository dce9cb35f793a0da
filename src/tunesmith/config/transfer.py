"""The recipe's `init:` and `transfer:` sections (pure pydantic): starting from an earlier tunesmith run.

    model: runs/sst2          # a finished run (RUN/model, RUN/recipe.yaml, RUN/eval.json) or a merged export
    init:
      head: auto              # auto | keep | new
    transfer:
      watch: runs/sst2        # also evaluate this run's validation set at every evaluation

`init.head`: the body (encoder / decoder) always comes from the run; `auto` keeps the run's task head when
this run has the same task and label set and starts a new one otherwise, `keep` insists on keeping it (refused
when the labels differ), `new` always starts a freshly initialised head. Whether `model:` is a run is a fact
about the file system, so it is checked where the model is resolved (models/parent_run.py), not here:
`init:` with a model that is not a run is refused there.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

HEAD_CHOICES = ("auto", "keep", "new")


class InitSpec(BaseModel):
    """The recipe's `init:` section: what a run started from an earlier run carries over."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    head: Literal["auto", "keep", "new"] = Field(
        "auto", description="auto: keep the run's head when the task and label set are the same, else a new one; "
                            "keep: keep it (refused when they differ); new: a freshly initialised head")


class TransferSpec(BaseModel):
    """The recipe's `transfer:` section: watching an earlier run's task while this one trains."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    watch: str = Field(..., description="a finished run whose validation set is evaluated at every evaluation "
                                        "(metrics.jsonl split \"watch\"), so forgetting its task is seen")

    @field_validator("watch")
    @classmethod
    def _a_path(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("give the directory of a finished tunesmith run")
        return value
