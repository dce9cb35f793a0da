"""The recipe's `multi_label:` section (task: multi_label: a text -> a set of labels, possibly empty).

    multi_label:
      loss: bce              # bce (binary cross-entropy with logits) | focal (focal BCE)
      gamma: 2.0             # focal: how much easy labels are down-weighted
      pos_weight: none       # none | counts (negatives / positives per label, from the training split)
                             # | {label: weight, ...} (explicit; labels not named keep 1.0)
      max_pos_weight: 10.0   # counts: cap, so a label seen twice does not get a weight of thousands
      threshold:
        tune: true           # choose the decision threshold(s) on validation after training
        per_label: true      # one threshold per label (else one global threshold)
        metric: null         # the metric the thresholds maximise (default: the early-stopping metric)
        value: 0.5           # the threshold used when not tuned (and before tuning)

The labels come from `data.columns.label`: a JSON list in jsonl/json/parquet, or a string split on
`data.label_separator` in csv/tsv.
"""

from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field


class ThresholdSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    tune: bool = Field(True, description="tune the decision threshold(s) on validation after training")
    per_label: bool = Field(True, description="one threshold per label; false: one global threshold")
    metric: str | None = Field(None, description="the metric tuning maximises (default: the early-stopping metric)")
    value: float = Field(0.5, gt=0, lt=1, description="the threshold when not tuned")


class MultiLabelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # inf, nan: refused

    loss: Literal["bce", "focal"] = "bce"
    gamma: float = Field(2.0, ge=0, description="focal: the focusing exponent")
    pos_weight: Union[Literal["none", "counts"], dict[str, float]] = Field(
        "none", description="BCE weight of each label's positives: none, counts (negatives/positives), or per label")
    max_pos_weight: float = Field(10.0, gt=0, description="pos_weight: counts never weights a label above this")
    threshold: ThresholdSpec = Field(default_factory=ThresholdSpec)
