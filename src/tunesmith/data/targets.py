"""Numeric regression targets: read from a frame's columns, checked, and standardised for training.

``parse_targets`` turns one or more target columns of a frame (as ``readers.read_table`` returns it,
with its ``line`` column and ``attrs["line_unit"]``) into a float64 N x K array. Each problem is one
DataError that names the file and, for a bad cell, its line:

    empty cell            "<file>, line 7: empty target 'score'"
    not a number          "<file>, line 7: target 'score' is not a number: 'high'"
    NaN / inf             "<file>, line 7: target 'score' is nan (3 NaN/inf values in all); ..."
    constant (fit only)   "<file>: target 'score' has one value (3.0) in every row: nothing to learn; ..."
    class labels (fit)    every value a word, or exactly two distinct numbers (0/1, 1/2, ...):
                          "<file>: target 'label' looks like class labels ...; for classification set
                          task: classification"

The class-label rule is deliberately narrow: integer ratings such as 0-5 or 1-10 are legitimate
regression targets and pass; only a binary column or a column of words is refused. In a frame from
csv/tsv every value is a string; from jsonl/json/parquet it is whatever was stored. A float NaN in the
frame is an empty cell (the reader turns nulls into NaN); the strings "nan" and "inf" are NaN/inf.

``TargetScaler`` holds each target's training mean and standard deviation: training sees standardised
targets, and the scaling is stored with the model (config key ``tunesmith_target_scaling``) so that
predictions come back in the user's units.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Number
from typing import Any

import numpy as np
import pandas as pd

from tunesmith.errors import DataError, ModelError

CONFIG_KEY = "tunesmith_target_scaling"
_EXAMPLES = 3  # distinct values quoted in the class-label message
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")
_EMPTY = object()  # what _number makes of a blank cell


def parse_targets(frame: pd.DataFrame, columns: Sequence[str], *, source: str,
                  names: Sequence[str] | None = None, fit: bool = True) -> np.ndarray:
    """The target columns of ``frame`` as a float64 N x K array (K = len(columns)).

    ``source`` (the file's path) starts every message; ``names`` are the targets as the user knows
    them (the file's column names; default: ``columns``). ``fit`` marks the training data, which
    must also be learnable: not constant and not class labels. Validation, test and evaluate data
    (``fit=False``) only need finite numbers in every row.
    """
    names = list(names) if names is not None else list(columns)
    if len(names) != len(columns):
        raise ValueError(f"{len(columns)} target columns but {len(names)} names")
    where = _line_labels(frame)
    out = np.empty((len(frame), len(columns)), dtype=np.float64)
    for k, (column, name) in enumerate(zip(columns, names)):
        out[:, k] = _parse_column(frame[column].tolist(), name, source, where, fit=fit)
    return out


def _line_labels(frame: pd.DataFrame) -> list[str]:
    """'line 12' (or 'row 3', 'item 3') for each row, as the reader numbered them."""
    if "line" not in frame.columns:
        return [f"row {n}" for n in range(1, len(frame) + 1)]
    unit = frame.attrs.get("line_unit", "line")
    return [f"{unit} {int(line)}" for line in frame["line"].tolist()]


def _parse_column(values: list[Any], name: str, source: str, where: list[str], *, fit: bool) -> np.ndarray:
    parsed = [_number(v) for v in values]
    if fit:
        _refuse_words(values, parsed, name, source)
    for k, (value, number) in enumerate(zip(values, parsed)):
        if number is _EMPTY:
            raise DataError(f"{source}, {where[k]}: empty target '{name}'; every row needs a number")
        if number is None:
            raise DataError(f"{source}, {where[k]}: target '{name}' is not a number: "
                            f"'{_show(value)}'{_hint(value)}")
    column = np.asarray(parsed, dtype=np.float64)
    bad = ~np.isfinite(column)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(f"{source}, {where[first]}: target '{name}' is {column[first]} ({int(bad.sum())} NaN/inf "
                        f"values in all); targets must be finite numbers: fix or drop these rows")
    if fit and len(column):
        _refuse_unlearnable(column, name, source)
    return column


def _number(value: Any) -> float | None | object:
    """The cell as a float; _EMPTY for a blank cell; None when it is not a number (a word, a boolean)."""
    if value is None:
        return _EMPTY
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return _EMPTY
        if "_" in text:  # float() would read "1_000" as 1000
            return None
        try:
            return float(text)
        except ValueError:
            return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (Number, np.number)) or isinstance(value, complex):
        return None
    number = float(value)
    return _EMPTY if math.isnan(number) else number  # the reader reads a null as NaN


def _refuse_words(values: list[Any], parsed: list[Any], name: str, source: str) -> None:
    """Every non-blank cell is a non-number (a word or a boolean): the column holds class labels."""
    words = [v for v, p in zip(values, parsed) if p is None]
    if words and all(p is None or p is _EMPTY for p in parsed):
        distinct = list(dict.fromkeys(_show(w) for w in words))
        examples = ", ".join(f"'{w}'" for w in distinct[:_EXAMPLES])
        raise DataError(f"{source}: target '{name}' holds words, not numbers (e.g. {examples}): it looks like "
                        f"class labels; for classification set task: classification")


def _refuse_unlearnable(column: np.ndarray, name: str, source: str) -> None:
    distinct = np.unique(column)
    if len(distinct) == 1:
        raise DataError(f"{source}: target '{name}' has one value ({float(distinct[0])!r}) in every row: "
                        f"nothing to learn; check data.columns.label")
    if len(distinct) == 2:
        low, high = (float(v) for v in distinct)
        raise DataError(f"{source}: target '{name}' has only two values ({low!r} and {high!r}): it looks like "
                        f"class labels; for classification set task: classification")


def _hint(value: Any) -> str:
    if isinstance(value, str) and _DECIMAL_COMMA.match(value.strip()):
        return " (write decimals with a point: 3.5, not 3,5)"
    if isinstance(value, (bool, np.bool_)):
        return " (a boolean)"
    return ""


def _show(value: Any) -> str:
    """A cell fit for a one-line message: stripped, control characters escaped, at most 40 characters."""
    text = str(value).strip()
    text = text if text.isprintable() else repr(text)[1:-1]
    return text if len(text) <= 40 else text[:37] + "..."


def as_target_matrix(y) -> np.ndarray:
    """Targets or predictions as float64 N x K: a 1-D array (one target) becomes one column."""
    y = np.asarray(y, dtype=np.float64)
    return y.reshape(-1, 1) if y.ndim == 1 else y


@dataclass(frozen=True)
class TargetScaler:
    """Per-target mean and standard deviation of the training targets: z = (y - mean) / std."""

    names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, y: np.ndarray, names: Sequence[str]) -> TargetScaler:
        """The scaling of training targets ``y`` (N or N x K). A zero spread (refused by
        parse_targets) would scale by 1, never divide by zero."""
        y = as_target_matrix(y)
        if y.shape[1] != len(names):
            raise ValueError(f"{y.shape[1]} target columns but {len(names)} names")
        if not len(y):
            raise ValueError("cannot fit a target scaling on no rows")
        std = y.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        return cls(tuple(str(n) for n in names), tuple(float(m) for m in y.mean(axis=0)), tuple(float(s) for s in std))

    def transform(self, y: np.ndarray) -> np.ndarray:
        """Standardised targets, N x K float64."""
        return (as_target_matrix(y) - np.asarray(self.mean)) / np.asarray(self.std)

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        """Model outputs (N or N x K) back in the user's units, N x K float64."""
        return as_target_matrix(z) * np.asarray(self.std) + np.asarray(self.mean)

    def to_dict(self) -> dict:
        """JSON-ready, for the model config (``config[CONFIG_KEY]``)."""
        return {"names": list(self.names), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: Any) -> TargetScaler:
        """The scaling saved by ``to_dict``; a missing or malformed one is a ModelError."""
        if not isinstance(data, Mapping) or not {"names", "mean", "std"} <= set(data):
            raise ModelError(f"the model config's {CONFIG_KEY} must map names, mean and std; found {data!r}: "
                             f"the model directory was edited or is not a tunesmith regression model")
        names, mean, std = (list(data[key]) if isinstance(data[key], (list, tuple)) else None
                            for key in ("names", "mean", "std"))
        numbers = [v for v in (mean or []) + (std or []) if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if (names is None or mean is None or std is None or not names or len(mean) != len(names)
                or len(std) != len(names) or len(numbers) != 2 * len(names)
                or not all(math.isfinite(v) for v in numbers) or any(s <= 0 for s in std)):
            raise ModelError(f"the model config's {CONFIG_KEY} is malformed ({dict(data)!r}): it needs one finite "
                             f"mean and one positive std per target name; restore the model directory, or retrain")
        return cls(tuple(str(n) for n in names), tuple(float(m) for m in mean), tuple(float(s) for s in std))
