"""Hold out part of a data set (e.g. a validation split carved from the training file)."""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
import pandas as pd

from tunesmith.errors import DataError

_STRATIFY_HINT = "set data.validation.stratify: false"


def split_frame(
    df: pd.DataFrame,
    fraction: float,
    *,
    seed: int,
    stratify: bool = True,
    label_column: str = "label",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``df`` into (train, held_out), ``held_out`` holding ``fraction`` of the rows.

    The split is a shuffled ``sklearn.model_selection.train_test_split`` determined by ``seed``;
    with ``stratify`` each class keeps its share of rows in both parts (to within one row). The
    held-out part gets ``ceil(fraction * len(df))`` rows. Both frames get a fresh 0..n-1 index.
    Raises DataError when the split cannot be made (too few rows, or a class too small to stratify).
    """
    n_held = held_out_count(len(df), fraction)
    from sklearn.model_selection import train_test_split  # here: scikit-learn is ~40 MB in memory

    strata = _strata(df, n_held, label_column) if stratify else None
    train, held = train_test_split(df, test_size=n_held, random_state=seed, shuffle=True, stratify=strata)
    return train.reset_index(drop=True), held.reset_index(drop=True)


def sample_validation(frame: pd.DataFrame, max_rows: int | None, *, seed: int) -> tuple[pd.DataFrame, str | None]:
    """``data.validation.max_rows``: a seeded random sample of at most ``max_rows`` rows (in their original
    order, fresh 0..n-1 index) and a note saying so; the frame itself, and no note, when it is no larger."""
    if max_rows is None or len(frame) <= max_rows:
        return frame, None
    sample = frame.sample(n=max_rows, random_state=seed).sort_index().reset_index(drop=True)
    return sample, (f"validation: a random sample of {max_rows} of its {len(frame)} rows "
                    f"(data.validation.max_rows, seed {seed})")


def held_out_count(n_rows: int, fraction: float) -> int:
    """``ceil(fraction * n_rows)``, checked: a fraction in (0, 1) that leaves rows for training."""
    if isinstance(fraction, bool) or not isinstance(fraction, Real) or not 0 < fraction < 1:
        raise DataError(f"the held-out fraction (data.validation.split) must be between 0 and 1, "
                        f"exclusive; got {fraction!r}")
    n_held = math.ceil(fraction * n_rows)
    if n_rows < 2 or n_held >= n_rows:
        raise DataError(f"cannot hold out {fraction:g} of {n_rows} rows and keep any for training; "
                        f"add rows or lower the fraction")
    return n_held


def held_out_rows(n_rows: int, fraction: float, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows), each in ascending order: the rows that ``split_frame(stratify=False)``
    puts in each part of a table of ``n_rows`` rows (the same shuffled split), without the table itself."""
    n_held = held_out_count(n_rows, fraction)
    from sklearn.model_selection import train_test_split

    train, held = train_test_split(np.arange(n_rows, dtype=np.int64), test_size=n_held, random_state=seed,
                                   shuffle=True)
    return np.sort(train), np.sort(held)


def _strata(df: pd.DataFrame, n_held: int, label_column: str) -> pd.Series:
    """The labels as strings, checked to allow a stratified split of ``n_held`` rows."""
    if label_column not in df.columns:
        raise DataError(f"cannot stratify: the data has no '{label_column}' column; {_STRATIFY_HINT}")
    strata = df[label_column].map(_stratum)
    counts = strata.value_counts()
    small = counts[counts < 2]
    if len(small):
        name, count = small.index[0], int(small.iloc[0])
        more = f" (and {len(small) - 1} more such classes)" if len(small) > 1 else ""
        raise DataError(f"label '{name}' has only {count} example{more}; a stratified split needs at "
                        f"least 2 per class: add examples, or {_STRATIFY_HINT}")
    n_classes = len(counts)
    n_train = len(df) - n_held
    if n_held < n_classes or n_train < n_classes:
        part, size = ("held-out", n_held) if n_held < n_classes else ("training", n_train)
        raise DataError(f"a stratified split needs at least one row of each of the {n_classes} classes "
                        f"in the {part} part, which would have only {size} rows; raise the fraction, "
                        f"add rows, or {_STRATIFY_HINT}")
    return strata


def _stratum(value: object) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
