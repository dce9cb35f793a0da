"""From the recipe's `data:` section to labelled train / validation / test tables.

Reads each file, drops duplicates if asked, holds out a validation split when no file is given,
and checks the splits against each other (labels unseen in training are an error naming the line).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from tunesmith.data.labels import LabelMap
from tunesmith.data.readers import read_table
from tunesmith.data.split import sample_validation, split_frame
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


def read_with_spec(spec: DataSpec, path: str, *, columns: dict, required: tuple[str, ...]) -> pd.DataFrame:
    """Read one file with the recipe's reading settings (format, header, quoting, delimiter, encoding,
    extra fields) and the given role -> column mapping."""
    return read_table(
        Path(path), columns=columns, required=required, format=spec.format, header=spec.header,
        quoting=spec.quoting, delimiter=spec.delimiter, encoding=spec.encoding, extra_fields=spec.extra_fields,
    )


def read_labelled(spec: DataSpec, path: str, *, require_label: bool = True) -> pd.DataFrame:
    """Read one file with the recipe's format/columns settings."""
    required = ("text", "label") if require_label else ("text",)
    columns = spec.columns if require_label else {k: v for k, v in spec.columns.items() if k != "label"}
    return read_with_spec(spec, path, columns=columns, required=required)


@dataclass
class SplitFrames:
    """train / validation / test as read and split, before any task-specific checks."""

    frames: dict[str, pd.DataFrame]
    sources: dict[str, str]
    notes: list[str]

    def file_of(self, split: str, train: str) -> str:
        """The file a split's rows come from (a held-out split: the training file)."""
        source = self.sources[split]
        return train if source.startswith(f"{train} (held-out") else source


def assemble_splits(spec: DataSpec, read: Callable[[str], pd.DataFrame], *, seed: int,
                    stratify: bool) -> SplitFrames:
    """The recipe's splits: the training file (duplicates dropped if asked), the validation file or a seeded
    held-out fraction of the training rows (stratified by label if asked), and the test file if any."""
    train = read(spec.train)
    notes: list[str] = []
    if spec.drop_duplicates:
        train, dropped = drop_duplicates(train)
        if dropped:
            notes.append(f"dropped {dropped} duplicate rows from {spec.train}")
    sources = {"train": spec.train}
    if spec.validation.path:
        validation = read(spec.validation.path)
        sources["validation"] = spec.validation.path
    else:
        train, validation = split_frame(train, spec.validation.split, seed=seed, stratify=stratify)
        sources["validation"] = f"{spec.train} (held-out {spec.validation.split:g})"
    validation, note = sample_validation(validation, spec.validation.max_rows, seed=seed)
    notes += [note] if note else []
    frames = {"train": train, "validation": validation}
    if spec.test:
        frames["test"] = read(spec.test)
        sources["test"] = spec.test
    return SplitFrames(frames, sources, notes)


def load_labelled_splits(spec: DataSpec, *, seed: int) -> LabelledSplits:
    if "label" not in spec.columns:
        raise DataError("data.columns: classification needs a 'label' column, e.g. columns: {text: text, label: label}")
    if isinstance(spec.columns["label"], list):
        raise DataError("data.columns.label: classification takes one label column; a list of columns is for "
                        "task: regression (several numeric targets)")
    split = assemble_splits(spec, lambda path: read_labelled(spec, path), seed=seed,
                            stratify=spec.validation.stratify)
    frames = split.frames
    labels = LabelMap.fit(frames["train"]["label"], source=spec.train)
    for name in ("validation", "test"):
        if name in frames:
            labels.encode(frames[name], source=split.file_of(name, spec.train))  # raises on unseen labels
    return LabelledSplits(frames["train"], frames["validation"], frames.get("test"), labels, split.sources,
                          split.notes)


def drop_duplicates(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    if "tokens" in frame.columns:  # token_classification: a sentence repeats when its words do (lists: as tuples)
        kept = frame[~frame["tokens"].map(tuple).duplicated(keep="first")].reset_index(drop=True)
        return kept, len(frame) - len(kept)
    keys = [c for c in ("text", "text_pair") if c in frame.columns]
    kept = frame.drop_duplicates(subset=keys, keep="first").reset_index(drop=True)
    return kept, len(frame) - len(kept)
