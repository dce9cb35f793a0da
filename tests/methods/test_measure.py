"""Process memory: the freed-memory release that keeps a transient model copy from staying resident."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

# In a fresh process (a long test session's heap is fragmented in ways no test controls): 4,000 tensors of 64 KB
# come from glibc's heap (below its 128 KB mmap threshold); a small tensor allocated after them pins the heap's
# top, so freeing them alone returns little, and releasing returns them.
SCENARIO = """
import json, torch
from tunesmith.methods.measure import release_freed_memory

def resident_mb():
    with open("/proc/self/status", encoding="ascii") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:")) / 1024

held = [torch.ones(2**14) for _ in range(4_000)]  # 4,000 x 64 KB = 250 MB, written, so resident
pin = torch.ones(16)
held_mb = resident_mb()
del held
freed_mb = resident_mb()
release_freed_memory()
print(json.dumps({"held": held_mb, "freed": freed_mb, "released": resident_mb(), "pin": float(pin.sum())}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmRSS and glibc's malloc_trim are Linux's")
def test_freed_tensors_stop_being_resident_once_released():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", SCENARIO], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    mb = json.loads(done.stdout.strip().splitlines()[-1])
    assert mb["pin"] == 16
    assert mb["held"] - mb["freed"] < 100, mb  # freeing alone gives back little: the heap's top is pinned
    assert mb["released"] < mb["freed"] - 200, mb
