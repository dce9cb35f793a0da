"""The recipe's `preflight:` section: checks run after the model, method and data are set up and before the
first training step (tunesmith/preflight/; each finding is a line with a severity in RUN/inspect.json and the
report). Errors stop the run before it trains (exit 2) unless their code is listed under `ignore`.

    preflight:
      enabled: true          # false: no checks at all
      round_trip: true       # save the untrained model as a run saves its best, reload it, compare logits
      loss_probe: auto       # true | false | auto: the loss must fall over `probe_steps` steps on one fixed
                             # batch (weights restored afterwards); auto runs it when the run's projected
                             # training time is over `probe_minutes`
      probe_steps: 8
      probe_minutes: 5
      ignore: []             # codes whose errors are recorded as warnings and do not stop the run
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# every code a preflight check may report (tunesmith/preflight/ checks its own against this list)
PREFLIGHT_CODES = (
    "head_frozen", "head_not_saved", "head_round_trip",
    "end_token_not_trained", "answers_without_end_token", "zero_target_examples",
    "chat_template_round_trip", "generation_template",
    "vocabulary_out_of_range", "decoder_padding_side", "max_length_over_positions",
    "lr_below_method", "lr_above_method", "warmup_too_long", "few_steps", "batch_over_rows",
    "loss_not_falling", "loss_probe_skipped",
)


class PreflightSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    enabled: bool = True
    round_trip: bool = Field(True, description="save/reload the untrained model and compare its logits")
    loss_probe: bool | Literal["auto"] = "auto"
    probe_steps: int = Field(8, ge=2, le=200)
    probe_minutes: float = Field(5.0, ge=0, description="auto: probe only runs projected to train longer")
    ignore: list[Literal[PREFLIGHT_CODES]] = Field(default_factory=list)  # type: ignore[valid-type]
