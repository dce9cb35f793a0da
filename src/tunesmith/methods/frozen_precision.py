"""Frozen base weights held in bf16 under LoRA / DoRA (`method.frozen_precision: auto`, the default).

A run that trains in bf16 autocast only ever reads its frozen weights as bf16: holding them in fp32 costs twice
their memory, and autocast re-casts every frozen weight at every forward (it caches the casts of trainable
leaves only) and keeps the bf16 copy for the backward pass besides. Under `auto`, when the run trains in bf16,
the frozen parameters are cast to bf16 once, after the method is applied; the adapter matrices, a trained head
and their optimizer state stay fp32 (PEFT keeps adapters in fp32 and casts their input).

What follows from it:
- every forward of the model during training, evaluations included, runs under bf16 autocast (the prepared
  model keeps Accelerate's autocast wrapper: train/precision.py, `prepare_for_training`);
- at the end the fp32 base weights are read back from the base's directory (`restore_frozen_fp32`) before the
  best adapter is merged, so RUN/model is merged from the full-precision base, and the final evaluation runs
  in fp32 as every other run's does;
- checkpoints hold only the trainable weights (train/checkpoint_state.py), so resume is unchanged.

`frozen_precision: fp32` keeps the frozen weights in fp32 (the behaviour before; bf16 autocast casts them).
"""

from __future__ import annotations

from pathlib import Path

import torch

from tunesmith.methods.base import plain_model
from tunesmith.models import quiet_transformers

HOLDS_BF16_BASE = ("lora", "dora")  # methods whose frozen weights never reach RUN/model unmerged


def holds_frozen_in_bf16(spec, mixed_precision: str) -> bool:
    """Whether a run of `spec` (a MethodSpec) training under Accelerate's `mixed_precision` casts its frozen
    weights to bf16."""
    return (spec.name in HOLDS_BF16_BASE and getattr(spec, "frozen_precision", "fp32") == "auto"
            and mixed_precision == "bf16")


def cast_frozen_to_bf16(model) -> int:
    """Cast every frozen fp32 parameter of `model` to bf16 in place (tied weights once); the bytes saved."""
    saved = 0
    for param in model.parameters():  # shared tensors are yielded once
        if not param.requires_grad and param.dtype == torch.float32:
            param.data = param.data.to(torch.bfloat16)
            saved += param.numel() * 2
    return saved


def has_bf16_frozen(model) -> bool:
    return any(p.dtype == torch.bfloat16 and not p.requires_grad for p in model.parameters())


# bf16 keeps 8 bits of mantissa (2^-8 relative); through 30 layers two computations of the same logits (batched with
# padding, or alone) differ by ~1% of the largest logit (smollm2: 0.375 of 30). The faults the checks look for (a
# lost head, the wrong padding side) move logits by the order of the logits themselves.
BF16_RELATIVE_TOLERANCE = 5e-2


def logit_tolerance(model, fp32_tolerance: float, logits: torch.Tensor) -> float:
    """How far two computations of `logits` by `model` may differ: `fp32_tolerance`, or, with a frozen base held
    in bf16, bf16 rounding (5e-2 x (1 + the largest logit))."""
    if not has_bf16_frozen(model):
        return fp32_tolerance
    return BF16_RELATIVE_TOLERANCE * (1 + float(logits.abs().max()))


def original_name(name: str) -> str:
    """A parameter's name in the base model, from its name under a PEFT wrapper."""
    return name.replace(".base_layer.", ".").replace(".original_module.", ".")


def restore_frozen_fp32(model, base_dir) -> None:
    """Read the fp32 weights of `model`'s bf16 frozen parameters back from `base_dir` (the model directory the
    base was loaded from) into them, in place; the trained parameters are left as they are. A frozen parameter
    the base's files do not hold (a new head left frozen) is upcast as it is."""
    inner = plain_model(model)
    wanted = {name: param for name, param in inner.named_parameters()
              if param.dtype == torch.bfloat16 and not param.requires_grad}
    if not wanted:
        return
    with quiet_transformers():  # its new (unused) head's load report is noise
        fresh, info = type(inner).from_pretrained(  # the base was checked (safetensors, or allow_pickle) when loaded
            str(base_dir), config=inner.config, dtype=torch.float32, local_files_only=True, output_loading_info=True,
            use_safetensors=True if any(Path(base_dir).glob("*.safetensors")) else None)
    state, not_in_base = fresh.state_dict(), set(info.get("missing_keys") or ())
    for name, param in wanted.items():
        key = original_name(name)
        if key not in state:
            raise RuntimeError(f"{base_dir}: no weights for {key} to restore the frozen base from")
        param.data = param.data.float() if key in not_in_base else state[key].to(param.device)
    del fresh, state
