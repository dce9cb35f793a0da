"""Which number format to train in.

`precision: auto` trains in bf16 autocast on a GPU that supports it, and in fp32 on a CPU: on this
project's reference CPU (AVX512-BF16, 2 cores) bf16 autocast was measured no faster for MiniLM
fine-tuning (see docs/benchmarks.md), and fp32 keeps CPU runs bit-reproducible. `precision: bf16`
forces bf16 autocast anywhere.
"""

from __future__ import annotations

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
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def mixed_precision(setting: str) -> str:
    """Accelerate's mixed_precision value for the recipe's train.precision."""
    if setting == "auto":
        return "bf16" if auto_uses_bf16() else "no"
    return "bf16" if setting == "bf16" else "no"
