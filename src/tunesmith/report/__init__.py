"""The run report: RUN/report.html, one self-contained page (inline PNG charts, no scripts, no network).

    report:
      html: true                 # write RUN/report.html at the end of training (default)
      trackers: [tensorboard]    # optional: also log to TensorBoard (RUN/tensorboard) and/or mlflow

`tunesmith report RUN` (re)writes the page from the run directory alone. The HTML is built in
`report.html`, the charts in `report.plots` (matplotlib, Agg, imported only when a report is written).
"""

from __future__ import annotations

from pathlib import Path


def write_report(run_path: str | Path) -> Path:
    """Write RUN/report.html from the run directory; return its path."""
    from tunesmith.report.html import write_report as _write

    return _write(run_path)
