"""Several processes, one run: what tunesmith adds to Accelerate's data parallelism (DDP).

Every process (rank) runs the same recipe on its own share of each step's batches; Accelerate shards the
training loader (rank r takes batches r, r + N, ...: one optimizer step of N processes with batch B covers the
examples of one step with batch N x B) and averages the gradients; evaluations gather every example once
(`gather_for_metrics`). Launched by `tunesmith train --processes N` (cli/launch.py), `accelerate launch -m
tunesmith train ...` or `torchrun --nproc_per_node N -m tunesmith train ...`. What this module adds:

- `accelerator_options`: without CUDA GPUs, Accelerate's CPU data parallelism over gloo (Accelerate itself
  would run N independent single-process trainings there);
- sharded engines (FSDP, DeepSpeed) asked for through an Accelerate config: train/sharding.py;
- `main_process`: rank 0, the one process that writes the run directory (train/run_claim.py);
- `agreed_signal`: a SIGINT/SIGTERM seen by any rank stops every rank after the same step;
- `gather_from_ranks` / `share_from_main`: per-rank states for checkpoints, the main process's choices for all;
- `die_with_parent`: a rank (and the launcher under `--processes`) dies when its parent dies, even by SIGKILL,
  so no orphan keeps training and writing checkpoints while a resumed run starts.
"""

from __future__ import annotations

import ctypes
import math
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def world_size() -> int:
    """How many processes the launcher started (WORLD_SIZE; 1 without a launcher)."""
    try:
        return max(int(os.environ.get("WORLD_SIZE") or 1), 1)
    except ValueError:
        return 1


def launched() -> bool:
    """Whether this process is one rank of a multi-process run."""
    return world_size() > 1


def rank() -> int:
    try:
        return int(os.environ.get("RANK") or 0)
    except ValueError:
        return 0


def main_process() -> bool:
    """The process that writes the run directory, the report and the best model: global rank 0 (as Accelerate's
    is_main_process). Read from the launcher's environment, so it is known before any Accelerator exists."""
    return rank() == 0


def accelerator_options() -> dict:
    """Extra Accelerator arguments for this process: a rank on a machine without CUDA GPUs trains on the CPU
    over gloo (Accelerate's MULTI_CPU); anything else is left to Accelerate."""
    import torch

    if not launched() or torch.cuda.is_available():
        return {}
    from accelerate.utils import InitProcessGroupKwargs

    return {"cpu": True, "kwargs_handlers": [InitProcessGroupKwargs(backend="gloo")]}


def batches_per_process(batches: int, processes: int) -> int:
    """Training batches each rank draws per epoch: Accelerate's sharded loader (even_batches) gives every rank
    ceil(batches / N), completing the last round with examples from the start of the epoch."""
    return max(1, math.ceil(batches / max(processes, 1)))


def agreed_signal(accelerator, signum: int | None) -> int | None:
    """The signal any rank has received (the highest number), the same on every rank: all stop after the same
    step. One tiny all-reduce per optimizer step; nothing with one process."""
    if accelerator.num_processes <= 1:
        return signum
    import torch
    import torch.distributed as dist

    flag = torch.tensor([signum or 0], dtype=torch.int64, device=accelerator.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item()) or None


def gather_from_ranks(accelerator, value) -> list:
    """`value` of every rank, in rank order, on every rank (pickled between our own processes only)."""
    if accelerator.num_processes <= 1:
        return [value]
    from accelerate.utils import gather_object

    return list(gather_object([value]))


def share_from_main(accelerator, value):
    """The main process's `value`, on every rank."""
    if accelerator.num_processes <= 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value if accelerator.is_main_process else None], from_process=0)[0]


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux prctl PR_SET_PDEATHSIG; elsewhere a
    no-op). Called by each rank under a launcher and, through Popen's preexec_fn, by the launcher that
    `--processes` starts: killing `tunesmith train --processes N` by any signal ends every process of the run."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(128 + int(signal.SIGKILL))
