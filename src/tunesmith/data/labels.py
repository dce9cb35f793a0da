"""The mapping between label values and the class ids a classifier predicts.

A :class:`LabelMap` is built once from the training labels (``LabelMap.fit``) or from a saved
model's ``id2label`` (``LabelMap.from_config``) and then encodes every split with the same ids.

One rule for every reader and file format: label values that are equal as numbers are one label.
``canonical_label`` turns a value into its one form: a string that spells a finite number (``"1"``,
``" 1.0 "``, ``"1e3"``) reads as that number, an integral number as an int (``1.0`` -> ``1``), other
strings are stripped of surrounding whitespace; booleans stay booleans. So ``1``, ``"1"``, ``1.0``
and ``"1.0"`` are the class named ``"1"``, and ``2.5`` the class ``"2.5"``.

Class order is deterministic: numerically when every label is a number, otherwise by the label's
name (``str`` of its canonical form).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from numbers import Number
from typing import Any

import numpy as np
import pandas as pd

from tunesmith.errors import DataError, ModelError, shorten

_MAX_LISTED = 20  # known labels shown in an error message
_INTEGER = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_EXACT_FLOAT_INTS = 2**53  # integral floats below this convert to int exactly


def canonical_label(value: Any) -> Any:
    """The one form of a label value (see the module docstring); blank values come back unchanged."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return value
    if isinstance(value, str):
        text = value.strip()
        if _INTEGER.fullmatch(text):
            return int(text)
        if not _DECIMAL.fullmatch(text):
            return text
        number = float(text)
        if not math.isfinite(number):  # "1e999": not a number a label could mean
            return text
        value = number
    if isinstance(value, float) and value.is_integer() and abs(value) < _EXACT_FLOAT_INTS:
        return int(value)
    return value


def is_numeric_label(value: Any) -> bool:
    """Whether a (canonical) label value is a number (booleans are not)."""
    return _is_number(value) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    return isinstance(value, (Number, np.number, np.bool_)) and not isinstance(value, complex)


def _is_blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return _is_number(value) and isinstance(value, (float, np.floating)) and math.isnan(value)


def _name(value: Any, integral: bool) -> str:
    """The class name of one label value."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, np.generic):
        value = value.item()
    if integral and isinstance(value, float):
        return str(int(value))
    return value.strip() if isinstance(value, str) else str(value)


def _show(name: str) -> str:
    """``name`` fit for a one-line message: control characters escaped, cut to 80 characters."""
    name = shorten(name, 80)
    return name if name.isprintable() else repr(name)[1:-1]


def _quote_list(names: list[str]) -> str:
    shown = ", ".join(_show(n) for n in names[:_MAX_LISTED])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _MAX_LISTED else "")


class LabelMap:
    """An immutable, ordered set of class names with their ids 0..n-1."""

    __slots__ = ("_names", "_ids")

    def __init__(self, names: Iterable[str]):
        names = tuple(str(n) for n in names)
        ids = {name: i for i, name in enumerate(names)}
        if len(ids) != len(names):
            raise ValueError(f"duplicate label names: {names}")
        object.__setattr__(self, "_names", names)
        object.__setattr__(self, "_ids", ids)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("LabelMap is immutable")

    @classmethod
    def fit(cls, labels: Iterable[Any], source: str = "the training data") -> LabelMap:
        """The classes found in ``labels``, ordered deterministically (see the module docstring).

        ``source`` (usually the training file's path) starts every error message. Raises DataError
        for a blank label or fewer than 2 classes.
        """
        distinct = [v for _, v in dict.fromkeys((type(v), _hashable(v)) for v in labels)]
        values = [v for _, v in dict.fromkeys((type(c), _hashable(c)) for c in map(canonical_label, distinct))]
        if any(_is_blank(v) for v in values):
            raise DataError(f"{source}: found an empty label; every training example needs one")
        numeric = all(_is_number(v) for v in values)
        integral = numeric and all(isinstance(v, (bool, int)) or float(v).is_integer() for v in values)
        if numeric:
            pairs = sorted({_name(v, integral): v for v in values}.items(),
                           key=lambda item: (item[1], item[0]))
            names = [name for name, _ in pairs]
        else:
            names = sorted({_name(v, integral) for v in values})
        if len(names) < 2:
            found = ", ".join(f"'{_show(n)}'" for n in names)
            raise DataError(f"{source}: classification needs at least 2 classes, found "
                            f"{len(names)}{': ' + found if found else ''}")
        return cls(names)

    @classmethod
    def from_config(cls, id2label: Mapping[Any, Any]) -> LabelMap:
        """The map saved in a model config's ``id2label`` (keys may be ints or digit strings)."""
        try:
            pairs = sorted((int(k), str(v)) for k, v in id2label.items())
        except (TypeError, ValueError):
            raise ModelError(f"the model config's id2label has a non-integer id: {dict(id2label)}") from None
        ids = [i for i, _ in pairs]
        if ids != list(range(len(ids))):
            raise ModelError(f"the model config's id2label ids are not 0..{len(ids) - 1}: {ids}")
        names = [name for _, name in pairs]
        if len(set(names)) != len(names):
            raise ModelError(f"the model config's id2label repeats a label: {names}")
        return cls(names)

    @property
    def names(self) -> list[str]:
        """Class names in id order."""
        return list(self._names)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self._names))

    @property
    def label2id(self) -> dict[str, int]:
        return dict(self._ids)

    def __len__(self) -> int:
        return len(self._names)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelMap) and self._names == other._names

    def __hash__(self) -> int:
        return hash(self._names)

    def __repr__(self) -> str:
        return f"LabelMap({list(self._names)!r})"

    def id_of(self, value: Any) -> int | None:
        """The id of one label value, or None if it is not a known class."""
        if _is_blank(value):
            return None
        canonical = canonical_label(value)
        candidates = [_name(canonical, False), _name(value, False), _name(value, True)]
        if is_numeric_label(canonical) and abs(canonical) < 1e300:
            candidates.append(str(float(canonical)))  # 1 for a class named "1.0" (a model saved before the rule)
        for name in candidates:
            if name in self._ids:
                return self._ids[name]
        return None

    def encode(self, df: pd.DataFrame, source: str) -> np.ndarray:
        """int64 class ids for ``df['label']``; an unknown or empty label is a DataError that names
        ``source`` and the row's ``df['line']``."""
        cache: dict[tuple[type, Any], int | None] = {}
        ids = np.empty(len(df), dtype=np.int64)
        unit = df.attrs.get("line_unit", "line")
        for k, (value, line) in enumerate(zip(df["label"].tolist(), df["line"].tolist())):
            key = (type(value), _hashable(value))
            if key not in cache:
                cache[key] = self.id_of(value)
            found = cache[key]
            if found is None:
                if _is_blank(value):
                    raise DataError(f"{source}, {unit} {line}: empty label")
                raise DataError(f"{source}, {unit} {line}: label '{_show(_name(value, False))}' was not seen "
                                f"in the training data (known labels: {_quote_list(list(self._names))})")
            ids[k] = found
        return ids


def _hashable(value: Any) -> Any:
    """``value`` usable as a dict key (NaN is kept: it is caught as blank)."""
    if isinstance(value, np.generic):
        value = value.item()
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value
