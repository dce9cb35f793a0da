"""The memory allocator a `tunesmith` command runs under: tcmalloc where it is installed, else the system's.

A CPU training step allocates and frees many tensors; glibc's malloc spends a large share of such a step and keeps
memory it freed. Measured on the reference CPU (docs/benchmarks.md, "LoRA's peak memory"): under tcmalloc the
SmolLM2 + LoRA benchmark ran at 1.35x its glibc speed, and the whole SST-2 / MiniLM classification process took
40.1 s instead of 46.4 s, at the same results. The command line (`tunesmith`, `python -m tunesmith`) therefore
starts itself again with tcmalloc preloaded (`LD_PRELOAD`) when the library is on the machine (Debian / Ubuntu
package libtcmalloc-minimal4; `make` installs it where it can) and nothing else is preloaded. The numbers a run
computes do not depend on the allocator. `TUNESMITH_ALLOCATOR=system` keeps the system allocator; eval.json's
`environment.allocator` says which one ran. Code that imports tunesmith as a library is never re-executed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SETTING = "TUNESMITH_ALLOCATOR"  # "system": no re-execution
LIBRARIES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")
LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")
QUIET = {"TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(1 << 40)}  # no report line for each allocation over 1 GB


def find_tcmalloc(dirs=LIBRARY_DIRS) -> str | None:
    for directory in dirs:
        for name in LIBRARIES:
            path = Path(directory) / name
            if path.is_file():
                return str(path)
    return None


def preload_environment(environ, library: str | None) -> dict | None:
    """The environment to start the command again with, or None to go on as it is: the setting says system, the
    library is absent, or something (tcmalloc itself after the first start) is preloaded already."""
    if environ.get(SETTING, "").lower() == "system" or library is None or environ.get("LD_PRELOAD"):
        return None
    return {**environ, **QUIET, "LD_PRELOAD": library, SETTING: "tcmalloc"}


def run_under_preferred_allocator(start: tuple[str, ...] = ("-m", "tunesmith")) -> None:
    """Replace this process by `python START ARGS` (this process's arguments) under tcmalloc when
    preload_environment says so (Linux)."""
    if not sys.platform.startswith("linux"):
        return
    environment = preload_environment(os.environ, find_tcmalloc())
    if environment is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *start, *sys.argv[1:]], environment)


def allocator_in_use() -> str:
    """"tcmalloc" when this process has it mapped, else "system"."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    return "tcmalloc" if "libtcmalloc" in maps else "system"
