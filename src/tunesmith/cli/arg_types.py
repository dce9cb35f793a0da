"""argparse ``type=`` functions for numeric options: a bad value is a one-line usage error naming the option
(`error: tunesmith inspect: argument --max-length: must be a whole number >= 1 (got '-5')`), before any
work starts."""

from __future__ import annotations

import argparse
import math

from tunesmith.errors import shown


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1 (got {shown(text)})")
    return value


def finite_non_negative(text: str) -> float:
    """A finite number >= 0 (not nan, not inf)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0 (got {shown(text)})")
    return value
