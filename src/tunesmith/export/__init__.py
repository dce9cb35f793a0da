"""Export formats: `tunesmith export RUN --format merged|onnx|int8` (the command is recipes/export.py).

Each format is one module with `build(source, out_dir) -> dict` (a new format: one module plus one line in
FORMATS). Every export is then loaded the way `tunesmith predict` loads it and re-evaluated on the run's
validation set against the unquantised model in RUN/model (export/report.py); the report goes to
OUT/report.json and the console. With `max_drop`, an export whose metric drops more is refused: nothing is
written at OUT (an export already there stays), the report is kept as OUT.rejected.json, and ExportRefused
(exit status 2) says by how much.

Default OUT: RUN/exports/<format>. It is written to a temporary directory beside OUT and swapped in whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunesmith.errors import TunesmithError
from tunesmith.export import int8, merged, onnx

FORMATS = {
    "merged": merged.build,
    "onnx": onnx.build,
    "int8": int8.build,
}


class ExportRefused(TunesmithError):
    """The export's metric dropped more than --max-drop allows."""


@dataclass
class ExportSource:
    """What a format's build() gets: the run and its reference model's pieces."""

    run_path: Path
    model_dir: Path
    tokenizer: object
    max_length: int
    trust_remote_code: bool
