"""The recipe's `init:` and `transfer:` sections (pure pydantic): starting from an earlier tunesmith run.

    model: runs/sst2          # a finished run (RUN/model, RUN/recipe.yaml, RUN/eval.json) or a merged export
    init:
      head: auto              # auto | keep | new
      adapter: new            # new | continue (method lora / dora, when model: is a LoRA / DoRA run)
    transfer:
      watch: runs/sst2        # also evaluate this run's validation set at every evaluation

`init.head`: the body (encoder / decoder) always comes from the run; `auto` keeps the run's task head when
this run has the same task and label set and starts a new one otherwise, `keep` insists on keeping it (refused
when the labels differ), `new` always starts a freshly initialised head. Whether `model:` is a run is a fact
about the file system, so it is checked where the model is resolved (models/parent_run.py), not here:
`init:` with a model that is not a run is refused there.

`init.adapter` (method lora / dora): `new` puts a fresh adapter on the run's model (RUN/model, its adapter
merged in: the parent's adapter becomes part of the new base); `continue` trains the parent run's own adapter
further (RUN/adapter, its rank, scale and target modules) on the base model that adapter sits on, so the new
run's adapter shares that base with the parent's and can be switched with it (`tunesmith predict A B`). With a
new head (other labels, `init.head: new`), only the adapter's body matrices are carried over.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

HEAD_CHOICES = ("auto", "keep", "new")
ADAPTER_CHOICES = ("new", "continue")


class InitSpec(BaseModel):
    """The recipe's `init:` section: what a run started from an earlier run carries over."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    head: Literal["auto", "keep", "new"] = Field(
        "auto", description="auto: keep the run's head when the task and label set are the same, else a new one; "
                            "keep: keep it (refused when they differ); new: a freshly initialised head")
    adapter: Literal["new", "continue"] = Field(
        "new", description="method lora / dora: new: a fresh adapter on the run's merged model; continue: train "
                           "the run's own adapter further, on the base model it sits on")


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
