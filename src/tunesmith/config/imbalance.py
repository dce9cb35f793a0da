"""The recipe's `imbalance:` and `inspect:` sections (pydantic; no torch, no pandas: the recipe stays light).

    imbalance:
      class_weights: null          # inverse | sqrt_inverse | effective_number | {label: weight, ...}
      beta: 0.999                  # effective_number: (1 - beta) / (1 - beta ** n_c)   (Cui et al., 2019)
      loss: ce                     # ce | focal
      gamma: 2.0                   # focal: (1 - p) ** gamma down-weights easy examples
      alpha: null                  # focal: positive-class weight (binary, a number in (0, 1)) or {label: weight}
      label_smoothing: 0.0         # soft labels: (1 - e) on the gold class, e / C spread over all classes
      positive: null               # binary tasks: the class PR-AUC and the threshold are about (default: the rarer one)
      resample:
        method: none               # none | oversample | undersample
        ratio: 1.0                 # target (minority : majority) after resampling; 1.0 = balanced
      augment:
        probability: 0.0           # chance that a minority-class training example is augmented when drawn
        operations: [delete, swap, insert]
        strength: 0.1              # fraction of the words touched (at least one)
        classes: null              # labels to augment; default: every class but the most frequent
      threshold:
        tune: false                # binary: pick the decision threshold on validation
        metric: null               # macro_f1 | positive_f1 | balanced_accuracy | accuracy (default: early-stopping metric)
      collapse_share: 0.95         # warn when one class takes this share of the predictions but not of the gold labels

    inspect:
      enabled: true                # diagnose the data at the start of `train` (report in RUN/inspect.json)
      fail_on: []                  # finding codes that stop training, e.g. [leakage, conflicting_labels]
      examples: 3                  # example rows shown per finding
"""

from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

WEIGHT_SCHEMES = ("inverse", "sqrt_inverse", "effective_number")
THRESHOLD_METRICS = ("macro_f1", "positive_f1", "balanced_accuracy", "accuracy", "weighted_f1")
AUGMENT_OPERATIONS = ("delete", "swap", "insert")
FINDING_CODES = (
    "class_imbalance", "rare_class", "duplicates", "normalised_duplicates", "conflicting_labels", "leakage",
    "empty_text", "truncation", "missing_class", "mixed_label_types",
    "untrained_label", "empty_label_sets",  # multi_label (evaluation/label_set_inspection.py)
    "repaired_sequences", "missing_type", "unseen_type", "long_sentences",  # token_classification (data/token_stats.py)
    "prompt_mismatch", "empty_reply", "identical_replies",  # dpo: bad preference pairs (data/preference_data.py)
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # inf, nan: refused


class ResampleSpec(_Section):
    method: Literal["none", "oversample", "undersample"] = "none"
    ratio: float = Field(1.0, gt=0, le=1, description="target minority:majority ratio after resampling")


class AugmentSpec(_Section):
    probability: float = Field(0.0, ge=0, le=1)
    operations: list[Literal["delete", "swap", "insert"]] = Field(default_factory=lambda: list(AUGMENT_OPERATIONS))
    strength: float = Field(0.1, gt=0, le=1, description="fraction of the words an operation touches")
    classes: list[Union[str, int, float, bool]] | None = None

    @field_validator("operations")
    @classmethod
    def _some(cls, value: list) -> list:
        if not value:
            raise ValueError("give at least one of delete, swap, insert")
        return value


class ThresholdSpec(_Section):
    tune: bool = False
    metric: Literal["macro_f1", "positive_f1", "balanced_accuracy", "accuracy", "weighted_f1"] | None = None


class ImbalanceSpec(_Section):
    class_weights: Union[Literal["inverse", "sqrt_inverse", "effective_number"], dict[str, float], None] = None
    beta: float = Field(0.999, gt=0, lt=1, description="effective_number weights")
    loss: Literal["ce", "focal"] = "ce"
    gamma: float = Field(2.0, ge=0, description="focal loss focusing parameter")
    alpha: Union[float, dict[str, float], None] = None
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    positive: Union[str, int, float, bool, None] = None
    resample: ResampleSpec = Field(default_factory=ResampleSpec)
    augment: AugmentSpec = Field(default_factory=AugmentSpec)
    threshold: ThresholdSpec = Field(default_factory=ThresholdSpec)
    collapse_share: float = Field(0.95, gt=0.5, le=1)

    @field_validator("class_weights", mode="before")
    @classmethod
    def _weights(cls, value):
        return _per_label_positive(value, "weight") if isinstance(value, dict) else value

    @field_validator("alpha", mode="before")
    @classmethod
    def _alpha(cls, value):
        if isinstance(value, dict):
            value = _per_label_positive(value, "alpha")
        elif value is not None and (isinstance(value, bool) or not 0 < float(value) < 1):
            raise ValueError("a single alpha is the positive-class weight of a binary task: a number in (0, 1)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "ImbalanceSpec":
        if self.alpha is not None and self.loss != "focal":
            raise ValueError("alpha is a focal-loss setting: set loss: focal, or use class_weights")
        if self.alpha is not None and self.class_weights is not None:
            raise ValueError("give class_weights or alpha, not both (alpha is focal loss's class weighting)")
        return self

    @property
    def custom_loss(self) -> bool:
        """Whether training needs a loss other than the model's own unweighted cross-entropy."""
        return self.class_weights is not None or self.loss != "ce" or self.label_smoothing > 0

    @property
    def active(self) -> list[str]:
        """Short names of the counter-measures switched on (for summaries)."""
        on = []
        if self.class_weights is not None:
            on.append(f"class_weights={self.class_weights if isinstance(self.class_weights, str) else 'explicit'}")
        if self.loss == "focal":
            on.append(f"focal(gamma={self.gamma:g})")
        if self.label_smoothing:
            on.append(f"label_smoothing={self.label_smoothing:g}")
        if self.resample.method != "none":
            on.append(f"{self.resample.method}(ratio={self.resample.ratio:g})")
        if self.augment.probability:
            on.append(f"augment(p={self.augment.probability:g})")
        if self.threshold.tune:
            on.append("threshold")
        return on


class InspectSpec(_Section):
    enabled: bool = True
    fail_on: list[Literal[FINDING_CODES]] = Field(default_factory=list)  # type: ignore[valid-type]
    examples: int = Field(3, ge=0, le=50)


def _per_label_positive(value: dict, what: str) -> dict:
    """A {label: number} map with string keys; every number positive (booleans are not numbers here)."""
    value = {str(k): v for k, v in value.items()}
    bad = [k for k, v in value.items() if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0]
    if bad:
        raise ValueError(f"the {what} of label '{bad[0]}' must be a positive number")
    return value
