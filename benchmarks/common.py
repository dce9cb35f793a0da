"""Shared pieces of the benchmarks: data subsets, peak-memory and GEMM-peak measurements, JSON output."""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def require_shared(name: str) -> Path:
    path = SHARED / name
    if not path.exists():
        sys.exit(f"benchmark needs ../shared/data/{name} (not shipped: its licence forbids redistribution)")
    return path


def sst2_subset(workdir: Path, n_train: int, seed: int = 0) -> tuple[Path, Path]:
    """A fixed, seed-chosen SST-2 training subset and the full dev set, as TSV files."""
    root = require_shared("sst2")
    lines = (root / "train.tsv").read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:]
    random.Random(seed).shuffle(rows)
    workdir.mkdir(parents=True, exist_ok=True)
    train = workdir / f"sst2_train_{n_train}.tsv"
    train.write_text("\n".join([header, *rows[:n_train]]) + "\n", encoding="utf-8")
    dev = workdir / "sst2_dev.tsv"
    dev.write_text((root / "dev.tsv").read_text(encoding="utf-8"), encoding="utf-8")
    return train, dev


def peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM: ru_maxrss can carry the parent's peak across exec)."""
    from tunesmith.methods.measure import peak_rss_bytes

    return peak_rss_bytes() / 2**20


def gemm_peak_flops(size: int = 2048, repeats: int = 5) -> float:
    """Achievable matmul FLOP/s on this machine, measured now (the ceiling for 'achieved FLOP/s'), in the
    precision `precision: auto` trains in: bf16 where the GPU or CPU has it natively, else fp32."""
    import torch

    from tunesmith.train.precision import auto_uses_bf16

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if auto_uses_bf16() else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def training_flops(model, tokens: int) -> float:
    """6 x (non-embedding parameters) x tokens: forward + backward matmul work, padding included."""
    params = sum(p.numel() for name, p in model.named_parameters() if "embed" not in name)
    return 6.0 * params * tokens


def run_contender(script: Path, args: list[str], timeout: int = 3600) -> dict:
    """Run one contender in its own process (clean peak-memory figure); it prints one JSON line last."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def mean_sd(values: list[float]) -> dict:
    """Mean and sample standard deviation over seeds (sd None from a single value), rounded for JSON."""
    return {"mean": round(statistics.mean(values), 4),
            "sd": round(statistics.stdev(values), 4) if len(values) > 1 else None}


def emit(result: dict) -> None:
    print(json.dumps(result), flush=True)
