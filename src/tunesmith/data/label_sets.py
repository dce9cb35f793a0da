"""From the recipe's `data:` section to train / validation / test tables whose label is a set (task: multi_label).

`data.columns.label` names one column holding each row's labels:

- jsonl / json / parquet: a list of label names, e.g. `"labels": ["sports", "politics"]` (`[]`: no label);
- csv / tsv: a string split on `data.label_separator` (default `,`), each name stripped of whitespace; an
  empty cell is no label. A cell that is itself a JSON list (`["a", "b"]`) is read as one.

A string is split on the separator in every format, so `"labels": "sports"` is the set {sports}. Anything
else (a number, an object, a list holding a non-string) is one DataError naming the file and line.

The label names are the sorted union over every split: a label seen only in validation or test is kept (it is
scored, and the inspection warns that the model cannot learn it). The validation split is a plain seeded
shuffle of the training rows (sets are not classes to stratify by). A file read for `tunesmith evaluate`
must only hold the model's labels (`encode_sets` names the first line that does not).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tunesmith.data.prepare import assemble_splits, read_with_spec
from tunesmith.errors import DataError, shorten

ROLE = "label_set"  # the frame column holding each row's labels as a sorted tuple of names
JSON_FORMATS = ("jsonl", "json", "parquet")


@dataclass
class LabelSetSplits:
    """Tables with columns text[, text_pair], label_set (tuples of names), line; `names` in id order."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame | None
    names: list[str]
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def frames(self) -> dict[str, pd.DataFrame]:
        named = {"train": self.train, "validation": self.validation, "test": self.test}
        return {name: frame for name, frame in named.items() if frame is not None}


def label_set_columns(spec) -> dict:
    """read_table's role -> column mapping: the label column read raw, as role `label_set`."""
    if "label" not in spec.columns:
        raise DataError("data.columns: multi_label needs a 'label' column holding each row's labels, "
                        "e.g. columns: {text: text, label: labels}")
    if isinstance(spec.columns["label"], list):
        raise DataError("data.columns.label: multi_label takes one column holding the label set (a JSON list, "
                        "or names joined by data.label_separator); a list of columns is for task: regression")
    return {(ROLE if role == "label" else role): column for role, column in spec.columns.items()}


def _kind(value) -> str:
    names = {dict: "an object", bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    return names.get(type(value), type(value).__name__)


def parse_label_cell(value, separator: str, where: str) -> tuple[str, ...]:
    """One cell -> its sorted, de-duplicated label names; `where` is "FILE, line N" for the error."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ()
    if isinstance(value, np.ndarray):  # parquet lists may arrive as arrays
        value = value.tolist()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            try:
                value = json.loads(text)
            except ValueError:
                value = text
        if isinstance(value, str):
            return tuple(sorted({part.strip() for part in value.split(separator) if part.strip()}))
    if isinstance(value, (list, tuple)):
        bad = next((item for item in value if not isinstance(item, str)), None)
        if bad is not None:
            raise DataError(f"{where}: labels must be label names (strings); the list holds {_kind(bad)} "
                            f"({shorten(repr(bad), 40)})")
        return tuple(sorted({item.strip() for item in value if item.strip()}))
    raise DataError(f"{where}: labels must be a list of label names (or names joined by "
                    f"data.label_separator '{separator}'), found {_kind(value)} ({shorten(repr(value), 40)})")


def parse_label_sets(frame: pd.DataFrame, separator: str, source: str) -> pd.DataFrame:
    """The frame with its `label_set` cells parsed into tuples of names (errors name `source` and the line)."""
    unit = frame.attrs.get("line_unit", "line")
    sets = [parse_label_cell(value, separator, f"{source}, {unit} {line}")
            for value, line in zip(frame[ROLE].tolist(), frame["line"].tolist())]
    out = frame.copy()
    out[ROLE] = pd.Series(sets, index=frame.index, dtype=object)
    return out


def read_label_set_file(spec, path: str) -> pd.DataFrame:
    """One labelled file read with the recipe's settings, its label cells parsed."""
    frame = read_with_spec(spec, path, columns=label_set_columns(spec), required=("text",))
    return parse_label_sets(frame, spec.label_separator, str(path))


def load_label_set_splits(spec, *, seed: int) -> LabelSetSplits:
    """The recipe's splits (duplicates, held-out split and files as classification builds them), parsed;
    every training row without a label is refused (there would be nothing to learn)."""
    columns = label_set_columns(spec)
    split = assemble_splits(spec, lambda path: read_with_spec(spec, path, columns=columns, required=("text",)),
                            seed=seed, stratify=False)
    frames = {name: parse_label_sets(frame, spec.label_separator, split.file_of(name, spec.train))
              for name, frame in split.frames.items()}
    if not any(len(labels) for labels in frames["train"][ROLE]):
        raise DataError(f"{split.file_of('train', spec.train)}: every training row has an empty label set "
                        f"(data.columns.label: '{spec.columns['label']}'); check the column, and "
                        f"data.label_separator '{spec.label_separator}' for csv/tsv")
    names = sorted({label for frame in frames.values() for labels in frame[ROLE] for label in labels})
    return LabelSetSplits(frames["train"], frames["validation"], frames.get("test"), names, split.sources,
                          split.notes)


def multi_hot(frame: pd.DataFrame, names: list[str], source: str) -> np.ndarray:
    """N x L float32 0/1 matrix of the frame's label sets; a label outside `names` is an error naming its line."""
    index = {name: k for k, name in enumerate(names)}
    y = np.zeros((len(frame), len(names)), dtype=np.float32)
    unit = frame.attrs.get("line_unit", "line")
    for row, (labels, line) in enumerate(zip(frame[ROLE].tolist(), frame["line"].tolist())):
        for label in labels:
            if label not in index:
                raise DataError(f"{source}, {unit} {line}: label '{shorten(label, 60)}' is not one of the "
                                f"model's {len(names)} labels ({shorten(', '.join(names), 120)})")
            y[row, index[label]] = 1.0
    return y


def join_labels(y: np.ndarray, names: list[str], separator: str) -> list[str]:
    """Each row of a 0/1 matrix as its label names joined by `separator` ("" for no label)."""
    return [separator.join(names[k] for k in np.flatnonzero(row)) for row in np.asarray(y)]
