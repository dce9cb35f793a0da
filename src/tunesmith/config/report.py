"""The recipe's `report:` section (pure pydantic): report.html and the experiment trackers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

TRACKERS = ("tensorboard", "mlflow")


class ReportSpec(BaseModel):
    """The recipe's `report:` section."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # inf, nan: refused

    html: bool = Field(True, description="write RUN/report.html when training ends")
    trackers: list[Literal["tensorboard", "mlflow"]] = Field(
        default_factory=list, description="experiment trackers fed through Accelerate (the run directory always is)")

    @field_validator("trackers", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        if value is None:
            return []
        return [value] if isinstance(value, str) else value
