"""From the recipe's `data:` section to labelled train / validation / test tables.

Reads each file, drops duplicates if asked, holds out a validation split when no file is given,
and checks the splits against each other (labels unseen in training are an error naming the line).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from tunesmith.data.labels import LabelMap
from tunesmith.data.readers import read_table
from tunesmith.data.split import split_frame
from tunesmith.errors import DataError
from tunesmith.config.recipe import DataSpec


@dataclass
class LabelledSplits:
    """Tables with columns text[, text_pair], label, line; `sources` names each table's file."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame | None
    labels: LabelMap
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def frames(self) -> dict[str, pd.DataFrame]:
        named = {"train": self.train, "validation": self.validation, "test": self.test}
        return {name: frame for name, frame in named.items() if frame is not None}


def read_labelled(spec: DataSpec, path: str, *, require_label: bool = True) -> pd.DataFrame:
    """Read one file with the recipe's format/columns settings."""
    required = ("text", "label") if require_label else ("text",)
    columns = spec.columns if require_label else {k: v for k, v in spec.columns.items() if k != "label"}
    return read_table(
        Path(path), columns=columns, required=required, format=spec.format, header=spec.header,
        quoting=spec.quoting, delimiter=spec.delimiter, encoding=spec.encoding, extra_fields=spec.extra_fields,
    )


def load_labelled_splits(spec: DataSpec, *, seed: int) -> LabelledSplits:
    if "label" not in spec.columns:
        raise DataError("data.columns: classification needs a 'label' column, e.g. columns: {text: text, label: label}")
    if isinstance(spec.columns["label"], list):
        raise DataError("data.columns.label: classification takes one label column; a list of columns is for "
                        "task: regression (several numeric targets)")
    train = read_labelled(spec, spec.train)
    notes: list[str] = []
    if spec.drop_duplicates:
        train, dropped = drop_duplicates(train)
        if dropped:
            notes.append(f"dropped {dropped} duplicate rows from {spec.train}")
    sources = {"train": spec.train}
    if spec.validation.path:
        validation = read_labelled(spec, spec.validation.path)
        sources["validation"] = spec.validation.path
    else:
        train, validation = split_frame(train, spec.validation.split, seed=seed, stratify=spec.validation.stratify)
        sources["validation"] = f"{spec.train} (held-out {spec.validation.split:g})"
    test = read_labelled(spec, spec.test) if spec.test else None
    if spec.test:
        sources["test"] = spec.test
    labels = LabelMap.fit(train["label"], source=spec.train)
    for name, frame in (("validation", validation), ("test", test)):
        if frame is not None:
            labels.encode(frame, source=_file_of(sources[name], spec.train))  # raises on unseen labels
    return LabelledSplits(train, validation, test, labels, sources, notes)


def drop_duplicates(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    keys = [c for c in ("text", "text_pair") if c in frame.columns]
    kept = frame.drop_duplicates(subset=keys, keep="first").reset_index(drop=True)
    return kept, len(frame) - len(kept)


def _file_of(source: str, train: str) -> str:
    return train if source.startswith(f"{train} (held-out") else source
