"""Write tables (predictions) in the format the file name asks for; check an --output before any work.

Outputs are written atomically (a temporary file beside the target, fsync, rename: artifacts.write_atomic):
an interrupted or failed write leaves the previous file as it was. A missing folder is an error, not
created (a typo'd folder should not silently become a new one), for predict and evaluate alike.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from tunesmith.artifacts import run_owning, write_atomic
from tunesmith.errors import DataError

WRITERS = {
    ".csv": lambda frame, path: frame.to_csv(path, index=False),
    ".tsv": lambda frame, path: frame.to_csv(path, index=False, sep="\t"),
    ".jsonl": lambda frame, path: frame.to_json(path, orient="records", lines=True, force_ascii=False),
    ".parquet": lambda frame, path: frame.to_parquet(path, index=False),
}


def check_output_file(output: str | Path, *, source: str | Path | None = None, table: bool = False) -> Path:
    """Refuse an --output that is a directory, lies in a missing folder, is the input file `source` itself
    (after symlinks), is one of a run directory's own files (RUN/eval.json, RUN/model/...), or (`table`) has an
    extension no writer handles."""
    path = Path(output)
    if path.is_dir():
        raise DataError(f"--output {path} is a directory: give a file name in it, e.g. "
                        f"{path / ('predictions.csv' if table else 'metrics.json')}")
    if not path.parent.is_dir():
        raise DataError(f"{path}: folder {path.parent} does not exist")
    if source is not None and path.exists() and Path(source).exists() and os.path.samefile(path, source):
        raise DataError(f"--output {path} is the input file {source}: writing it would replace the data; "
                        f"choose another --output")
    if (run := run_owning(path)) is not None:
        raise DataError(f"--output {path} is one of the files of the run {run}: writing it would change what the run "
                        f"recorded; choose another --output")
    if table and path.suffix.lower() not in WRITERS:
        raise DataError(f"{path}: cannot write '{path.suffix}' files; use one of {', '.join(WRITERS)}")
    return path


def write_table(frame: pd.DataFrame, path: Path) -> None:
    check_output_file(path, table=True)
    writer = WRITERS[path.suffix.lower()]
    write_atomic(path, lambda tmp: writer(frame, tmp))
