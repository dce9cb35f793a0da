"""The recipe's `regression:` section (task: regression).

    regression:
      loss: mse            # mse | huber | l1, on standardised targets
      huber_delta: 1.0     # huber: where the loss turns from quadratic to linear (in standard deviations)
      standardize: true    # train on (y - mean) / std of the training targets; predictions come back in y's units
      symmetric_pairs: false   # text pairs: also train on each pair swapped (a similarity score has no order)
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class RegressionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # inf, nan: refused

    loss: Literal["mse", "huber", "l1"] = "mse"
    huber_delta: float = Field(1.0, gt=0, description="huber: quadratic below, linear above this |error|")
    standardize: bool = Field(True, description="train on standardised targets (the scaling is saved with the model)")
    symmetric_pairs: bool = Field(False, description="text pairs: train on (a, b) and (b, a), for scores that do not "
                                                     "depend on the order (similarity); needs data.columns.text_pair")
