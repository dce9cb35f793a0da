"""Does `tunesmith plan --quality`'s short probe rank the methods as full runs do? (issue 17, part 4)

MiniLM (`minilm`); the candidates plan makes: full, lora r=8, freeze (embeddings + layers 0-2 of 6), bitfit,
each at its default learning rate (train.lr left out), on the two recipes of benchmarks/method_defaults.py:

    sst2   8,000 seeded rows of SST-2's train file, 1 epoch = 250 steps of batch 32, SST-2 dev (872) as
           validation, metric accuracy
    sms    examples/sms_spam.yaml as shipped (3 epochs = 390 steps, early stopping patience 2, 20% stratified
           validation) with train.lr removed, metric macro_f1 (its early-stopping metric)

The probe: `plan_with_quality` (what `tunesmith plan RECIPE --quality` runs) with the default budget (0.25 epoch,
at least 100 steps: 100 steps on both), 512 validation rows, `--probe-seeds` seeds (2 here; the command's default
is 3); no budgets, so every candidate is probed. The reference: the full runs of results_cpu_method_defaults.json where it has them at today's defaults
(full and lora at 1e-3: seeds 0-2; bitfit: seed 0), and runs of the freeze candidate made here (`--freeze-seeds`),
with method_defaults.run_one, the same code. Rank agreement (Spearman, Kendall) between the probe's mean scores
and the full runs' means over the 4 methods, and whether the recommendation is the full runs' best.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 PYTHONPATH=src python benchmarks/plan_quality.py --tasks sst2 \\
        --freeze-seeds 0 1 --json benchmarks/results_cpu_plan_quality.json
    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 PYTHONPATH=src python benchmarks/plan_quality.py --tasks sms \\
        --freeze-seeds 0 --json benchmarks/results_cpu_plan_quality.json
    python benchmarks/plan_quality.py --rescore --tasks sst2 --json ...   # the recommendation by the current rule
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from method_defaults import run_one, sms_recipe, sst2_recipe  # noqa: E402

DEFAULTS = Path(__file__).resolve().parent / "results_cpu_method_defaults.json"
METRIC = {"sst2": "accuracy", "sms": "macro_f1"}


def reference_scores(task: str) -> dict[str, list[float]]:
    """The full runs already measured at today's defaults (results_cpu_method_defaults.json), by plan's names."""
    saved = json.loads(DEFAULTS.read_text())
    metric = METRIC[task]
    runs = saved[task]["runs"]
    lora = saved["lora_at_1e-3"][task]
    return {"full": [r[metric] for r in runs if r["method"] == "full"],
            "lora r=8": lora[f"{metric}_by_seed"] if f"{metric}_by_seed" in lora else lora["accuracy_by_seed"],
            "bitfit": [r[metric] for r in runs if r["method"] == "bitfit"]}


def probe(raw: dict, budget: str, seeds: int) -> dict:
    from tunesmith.config.recipe import validate_recipe
    from tunesmith.recipes.plan_quality import plan_with_quality, quality_probe

    started = time.perf_counter()
    result = plan_with_quality(validate_recipe(raw), quality_probe(budget, seeds), steps=5, echo=print)
    rows = {row["method"]: {"spec": row["spec"], "total_s": row["total_s"], **row["quality"]}
            for row in result["candidates"]}
    return {"wall_s": round(time.perf_counter() - started, 1), "steps": result["quality"]["steps"],
            "run_steps": result["total_steps"], "recommended": (result["recommended"] or {}).get("method"),
            "reason": result["reason"], "confidence": result["quality"]["confidence"],
            "metric": result["quality"]["metric"], "methods": rows}


def agreement(a: dict, b: dict) -> dict:
    from scipy.stats import kendalltau, spearmanr

    names = sorted(a)
    x, y = [a[n] for n in names], [b[n] for n in names]
    return {"spearman": round(float(spearmanr(x, y).statistic), 3),
            "kendall": round(float(kendalltau(x, y).statistic), 3)}


def ranking(scores: dict) -> list[str]:
    return sorted(scores, key=lambda name: -scores[name])


def run_task(task: str, raw: dict, workdir: Path, args) -> dict:
    found = {"probe": probe(raw, args.budget, args.probe_seeds)}
    print(json.dumps({task: {"probe": found["probe"]["recommended"], "wall_s": found["probe"]["wall_s"]}}), flush=True)
    reference = {name: {"scores": scores, "source": DEFAULTS.name} for name, scores in reference_scores(task).items()}
    freeze = next(name for name in found["probe"]["methods"] if name.startswith("freeze"))
    runs = []
    for seed in args.freeze_seeds:
        spec = found["probe"]["methods"][freeze]["spec"]
        runs.append(run_one(raw, spec, seed, workdir / f"{task}-freeze-{seed}"))
        print(json.dumps({task: {freeze: runs[-1]}}), flush=True)
    reference[freeze] = {"scores": [run[METRIC[task]] for run in runs], "source": "this run", "runs": runs}
    for entry in reference.values():
        entry["mean"] = statistics.fmean(entry["scores"])
        entry["sd"] = statistics.stdev(entry["scores"]) if len(entry["scores"]) > 1 else None
    found["reference"] = reference
    probe_means = {name: row["mean"] for name, row in found["probe"]["methods"].items()}
    full_means = {name: entry["mean"] for name, entry in reference.items()}
    found["ranking"] = {"probe": ranking(probe_means), "full_runs": ranking(full_means)}
    found["agreement"] = agreement(probe_means, full_means)
    best = found["ranking"]["full_runs"][0]
    chosen = found["probe"]["recommended"]
    found["recommended_vs_best_full_run"] = {"recommended": chosen, "best_full_run": best,
                                             "full_run_gap": round(full_means[best] - full_means[chosen], 4)}
    return found


def rescore(found: dict) -> None:
    """The recommendation again, from the saved probe scores, with the current rule (recommend_by_quality); the
    one made when the probe ran is kept as recommended_when_run."""
    from tunesmith.recipes.plan_quality import confidence, recommend_by_quality

    metric = found["probe"]["metric"]
    rows = [{"method": name, "fits": True, "total_s": row["total_s"], "peak_bytes": 0, "quality": row}
            for name, row in found["probe"]["methods"].items()]
    choice, reason = recommend_by_quality(rows, "max", metric)
    probed = found["probe"]
    probed.setdefault("recommended_when_run", {"method": probed["recommended"], "reason": probed["reason"]})
    probed["recommended"], probed["reason"] = choice["method"], reason
    probed["confidence"] = confidence({"recommended": choice, "candidates": rows, "quality": {"mode": "max"}})
    full_means = {name: entry["mean"] for name, entry in found["reference"].items()}
    best = found["ranking"]["full_runs"][0]
    found["recommended_vs_best_full_run"] = {"recommended": choice["method"], "best_full_run": best,
                                             "full_run_gap": round(full_means[best] - full_means[choice["method"]], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["sst2", "sms"], choices=["sst2", "sms"])
    parser.add_argument("--budget", default="0.25", help="--quality-budget of the probe")
    parser.add_argument("--probe-seeds", type=int, default=2)
    parser.add_argument("--freeze-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--rescore", action="store_true", help="recompute the recommendations saved in --json")
    args = parser.parse_args()
    if args.rescore:
        results = json.loads(args.json.read_text())
        for task in args.tasks:
            results[task]["probe"]["metric"] = METRIC[task]
            rescore(results[task])
            print(json.dumps({task: results[task]["recommended_vs_best_full_run"]}))
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        return
    workdir = Path(tempfile.mkdtemp(prefix="bench-plan-quality-"))
    results = json.loads(args.json.read_text()) if args.json and args.json.is_file() else {}
    for task in args.tasks:
        raw = {"sst2": lambda: sst2_recipe(workdir), "sms": sms_recipe}[task]()
        started = time.perf_counter()
        results[task] = run_task(task, raw, workdir, args)
        results[task]["settings"] = {"budget": args.budget, "probe_seeds": args.probe_seeds, "validation_rows": 512,
                                     "freeze_seeds": args.freeze_seeds}
        results[task]["wall_s"] = round(time.perf_counter() - started, 1)
        results[task]["cpu_s_cumulative"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_utime
                                       + resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime, 1)
        print(json.dumps({task: {k: results[task][k] for k in ("ranking", "agreement", "recommended_vs_best_full_run")}}),
              flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
