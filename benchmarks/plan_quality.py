"""Does `tunesmith plan --quality`'s short probe rank the methods as full runs do? (issue 17, part 4)

MiniLM (`minilm`); the candidates plan makes: full, lora r=8, freeze (embeddings + layers 0-2 of 6), bitfit,
each at its default learning rate (train.lr left out):

    sst2   2,000 seeded rows of SST-2's train file (common.sst2_subset, seed 0), SST-2 dev (872) as validation,
           1 epoch = 63 steps of batch 32, metric accuracy (benchmarks/methods.py's setting)
    sms    2,000 seeded rows of the SMS Spam Collection (seed 0) in examples/sms_spam.yaml's recipe
           (drop_duplicates, 20% stratified validation), train.lr removed, 1 epoch, metric macro_f1 (its own)

The probe: `plan_with_quality` (what `tunesmith plan RECIPE --quality` runs) with its defaults: 0.25 epoch, 3 seeds,
512 validation rows; no budgets, so every candidate is probed. The reference: each candidate's full run (1 epoch,
`finetune`, seeds 0 and 1, the whole validation set, baselines and report off). Rank agreement (Spearman, Kendall)
between the probe's mean scores and the full runs' means, and between the two full-run seeds (how stable the
reference ranking is itself).

    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 PYTHONPATH=src python benchmarks/plan_quality.py \\
        --json benchmarks/results_cpu_plan_quality.json
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

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, require_shared, sst2_subset  # noqa: E402


def sst2_recipe(workdir: Path) -> dict:
    train, dev = sst2_subset(workdir, 2000)
    return {"model": "minilm", "output": str(workdir / "sst2-run"),
            "data": {"train": str(train), "validation": str(dev), "columns": {"text": "sentence", "label": "label"}},
            "train": {"epochs": 1, "batch_size": 32, "warmup": 0.06, "max_length": 128, "seed": 0,
                      "early_stopping": {"metric": "accuracy"}}}


def sms_recipe(workdir: Path) -> dict:
    lines = (require_shared("sms_spam") / "SMSSpamCollection").read_text(encoding="utf-8").splitlines()
    random.Random(0).shuffle(lines)
    train = workdir / "sms_2000.tsv"
    train.write_text("\n".join(lines[:2000]) + "\n", encoding="utf-8")
    raw = yaml.safe_load((REPO / "examples" / "sms_spam.yaml").read_text())
    raw["data"]["train"] = str(train)
    del raw["train"]["lr"]
    raw["train"]["epochs"] = 1
    raw["output"] = str(workdir / "sms-run")
    return raw


def probe(raw: dict, budget: str, seeds: int, steps: int = 5) -> dict:
    from tunesmith.config.recipe import validate_recipe
    from tunesmith.recipes.plan_quality import plan_with_quality, quality_probe

    started = time.perf_counter()
    result = plan_with_quality(validate_recipe(raw), quality_probe(budget, seeds), steps=steps, echo=print)
    rows = {row["method"]: {"spec": row["spec"], "total_s": row["total_s"], **row["quality"]}
            for row in result["candidates"]}
    return {"seconds": round(time.perf_counter() - started, 1), "steps": result["quality"]["steps"],
            "recommended": (result["recommended"] or {}).get("method"), "reason": result["reason"],
            "confidence": result["quality"]["confidence"], "methods": rows}


def full_run(raw: dict, spec: dict, seed: int, out: Path, max_steps: int | None = None) -> dict:
    from tunesmith.config.recipe import validate_recipe
    from tunesmith.recipes.finetune import finetune

    train = {**raw["train"], "seed": seed, **({"max_steps": max_steps} if max_steps else {})}
    recipe = validate_recipe({**raw, "method": spec, "train": train, "baselines": False,
                              "report": {"html": False}, "quality_gate": None, "output": str(out)})
    result = finetune(recipe, echo=lambda *a, **k: None)
    metric = recipe.train.early_stopping.metric
    return {"seed": seed, "lr": recipe.train.lr, "score": result["validation"][metric],
            "accuracy": result["validation"]["accuracy"], "steps": result["steps"],
            "seconds": result["timing"]["total_s"]}


def agreement(a: dict, b: dict) -> dict:
    from scipy.stats import kendalltau, spearmanr

    names = sorted(a)
    x, y = [a[n] for n in names], [b[n] for n in names]
    return {"spearman": round(float(spearmanr(x, y).statistic), 3), "kendall": round(float(kendalltau(x, y).statistic), 3)}


def ranking(scores: dict) -> list[str]:
    return sorted(scores, key=lambda name: -scores[name])


def run_task(name: str, raw: dict, workdir: Path, args) -> dict:
    found = {"probe": probe(raw, args.budget, args.probe_seeds, steps=1 if args.smoke else 5)}
    print(json.dumps({name: {"probe": found["probe"]["recommended"], "s": found["probe"]["seconds"]}}), flush=True)
    full: dict = {}
    for method, row in found["probe"]["methods"].items():
        runs = []
        for seed in args.full_seeds:
            out = workdir / f"{name}-{method.replace(' ', '_')}-{seed}"
            runs.append(full_run(raw, row["spec"], seed, out, max_steps=2 if args.smoke else None))
            print(json.dumps({name: {method: runs[-1]}}), flush=True)
        scores = [r["score"] for r in runs]
        full[method] = {"runs": runs, "mean": statistics.fmean(scores),
                        "sd": statistics.stdev(scores) if len(scores) > 1 else None}
    found["full"] = full
    probe_means = {m: r["mean"] for m, r in found["probe"]["methods"].items()}
    full_means = {m: r["mean"] for m, r in full.items()}
    found["ranking"] = {"probe": ranking(probe_means), "full": ranking(full_means)}
    found["agreement"] = {"probe_vs_full": agreement(probe_means, full_means)}
    if len(args.full_seeds) >= 2:
        first, second = ({m: r["runs"][k]["score"] for m, r in full.items()} for k in (0, 1))
        found["agreement"]["full_seed_vs_seed"] = agreement(first, second)
    best_full = found["ranking"]["full"][0]
    chosen = found["probe"]["recommended"]
    found["recommended_vs_best_full"] = {"recommended": chosen, "best_full": best_full,
                                         "full_gap": full_means[best_full] - full_means[chosen] if chosen else None}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["sst2", "sms"], choices=["sst2", "sms"])
    parser.add_argument("--budget", default="0.25", help="--quality-budget of the probe")
    parser.add_argument("--probe-seeds", type=int, default=3)
    parser.add_argument("--full-seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--smoke", action="store_true", help="a check of the harness: 2-step full runs, 1 plan step")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-plan-quality-"))
    results = {"settings": {"budget": args.budget, "probe_seeds": args.probe_seeds, "full_seeds": args.full_seeds,
                            "validation_rows": 512}}
    for name in args.tasks:
        raw = {"sst2": sst2_recipe, "sms": sms_recipe}[name](workdir)
        started = time.perf_counter()
        results[name] = run_task(name, raw, workdir, args)
        results[name]["wall_s"] = round(time.perf_counter() - started, 1)
        print(json.dumps({name: {k: results[name][k] for k in ("ranking", "agreement", "recommended_vs_best_full")}}),
              flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
