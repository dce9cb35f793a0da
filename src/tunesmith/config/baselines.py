"""The recipe's `baselines:` section (pure pydantic).

    baselines: {majority: true, tfidf: true, scratch: false, cv_folds: 5}   # the default
    baselines: [tfidf, scratch]      # exactly these
    baselines: false                 # none
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAMES = ("majority", "tfidf", "scratch")


class BaselinesSpec(BaseModel):
    """The recipe's `baselines:` section (defaults: majority and tfidf on, scratch off)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # inf, nan: refused

    majority: bool = True
    tfidf: bool = True
    scratch: bool = Field(False, description="train the same architecture from random weights with the same recipe")
    cv_folds: int = Field(5, ge=2, description="cross-validation folds that choose the TF-IDF model's C")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        """`false`/`null`/`[]` turn every baseline off; a name or a list of names turns on exactly those."""
        if value is None or value is False:
            return {name: False for name in NAMES}
        if value is True:
            return {}
        if isinstance(value, str):
            value = [value]
        if isinstance(value, (list, tuple)):
            unknown = [v for v in value if v not in NAMES]
            if unknown:
                raise ValueError(f"unknown baseline {unknown[0]!r}; choose from {', '.join(NAMES)}")
            return {name: name in value for name in NAMES}
        if not isinstance(value, (dict, BaselinesSpec)):
            raise ValueError(f"must be true, false, a baseline name ({', '.join(NAMES)}), a list of names, or a "
                             f"mapping such as {{tfidf: false}}")
        return value

    @property
    def enabled(self) -> list[str]:
        return [name for name in NAMES if getattr(self, name)]
