"""Write tables (predictions) in the format the file name asks for."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tunesmith.errors import DataError

WRITERS = {
    ".csv": lambda frame, path: frame.to_csv(path, index=False),
    ".tsv": lambda frame, path: frame.to_csv(path, index=False, sep="\t"),
    ".jsonl": lambda frame, path: frame.to_json(path, orient="records", lines=True, force_ascii=False),
    ".parquet": lambda frame, path: frame.to_parquet(path, index=False),
}


def write_table(frame: pd.DataFrame, path: Path) -> None:
    writer = WRITERS.get(path.suffix.lower())
    if writer is None:
        raise DataError(f"{path}: cannot write '{path.suffix}' files; use one of {', '.join(WRITERS)}")
    if path.parent and not path.parent.exists():
        raise DataError(f"{path}: folder {path.parent} does not exist")
    writer(frame, path)
