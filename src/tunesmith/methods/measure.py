"""Peak memory of this process, without psutil: the kernel's high-water mark of resident memory on CPU,
and the CUDA caching allocator's peak on GPU.

On Linux the figure is VmHWM from /proc/self/status, the peak RSS of this process's own address space.
getrusage's ru_maxrss is NOT used there: exec() carries the parent's peak into it (a `tunesmith train`
started by a 2 GB Python process reports at least 2 GB). Elsewhere ru_maxrss is the fallback.
"""

from __future__ import annotations

import resource
import sys


def peak_rss_bytes() -> int:
    """Largest resident set size this process's address space has had."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS: bytes; Linux/BSD: KiB


def release_freed_memory() -> None:
    """Hand memory that was freed back to the operating system (glibc's malloc_trim). torch's CPU tensors come
    from malloc; after a phase that held a transient copy of the model (preflight's save-and-reload round
    trip, the evaluation before training), glibc keeps the freed pages in its heap, so the process stays that
    large while it trains. A no-op where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # musl and others: nothing to trim with
        pass


def peak_memory(device=None) -> dict:
    """{"peak_rss_mb": ..., "peak_gpu_mb": ... (on a CUDA device)}; MB = 2**20 bytes."""
    out = {"peak_rss_mb": round(peak_rss_bytes() / 2**20, 1)}
    if device is not None and str(device).startswith("cuda"):
        import torch

        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


def format_memory(memory: dict) -> str:
    text = f"peak memory {memory['peak_rss_mb'] / 1024:.2f} GiB RSS"
    if "peak_gpu_mb" in memory:
        text += f", {memory['peak_gpu_mb'] / 1024:.2f} GiB GPU"
    return text
