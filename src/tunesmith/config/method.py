"""The recipe's `method:` section: how much of the model is trained.

    method: lora                      # shorthand for {name: lora}
    method:
      name: freeze                    # full | freeze | bitfit | lora | dora
      freeze: layers                  # freeze only: embeddings | layers | all_but_head
      layers: 4                       # freeze: layers only: embeddings + the first 4 transformer layers
      r: 8                            # lora/dora only: rank
      alpha: 16                       # lora/dora only: scaling (alpha / r)
      dropout: 0.05                   # lora/dora only
      target_modules: [query, value]  # lora/dora only; default per architecture (methods/lora.py)
      frozen_precision: auto          # lora/dora only: auto holds the frozen base in bf16 when training in bf16
                                      # (methods/frozen_precision.py); fp32 keeps it in fp32
      gradient_checkpointing: false   # any method: recompute activations in backward (less memory, ~30% slower)
      compile: none                   # any method: none | regional (torch.compile of the repeated transformer block,
                                      # compiled once and reused by every layer, training forwards only:
                                      # methods/regional_compile.py); left out of the saved recipe when none

Options that do not belong to the chosen method are errors, and are left out of the saved recipe.

This module imports only pydantic: recipe.py imports it, and the methods' code (torch, PEFT) stays out of
recipe validation.
"""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

METHOD_NAMES = ("full", "freeze", "bitfit", "lora", "dora")

# which options belong to which methods ("gradient_checkpointing", "compile" and "name" belong to all)
OPTIONS = {
    "freeze": ("freeze",),
    "layers": ("freeze",),
    "r": ("lora", "dora"),
    "alpha": ("lora", "dora"),
    "dropout": ("lora", "dora"),
    "target_modules": ("lora", "dora"),
    "frozen_precision": ("lora", "dora"),
}


# train.lr when the recipe leaves it out: methods that train few parameters from a small start (LoRA's B = 0, a
# fresh head, biases) need far larger steps than full fine-tuning. Measured on MiniLM (SST-2 subset, SMS Spam):
# docs/benchmarks.md, "Learning-rate defaults by method".
DEFAULT_LR = {"full": 5e-5, "freeze": 5e-5, "bitfit": 5e-3, "lora": 1e-3, "dora": 1e-3}
HEAD_ONLY_LR = 1e-2  # freeze: all_but_head (only the task head trains)
LOW_LR_FACTOR = 8  # an explicit train.lr this many times below the method's default is called out


def default_lr(spec: "MethodSpec") -> float:
    """The learning rate `spec` trains with when the recipe does not set train.lr."""
    if spec.name == "freeze" and spec.freeze == "all_but_head":
        return HEAD_ONLY_LR
    return DEFAULT_LR[spec.name]


class MethodSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # inf, nan: refused

    name: str = Field("full", description="full | freeze | bitfit | lora | dora")
    gradient_checkpointing: bool = False
    compile: Literal["none", "regional"] = Field("none", description="none | regional: torch.compile of each "
                                                 "repeated transformer block (methods/regional_compile.py)")
    freeze: Literal["embeddings", "layers", "all_but_head"] = "all_but_head"
    layers: int | None = Field(None, ge=1, description="freeze: layers: how many transformer layers, from the bottom")
    r: int = Field(8, ge=1)
    alpha: float = Field(16, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | None = Field(None, min_length=1)
    frozen_precision: Literal["auto", "fp32"] = "auto"

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        if not isinstance(value, (dict, MethodSpec)):
            raise ValueError(f"must be a method name ({', '.join(METHOD_NAMES)}) or a mapping with name: "
                             f"and the method's options")
        return value

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in METHOD_NAMES:
            close = difflib.get_close_matches(value, METHOD_NAMES, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"unknown method '{value}'{hint}; choose one of {', '.join(METHOD_NAMES)}")
        return value

    @model_validator(mode="after")
    def _options_fit_the_method(self) -> "MethodSpec":
        for option in sorted(self.model_fields_set):
            owners = OPTIONS.get(option)
            if owners and self.name not in owners:
                raise ValueError(f"'{option}' is an option of {' and '.join(owners)}, not of method '{self.name}'")
        if self.name == "freeze":
            if self.freeze == "layers" and self.layers is None:
                raise ValueError("freeze: layers needs 'layers', the number of transformer layers to freeze")
            if self.freeze != "layers" and self.layers is not None:
                raise ValueError(f"'layers' goes with freeze: layers (freeze is '{self.freeze}')")
        return self

    @model_serializer(mode="wrap")
    def _only_what_applies(self, handler):
        data = handler(self)
        return {k: v for k, v in data.items() if self.name in OPTIONS.get(k, (self.name,))
                and not (k == "layers" and v is None) and not (k == "compile" and v == "none")}

    def describe(self) -> str:
        """A short human name: 'lora r=8', 'freeze layers 0-3', 'full + gradient checkpointing + regional compile'."""
        text = self.name
        if self.name in ("lora", "dora"):
            text += f" r={self.r}"
        elif self.name == "freeze":
            text += f" {self.freeze}" + (f" {self.layers}" if self.freeze == "layers" else "")
        text += " + gradient checkpointing" if self.gradient_checkpointing else ""
        return text + (" + regional compile" if self.compile == "regional" else "")
