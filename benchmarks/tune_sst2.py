"""Does `tunesmith tune` beat the default recipe? MiniLM on a fixed SST-2 subset, a fixed budget per trial.

Data (seeded, fixed): 8,000 training rows and a separate 1,000-row validation slice of SST-2's train file (the
objective the study sees), and SST-2's dev set (872 rows) as the test set no trial is chosen on.

    default   the recipe as a new user writes it: method full, train.lr left at its default (5e-5), 1 epoch
    tune      `tune` over train.lr (log-uniform 1e-5 .. 1e-3) and method.name (full | lora), --trials N,
              median pruning; every trial the same budget (1 epoch, evaluated 4 times)
    best      best.yaml trained again

Both the default and the best recipe are trained with 3 seeds; the verdict compares their mean test accuracy.

    python benchmarks/tune_sst2.py --trials 10 --json benchmarks/results_cpu_tune_sst2.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import require_shared  # noqa: E402

SEEDS = (0, 1, 2)


def write_splits(workdir: Path, n_train: int, n_validation: int) -> dict:
    lines = (require_shared("sst2") / "train.tsv").read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:]
    random.Random(0).shuffle(rows)
    workdir.mkdir(parents=True, exist_ok=True)
    files = {"train": rows[:n_train], "validation": rows[n_train:n_train + n_validation]}
    paths = {}
    for name, chosen in files.items():
        paths[name] = workdir / f"sst2_{name}.tsv"
        paths[name].write_text("\n".join([header, *chosen]) + "\n", encoding="utf-8")
    paths["test"] = require_shared("sst2") / "dev.tsv"
    return paths


def base_recipe(paths: dict, out: Path, n_train: int, trials: int) -> dict:
    steps = n_train // 32
    return {
        "model": "minilm",
        "data": {"train": str(paths["train"]), "validation": str(paths["validation"]), "test": str(paths["test"]),
                 "columns": {"text": "sentence", "label": "label"}},
        "train": {"epochs": 1, "batch_size": 32, "eval_every": max(steps // 4, 1), "log_every": 50,
                  "early_stopping": {"metric": "accuracy"}, "seed": 0},
        "baselines": False,
        "report": {"html": False},
        "output": str(out / "default"),
        "tune": {"space": {"train.lr": {"log_uniform": [1e-5, 1e-3]}, "method.name": ["full", "lora"]},
                 "trials": trials, "pruner": "median", "startup_trials": 3},
    }


def train_seeds(raw: dict, out: Path, name: str) -> list[dict]:
    from tunesmith.config.recipe import validate_recipe
    from tunesmith.recipes.finetune import finetune

    runs = []
    for seed in SEEDS:
        recipe = validate_recipe({**raw, "train": {**raw["train"], "seed": seed}, "output": str(out / f"{name}-{seed}"),
                                  "tune": None})
        started = time.perf_counter()
        result = finetune(recipe, echo=lambda *a, **k: None)
        runs.append({"seed": seed, "validation_accuracy": result["validation"]["accuracy"],
                     "test_accuracy": result["test"]["accuracy"], "seconds": round(time.perf_counter() - started, 1)})
        print(json.dumps({name: runs[-1]}), flush=True)
    return runs


def spread(runs: list[dict], key: str) -> dict:
    values = [run[key] for run in runs]
    return {"mean": round(statistics.mean(values), 4), "sd": round(statistics.stdev(values), 4),
            "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--n-train", type=int, default=8000)
    parser.add_argument("--n-validation", type=int, default=1000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from tunesmith.config.recipe import load_recipe, validate_recipe
    from tunesmith.recipes.tune import tune

    out = Path(tempfile.mkdtemp(prefix="bench-tune-"))
    paths = write_splits(out / "data", args.n_train, args.n_validation)
    raw = base_recipe(paths, out, args.n_train, args.trials)
    default = train_seeds(raw, out, "default")
    started = time.perf_counter()
    summary = tune(validate_recipe(raw), "tune_sst2", output=str(out / "tune"), echo=lambda *a, **k: None)
    tune_s = round(time.perf_counter() - started, 1)
    best = load_recipe(summary["files"]["best_recipe"]).model_dump(mode="json")
    tuned = train_seeds({**best, "baselines": False}, out, "best")
    result = {
        "n_train": args.n_train, "n_validation": args.n_validation, "test": "SST-2 dev (872)",
        "trials": [{k: row[k] for k in ("number", "state", "value", "values", "steps", "seconds")}
                   for row in summary["trials"]],
        "tune_seconds": tune_s, "best": summary["best"], "importances": summary["importances"],
        "default": {"runs": default, "test": spread(default, "test_accuracy"),
                    "validation": spread(default, "validation_accuracy")},
        "tuned": {"runs": tuned, "test": spread(tuned, "test_accuracy"),
                  "validation": spread(tuned, "validation_accuracy")},
    }
    result["test_gain_points"] = round(100 * (result["tuned"]["test"]["mean"] - result["default"]["test"]["mean"]), 2)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
