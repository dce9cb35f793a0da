"""Which number format to train in.

`precision: auto` trains in bf16 autocast (weights, gradients and optimizer state stay fp32) wherever the
hardware computes bf16 natively: a CUDA GPU that supports it, or a CPU with AVX512-BF16 or AMX. Elsewhere
it trains in fp32. On the reference CPU (AVX512-BF16, 2 cores) bf16 autocast made a MiniLM step 1.2-1.4x
faster at every sequence length measured (6 to 60 tokens) for the same dev accuracy; see
docs/benchmarks.md. `precision: fp32` / `bf16` force one or the other.

Autocast covers the training step (`prepare_for_training` keeps it off the model's forward, and the training step
enters `accelerator.autocast()`) and, by default (`train.eval_precision: train`), every evaluation of the run, as
Trainer's do: before, during and after training each one enters `evaluation_context`, so their numbers compare with
each other. On the reference CPU a MiniLM pass over SST-2's dev set took 1.05 s in bf16 autocast against 2.85 s in
fp32 (docs/benchmarks.md). What uses a finished run - `tunesmith evaluate`, predict, serve, export, merge - runs in
fp32, so after a bf16 run its numbers differ from eval.json's by bf16 rounding; `eval_precision: fp32` evaluates
the run in fp32 too (then they are the same computation). The one exception: LoRA / DoRA with the frozen base held
in bf16 (methods/frozen_precision.py), whose evaluations during training run in bf16 autocast whatever
eval_precision says. Preflight's checks compare fp32 forwards.
"""

from __future__ import annotations

import contextlib

import torch


def cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX instructions on this CPU (Linux)."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = handle.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def auto_uses_bf16() -> bool:
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_has_bf16()


def mixed_precision(setting: str) -> str:
    """Accelerate's mixed_precision value for the recipe's train.precision."""
    if setting == "auto":
        return "bf16" if auto_uses_bf16() else "no"
    return "bf16" if setting == "bf16" else "no"


def make_accelerator(precision: str = "fp32", **kwargs):
    """An Accelerator training in `precision` (a train.precision value).

    Accelerate keeps one process-wide state and refuses a second Accelerator with another mixed precision;
    a notebook or test that trains in bf16 and then predicts in fp32 in the same process would fail. The
    precision part is reset first (as transformers' TrainingArguments does); the process group is kept.
    Under a launcher, train/distributed.py adds the CPU (gloo) options; a sharded engine (FSDP, DeepSpeed) is
    checked against the machine before and against what tunesmith supports after (train/sharding.py)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from tunesmith.errors import TrainingError
    from tunesmith.train.distributed import accelerator_options
    from tunesmith.train.sharding import check_machine, fsdp_over_gloo, fsdp_over_gloo_requested, plugin_problem

    check_machine()
    AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(mixed_precision=mixed_precision(precision), **{**accelerator_options(), **kwargs})
    if fsdp_over_gloo_requested():
        fsdp_over_gloo(accelerator)
    problem = plugin_problem(accelerator)
    if problem:
        raise TrainingError(f"distributed training with {problem}")
    return accelerator


def hold_frozen_weights(accelerator, model, spec, echo=print) -> bool:
    """Under LoRA / DoRA in bf16 (method.frozen_precision: auto), cast the frozen base to bf16 once
    (methods/frozen_precision.py); whether it did. Call before `prepare_for_training`."""
    from tunesmith.methods.frozen_precision import cast_frozen_to_bf16, holds_frozen_in_bf16

    if not holds_frozen_in_bf16(spec, accelerator.mixed_precision):
        return False
    saved = cast_frozen_to_bf16(model)
    echo(f"frozen base held in bf16 ({saved / 2**20:,.0f} MB less than fp32; method.frozen_precision: fp32 keeps it "
         f"fp32): evaluations during training run in bf16, the final one in fp32 on the merged model")
    return True


def evaluation_context(accelerator, train_spec):
    """Around every evaluation of a run: the training autocast under train.eval_precision: train (the default),
    else nothing (fp32)."""
    return accelerator.autocast() if train_spec.eval_precision == "train" else contextlib.nullcontext()


def prepare_for_training(accelerator, model, *objects, autocast_everywhere: bool = False):
    """`accelerator.prepare(model, *objects)`, with mixed precision kept off the model's forward pass: the
    training step enters `accelerator.autocast()` itself (train/loop.py, plan.py), evaluations enter
    `evaluation_context`. `autocast_everywhere` (a frozen base held in bf16) keeps Accelerate's autocast wrapper
    on the forward, so evaluations during training run in bf16 whatever eval_precision says."""
    prepared = accelerator.prepare(model, *objects)
    if not autocast_everywhere:
        accelerator.unwrap_model(prepared[0] if objects else prepared, keep_fp32_wrapper=False)  # drops the wrapper
    return prepared
