"""Fine-tuning methods and exports: MiniLM on a fixed SST-2 subset (issue 5).

    python benchmarks/methods.py                 # 2,000 training rows, 1 epoch, dev = SST-2 dev (872)
    python benchmarks/methods.py --quick         # 200 rows: a smoke run
    python benchmarks/methods.py --markdown      # also print the tables for docs/benchmarks.md

What it runs, each step its own `tunesmith` process (a clean peak-memory figure per method):
  1. `tunesmith train` once per method: full, freeze (embeddings + layers 0-2 of 6), bitfit, lora, dora
     (r=8, alpha 16, query+value), each at a learning rate usual for it (see METHODS), batch 32, max_length 128,
     1 epoch, seed 0, SST-2 dev as the validation set;
  2. `tunesmith export` of the LoRA run as merged, onnx and int8 (re-evaluated on the dev set);
  3. `tunesmith plan` of the full recipe (5 measured steps per method), to set its projections beside the
     measured training times of step 1.
Writes WORKDIR/methods.json (every number) and prints one JSON summary; --markdown prints the tables.
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

# name -> (method section, learning rate). Full and freeze: the usual 5e-5. The others train few parameters
# from a small start in only 63 steps here: at 5e-4 (LoRA, DoRA) and 1e-3 (BitFit) they stayed at the
# majority class (dev accuracy 0.51-0.53); at 3e-3 and 5e-3 they learn. One setting each, not a sweep.
METHODS = {
    "full": ({"name": "full"}, 5e-5),
    "freeze": ({"name": "freeze", "freeze": "layers", "layers": 3}, 5e-5),
    "bitfit": ({"name": "bitfit"}, 5e-3),
    "lora": ({"name": "lora", "r": 8, "alpha": 16}, 3e-3),
    "dora": ({"name": "dora", "r": 8, "alpha": 16}, 3e-3),
}
EXPORTS = ("merged", "onnx", "int8")


def tunesmith(*args: str, timeout: int = 3600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1",
           "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run([sys.executable, "-m", "tunesmith.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=REPO)
    if done.returncode not in (0, 2):
        raise RuntimeError(f"tunesmith {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done


def write_recipe(workdir: Path, name: str, train: Path, dev: Path) -> Path:
    method, lr = METHODS[name]
    recipe = {
        "model": "minilm",
        "data": {"train": str(train), "validation": str(dev), "columns": {"text": "sentence", "label": "label"}},
        "train": {"epochs": 1, "batch_size": 32, "lr": lr, "warmup": 0.06, "max_length": 128, "seed": 0,
                  "log_every": 20, "early_stopping": {"metric": "accuracy"}},
        "method": method,
        "output": str(workdir / "runs" / name),
    }
    path = workdir / f"recipe_{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2000, help="training rows (a fixed, seed-0 subset)")
    parser.add_argument("--quick", action="store_true", help="200 rows")
    parser.add_argument("--workdir", help="keep runs and exports here (default: a temporary directory)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of methods")
    parser.add_argument("--no-plan", action="store_true", help="skip step 3")
    parser.add_argument("--markdown", action="store_true", help="print the tables for docs/benchmarks.md")
    args = parser.parse_args()
    rows = 200 if args.quick else args.rows
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tunesmith-methods-")).resolve()
    train, dev = sst2_subset(workdir, rows)
    results = {"rows": rows, "dev_rows": 872, "load_before": os.getloadavg(), "cpus": os.cpu_count(),
               "methods": {}, "exports": {}}

    for name in args.methods.split(","):
        recipe = write_recipe(workdir, name, train, dev)
        started = time.perf_counter()
        tunesmith("train", str(recipe))
        wall = time.perf_counter() - started
        ev = json.loads((workdir / "runs" / name / "eval.json").read_text())
        results["methods"][name] = {
            "method": ev["method"]["description"], "lr": METHODS[name][1],
            "trainable_params": ev["method"]["trainable_params"], "total_params": ev["method"]["total_params"],
            "peak_rss_mb": ev["memory"]["peak_rss_mb"], "train_s": ev["timing"]["train_s"],
            "eval_s": ev["timing"].get("eval_s"), "process_wall_s": round(wall, 1), "steps": ev["steps"],
            "dev_accuracy": ev["validation"]["accuracy"], "dev_macro_f1": ev["validation"]["macro_f1"],
            "threads": ev["environment"]["threads"],
        }
        print(json.dumps({name: results["methods"][name]}), flush=True)

    if "lora" in results["methods"]:
        for fmt in EXPORTS:
            out = workdir / "exports" / fmt
            tunesmith("export", str(workdir / "runs" / "lora"), "--format", fmt, "--output", str(out))
            report = json.loads((out / "report.json").read_text())
            results["exports"][fmt] = {k: report[k] for k in (
                "reference", "export", "delta", "drop", "prediction_agreement", "max_abs_logit_diff", "threads")}
            print(json.dumps({fmt: {"drop": report["drop"], "size_mb": report["export"]["size_mb"]}}), flush=True)

    if not args.no_plan and "full" in results["methods"]:
        plan_json = workdir / "plan.json"
        done = tunesmith("plan", str(workdir / "recipe_full.yaml"), "--steps", "5", "--time-budget", "5m",
                         "--memory-budget", "2GB", "--output", str(plan_json))
        results["plan"] = json.loads(plan_json.read_text())
        results["plan_console"] = done.stdout[-4000:]
    results["load_after"] = os.getloadavg()
    (workdir / "methods.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({"workdir": str(workdir), "load": [results["load_before"], results["load_after"]]}))
    if args.markdown:
        print(markdown(results))
    return 0


def markdown(results: dict) -> str:
    lines = ["| method | lr | trainable params | peak RSS | training time (1 epoch) | dev accuracy |",
             "|---|---|---|---|---|---|"]
    for name, r in results["methods"].items():
        share = r["trainable_params"] / r["total_params"]
        lines.append(f"| {r['method']} | {r['lr']:g} | {r['trainable_params']:,} ({share:.2%}) | "
                     f"{r['peak_rss_mb'] / 1024:.2f} GiB | {r['train_s']:.0f} s | {r['dev_accuracy']:.4f} |")
    if results["exports"]:
        lines += ["", "| model | size on disk | ms/example, batch 1 | examples/s, batch 32 | dev accuracy | "
                      "Δ accuracy | predictions agreeing |", "|---|---|---|---|---|---|---|"]
        first = next(iter(results["exports"].values()))
        ref = first["reference"]
        lines.append(f"| LoRA run, RUN/model (torch fp32) | {ref['size_mb']:.1f} MB | {ref['latency_ms_b1']:.2f} | "
                     f"{ref['throughput_b32']:.0f} | {ref['metrics']['accuracy']:.4f} | | |")
        for fmt, e in results["exports"].items():
            x = e["export"]
            lines.append(f"| {fmt} export | {x['size_mb']:.1f} MB | {x['latency_ms_b1']:.2f} | "
                         f"{x['throughput_b32']:.0f} | {x['metrics']['accuracy']:.4f} | "
                         f"{e['delta']['accuracy']:+.4f} | {e['prediction_agreement']:.2%} |")
    plan = results.get("plan")
    if plan:
        lines += ["", "| method | plan: measured step | plan: projected training | measured training (step 1) | "
                      "plan: projected peak | measured peak (step 1) |", "|---|---|---|---|---|---|"]
        measured = {r["method"]: r for r in results["methods"].values()}
        for row in plan["candidates"]:
            if "error" in row:
                continue
            actual = measured.get(row["method"])
            lines.append(f"| {row['method']} | {row['step_s']:.3f} s | {row['train_s']:.0f} s | "
                         + (f"{actual['train_s']:.0f} s" if actual else "-")
                         + f" | {row['peak_bytes'] / 2**30:.2f} GiB | "
                         + (f"{actual['peak_rss_mb'] / 1024:.2f} GiB |" if actual else "- |"))
        lines.append(f"\nplan's recommendation (time budget 5m, memory 2GB): {plan['reason']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
