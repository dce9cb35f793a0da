"""The recipe's `checkpoint:` section (and the value type of its top-level `resume:` key).

Kept apart from train/checkpoint.py (which needs torch) and free of tunesmith imports, so recipe.py can
import it for its one `checkpoint:` field without a cycle.

    checkpoint:
      every_steps: null     # also save every N optimizer steps (always: at each epoch end, at the last
                            # step, and on SIGINT/SIGTERM)
      on_best: false        # also save one at each new best evaluation (the best weights are always in RUN/model)
      keep_last: 2          # keep the newest K checkpoints, plus the one of the best evaluation
      keep_on_finish: false # delete RUN/checkpoints once the run has finished and written eval.json
    resume: false           # true (= tunesmith train --resume): continue from the newest valid checkpoint;
                            # auto: continue if there is one, else start from the beginning
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


def _resume_value(value: Any) -> Any:
    if isinstance(value, bool) or value == "auto":
        return value
    raise ValueError("must be true, false or auto")


Resume = Annotated[Union[bool, Literal["auto"]], BeforeValidator(_resume_value)]


class CheckpointSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # inf, nan: refused

    every_steps: int | None = Field(
        None, ge=1, description="save a checkpoint every N optimizer steps (besides each epoch end)")
    on_best: bool = Field(
        False, description="also save a full checkpoint at each new best evaluation (RUN/model always holds the best weights)")
    keep_last: int = Field(2, ge=1, description="how many of the newest checkpoints to keep (plus the best)")
    keep_on_finish: bool = Field(
        False, description="keep RUN/checkpoints after the run finished (default: deleted once eval.json is written)")
