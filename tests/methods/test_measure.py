"""Process memory: the freed-memory release that keeps a transient model copy from staying resident."""

from __future__ import annotations

import sys

import pytest
import torch

from tunesmith.methods.measure import release_freed_memory


def resident_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:")) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmRSS and glibc's malloc_trim are Linux's")
def test_freed_tensors_stop_being_resident_once_released():
    """4,000 tensors of 64 KB come from glibc's heap (below its 128 KB mmap threshold); a small tensor allocated
    after them pins the heap's top, so freeing them alone returns little."""
    held = [torch.ones(2**14) for _ in range(4_000)]  # 4,000 x 64 KB = 250 MB, written, so resident
    pin = torch.ones(16)
    before_free = resident_mb()
    del held
    after_free = resident_mb()
    release_freed_memory()
    after_release = resident_mb()
    assert pin.sum() == 16
    assert after_release < after_free - 200, (before_free, after_free, after_release)
