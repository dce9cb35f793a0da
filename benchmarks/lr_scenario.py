"""Issue 17's scenario, on a shared dataset of the same shape: a user's full fine-tuning recipe run with
`--set method.name=lora`. AG News titles (7,600 short texts, 4 topics; 20% stratified validation), MiniLM,
3 epochs, baselines majority + TF-IDF, each run a `tunesmith train` process:

    full          train.lr left out (the method's default, 5e-5)
    lora          train.lr left out (lora's default)
    lora-low      --set train.lr=1e-4 (the full-fine-tuning rate the user's recipe carried)

Prints each run's validation accuracy, the TF-IDF baseline's, and the lines of the run's output that speak of
the learning rate or the quality verdict.

    python benchmarks/lr_scenario.py --json benchmarks/results_cpu_lr_scenario.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, require_shared  # noqa: E402

RUNS = {"full": ["method.name=full"], "lora": ["method.name=lora"],
        "lora-low": ["method.name=lora", "train.lr=1e-4"]}


def recipe(workdir: Path) -> Path:
    raw = {"model": "minilm",
           "data": {"train": str(require_shared("ag_news") / "test.csv"), "format": "csv", "header": False,
                    "columns": {"label": 0, "text": 1}, "validation": {"split": 0.2, "stratify": True}},
           "train": {"epochs": 3, "batch_size": 32, "max_length": 64, "early_stopping": {"metric": "accuracy"},
                     "seed": 0},
           "report": {"html": False}}
    path = workdir / "ag_news_titles.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-scenario-"))
    path = recipe(workdir)
    tunesmith = Path(sys.executable).with_name("tunesmith")
    results = {}
    for name, sets in RUNS.items():
        out = workdir / name
        command = [str(tunesmith), "train", str(path), "--output", str(out)] + [a for s in sets for a in ("--set", s)]
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                              cwd=REPO, timeout=3600)
        evaluated = json.loads((out / "eval.json").read_text())
        said = [line.strip() for line in done.stdout.splitlines()
                if "train.lr" in line or "WARNING" in line or "likely cause" in line]
        results[name] = {"exit": done.returncode, "lr": evaluated["learning_rate"],
                         "accuracy": evaluated["validation"]["accuracy"],
                         "tfidf_accuracy": evaluated["baselines"]["validation"]["tfidf"]["accuracy"],
                         "verdict": evaluated["verdict"], "said": said}
        print(json.dumps({name: results[name]}), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
