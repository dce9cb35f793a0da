"""The run report: RUN/report.html, one self-contained page (inline PNG charts, no scripts, no network).

    report:
      html: true                 # write RUN/report.html at the end of training (default)
      trackers: [tensorboard]    # optional: also log to TensorBoard (RUN/tensorboard) and/or mlflow

`tunesmith report RUN` (re)writes the page from the run directory alone. The HTML is built in
`report.html`, the charts in `report.plots` (matplotlib, Agg, imported only when a report is written).
"""

from __future__ import annotations

from pathlib import Path
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


def write_report(run_path: str | Path) -> Path:
    """Write RUN/report.html from the run directory; return its path."""
    from tunesmith.report.html import write_report as _write

    return _write(run_path)
