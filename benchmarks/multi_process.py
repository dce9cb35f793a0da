"""One process vs two on this machine's CPU cores: MiniLM on a fixed SST-2 subset, `tunesmith train` vs
`tunesmith train --processes 2` (Accelerate DDP over gloo, train/distributed.py).

The two runs see the same global batch (1 x 32 vs 2 x 16), in fp32 with shuffled batches (group_by_length off:
length grouping windows follow the per-process batch), so they must end with the same weights; each run gets
every core (1 process with OMP_NUM_THREADS = cores, 2 with cores / 2 each). Expect no speed-up on 2 cores: the
two processes split the same cores and add a gradient all-reduce per step. The point is correctness.

    python benchmarks/multi_process.py                      # 2,000 examples, full dev set, 1 epoch; timed
    python benchmarks/multi_process.py --quick              # 256 examples, 128 dev rows: a correctness check
                                                            # (timings meaningless while other jobs run)

Writes benchmarks/results_cpu_multi_process.json (--quick: results_cpu_multi_process_quick.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, sst2_subset  # noqa: E402

HYPER = {"batch_size": 32, "lr": 5e-5, "epochs": 1, "max_length": 128, "weight_decay": 0.01, "seed": 0}


def recipe(train: Path, dev: Path, out: Path, batch_size: int) -> dict:
    return {
        "model": "minilm",
        "data": {"train": str(train), "validation": str(dev), "columns": {"text": "sentence", "label": "label"}},
        "train": {**HYPER, "batch_size": batch_size, "warmup": 0.0, "precision": "fp32", "group_by_length": False,
                  "log_every": 10, "early_stopping": {"metric": "accuracy"}},
        "checkpoint": {"keep_on_finish": True},
        "baselines": False,
        "output": str(out),
    }


def train(workdir: Path, train_file: Path, dev: Path, processes: int) -> dict:
    """One `tunesmith train` in its own process; its wall time, eval.json numbers and output directory."""
    out = workdir / f"run_{processes}"
    path = workdir / f"recipe_{processes}.yaml"
    path.write_text(yaml.safe_dump(recipe(train_file, dev, out, HYPER["batch_size"] // processes)))
    cores = len(os.sched_getaffinity(0))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(cores // processes),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "tunesmith", "train", str(path)]
    command += ["--processes", str(processes)] if processes > 1 else []
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO, timeout=7200)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    result = json.loads((out / "eval.json").read_text())
    timing = result["timing"]
    return {"processes": processes, "batch_per_process": HYPER["batch_size"] // processes,
            "threads_per_process": cores // processes, "wall_s": round(wall, 1), "train_s": timing["train_s"],
            "train_samples_per_s": timing["train_samples_per_s"], "steps": result["steps"],
            "accuracy": result["validation"]["accuracy"], "loss": result["validation"]["loss"],
            "n": result["validation"]["n"], "dir": str(out)}


def differences(one: Path, two: Path, steps: int) -> dict:
    """The largest weight difference of the last checkpoints, and of the logged training losses."""
    from safetensors.torch import load_file

    name = f"checkpoints/step-{steps:08d}/model.safetensors"
    a, b = load_file(one / name), load_file(two / name)
    weights = max((a[k].double() - b[k].double()).abs().max().item() for k in a)

    def losses(run: Path) -> list[float]:
        records = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
        return [r["loss"] for r in records if r["type"] == "train"]

    loss = max(abs(x - y) for x, y in zip(losses(one), losses(two)))
    return {"max_weight_difference": weights, "max_logged_loss_difference": loss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256 examples, 128 dev rows: correctness only")
    parser.add_argument("--train-size", type=int, default=2000)
    args = parser.parse_args()
    size = 256 if args.quick else args.train_size
    with tempfile.TemporaryDirectory(prefix="tunesmith-multi-") as tmp:
        workdir = Path(tmp)
        train_file, dev = sst2_subset(workdir, size)
        if args.quick:  # the first 128 dev rows
            dev.write_text("\n".join(dev.read_text(encoding="utf-8").splitlines()[:129]) + "\n", encoding="utf-8")
        runs = [train(workdir, train_file, dev, processes) for processes in (1, 2)]
        same = differences(Path(runs[0]["dir"]), Path(runs[1]["dir"]), runs[0]["steps"])
    for run in runs:
        run.pop("dir")
    result = {"benchmark": "sst2 minilm, 1 vs 2 processes (CPU, gloo)", "train_examples": size, "hyper": HYPER,
              "precision": "fp32", "cores": len(os.sched_getaffinity(0)), "quick": args.quick,
              "timings_valid": not args.quick, "runs": runs, **same,
              "speedup_2_vs_1": round(runs[0]["train_s"] / max(runs[1]["train_s"], 1e-9), 3),
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    name = "results_cpu_multi_process_quick.json" if args.quick else "results_cpu_multi_process.json"
    (Path(__file__).resolve().parent / name).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
