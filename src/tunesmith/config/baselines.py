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


REFERENCE_NAMES = ("strongest", "majority", "tfidf", "tfidf_ridge", "mean", "majority_tag", "crf", "pretrained",
                   "scratch")


class QualityGateSpec(BaseModel):
    """The recipe's `quality_gate:` section: a run whose best model does not beat a reference point on
    validation (by more than `margin`), or predicts one class only, fails with exit status 3 (the model is kept
    and marked in eval.json). Without it the same verdict is a warning (evaluation/verdict.py).

        quality_gate: {beat: tfidf, margin: 0.0}      # strongest | majority | tfidf | mean | pretrained | ...
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # inf, nan: refused

    beat: str = Field("strongest", description="the reference point to beat: strongest (of those measured), "
                                               "or one by name")
    margin: float = Field(0.0, ge=0, description="by more than this, in the metric's units")

    @model_validator(mode="after")
    def _known_reference(self) -> "QualityGateSpec":
        if self.beat not in REFERENCE_NAMES:
            raise ValueError(f"unknown reference '{self.beat}'; choose one of {', '.join(REFERENCE_NAMES)}")
        return self
