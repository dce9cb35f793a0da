"""The recipe's `preference:` section (task: dpo): preference tuning on chosen/rejected pairs.

    preference:
      loss: sigmoid          # sigmoid (DPO) | ipo | simpo (reference-free)
      beta: 0.1              # sigmoid/ipo: strength of the KL anchor to the reference; simpo: reward scale
      label_smoothing: 0.0   # sigmoid: conservative DPO, the share of pairs assumed mislabelled (0 <= eps < 0.5)
      simpo_gamma: 0.5       # simpo: the target reward margin gamma (TRL's CPOConfig simpo_gamma)
      reference: live        # live: the reference model scores each batch; precomputed: scored once before
                             # training and kept with the pairs (two numbers a pair), so training runs one model
      invalid_pairs: drop    # a pair whose sides share no prompt, with an empty or identical reply: drop | error

The reference model is the pretrained model: a frozen copy for full / freeze / bitfit, and the base with the
adapter switched off for lora / dora (no second copy). simpo needs none.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PREFERENCE_LOSSES = ("sigmoid", "ipo", "simpo")
REFERENCE_FREE = ("simpo",)


class PreferenceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # inf, nan: refused

    loss: Literal["sigmoid", "ipo", "simpo"] = Field(
        "sigmoid", description="sigmoid: DPO (Rafailov et al. 2023); ipo: IPO (Azar et al. 2023); "
                               "simpo: SimPO (Meng et al. 2024), reference-free, length-normalised")
    beta: float | None = Field(None, gt=0, description="default 0.1 for sigmoid/ipo, 2.0 for simpo")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="sigmoid only: conservative DPO")
    simpo_gamma: float = Field(0.5, ge=0, description="simpo only: the target reward margin (as TRL's simpo_gamma)")
    reference: Literal["live", "precomputed"] = Field(
        "live", description="live: reference log-probs computed each batch; precomputed: once, before training")
    invalid_pairs: Literal["drop", "error"] = Field(
        "drop", description="pairs with no shared prompt, an empty reply or identical replies: drop them "
                            "(counted, with file and lines) or stop with an error")

    @model_validator(mode="after")
    def _settings_of_the_loss(self) -> "PreferenceSpec":
        # judged on values, not on the keys written: RUN/recipe.yaml writes every key back with its default
        if self.label_smoothing and self.loss != "sigmoid":
            raise ValueError(f"label_smoothing applies to loss sigmoid (conservative DPO), not {self.loss}")
        if self.simpo_gamma != 0.5 and self.loss != "simpo":
            raise ValueError(f"simpo_gamma applies to loss simpo, not {self.loss}")
        if self.reference != "live" and self.loss in REFERENCE_FREE:
            raise ValueError(f"loss {self.loss} uses no reference model; remove preference.reference")
        return self

    @property
    def beta_value(self) -> float:
        """beta as written, else the loss's usual default (TRL's: 0.1 for DPO/IPO, SimPO's paper: 2.0)."""
        if self.beta is not None:
            return self.beta
        return 2.0 if self.loss == "simpo" else 0.1

    @property
    def uses_reference(self) -> bool:
        return self.loss not in REFERENCE_FREE
