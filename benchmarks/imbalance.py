"""Imbalance counter-measures on the SMS Spam data made harder: does anything beat plain cross-entropy?

Data (seed-fixed, the same for every method and training seed): the shipped SMS Spam Collection,
exact duplicate texts dropped, split stratified into a test set (25%), a validation set (15%) and a
training pool; the pool's spam is then downsampled to 1:20 or 1:50 of its ham. Validation and test
keep the natural ~13% spam and are the same at both ratios: the question is how well a model learns
a class it saw rarely, judged on data where that class is common enough to measure.

Every run trains MiniLM for the same number of optimizer steps (undersampling included: it sees
more, shorter epochs), picks its best checkpoint by validation macro-F1, and reports on the test set:
minority (spam) F1, macro-F1, PR-AUC of spam, and the training time (evaluations excluded).

    python benchmarks/imbalance.py                     # 1:20 and 1:50, every method, seeds 0 1 2
    python benchmarks/imbalance.py --quick             # 1:50, ce + combo, seed 0, 40 steps: a smoke run
    python benchmarks/imbalance.py --ratios 50 --methods ce,weights,oversample --seeds 0,1,2
    python benchmarks/imbalance.py --table results.jsonl   # only rebuild the table from saved results

Runs go to --jobs worker processes (several small runs share one GPU well); each finished run is
appended to --results (JSONL) at once, so an interrupted benchmark keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMS = REPO / "data" / "sms_spam" / "SMSSpamCollection"
DATA_SEED = 0

# name -> the recipe's imbalance: section
METHODS = {
    "ce": {},
    "weights": {"class_weights": "inverse"},
    "sqrt_weights": {"class_weights": "sqrt_inverse"},
    "focal": {"loss": "focal", "gamma": 2.0},
    "smoothing": {"label_smoothing": 0.1},
    "oversample": {"resample": {"method": "oversample", "ratio": 0.5}},
    "undersample": {"resample": {"method": "undersample", "ratio": 0.5}},
    "augment": {"augment": {"probability": 0.5}},
    "threshold": {"threshold": {"tune": True, "metric": "positive_f1"}},
    "combo": {"resample": {"method": "oversample", "ratio": 0.5}, "augment": {"probability": 0.5},
              "threshold": {"tune": True, "metric": "positive_f1"}},
    "weights_threshold": {"class_weights": "sqrt_inverse", "threshold": {"tune": True, "metric": "positive_f1"}},
}
DEFAULT_METHODS = ["ce", "weights", "focal", "oversample", "undersample", "augment", "threshold", "combo"]
TRAIN = {"batch_size": 32, "lr": 5e-5, "max_length": 64, "warmup": 0.06, "weight_decay": 0.01}


# --- data ---------------------------------------------------------------------------------------

def make_data(workdir: Path, ratios: list[int]) -> dict:
    """Write validation.tsv, test.tsv and train_1to{r}.tsv under workdir; return their paths and sizes."""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    rows = [line.split("\t", 1) for line in SMS.read_text(encoding="utf-8").splitlines() if line.strip()]
    frame = pd.DataFrame(rows, columns=["label", "text"]).drop_duplicates("text").reset_index(drop=True)
    pool, test = train_test_split(frame, test_size=0.25, stratify=frame["label"], random_state=DATA_SEED)
    pool, validation = train_test_split(pool, test_size=0.2, stratify=pool["label"], random_state=DATA_SEED)
    workdir.mkdir(parents=True, exist_ok=True)
    out = {"validation": _write(validation, workdir / "validation.tsv"), "test": _write(test, workdir / "test.tsv")}
    sizes = {"validation": _counts(validation), "test": _counts(test)}
    ham = pool[pool["label"] == "ham"]
    spam = pool[pool["label"] == "spam"]
    for ratio in ratios:
        keep = spam.sample(n=max(1, len(ham) // ratio), random_state=DATA_SEED)
        train = pd.concat([ham, keep]).sample(frac=1.0, random_state=DATA_SEED)
        out[f"train_{ratio}"] = _write(train, workdir / f"train_1to{ratio}.tsv")
        sizes[f"train_1to{ratio}"] = _counts(train)
    out["sizes"] = sizes
    return out


def _write(frame, path: Path) -> str:
    text = "".join(f"{label}\t{body}\n" for label, body in zip(frame["label"], frame["text"]))
    path.write_text(text, encoding="utf-8")
    return str(path)


def _counts(frame) -> dict:
    return {k: int(v) for k, v in frame["label"].value_counts().sort_index().items()}


# --- one run ------------------------------------------------------------------------------------

def recipe_for(job: dict) -> dict:
    from tunesmith.config.recipe import Recipe

    raw = {
        "model": job["model"],
        "data": {"train": job["train"], "format": "tsv", "header": False, "columns": {"label": 0, "text": 1},
                 "validation": job["validation"], "test": job["test"]},
        "train": {**TRAIN, "epochs": 1000, "max_steps": job["steps"], "eval_every": job["eval_every"],
                  "log_every": 50, "seed": job["seed"], "precision": "fp32",
                  "early_stopping": {"metric": "macro_f1"}},
        "imbalance": METHODS[job["method"]],
        "inspect": {"enabled": False},
        "output": job["output"],
    }
    optional = {"report": {"html": False}, "baselines": {"tfidf": False}}  # sections other features add
    raw.update({k: v for k, v in optional.items() if k in Recipe.model_fields})
    return raw


def run_one(job: dict) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(job.get("threads", 1))
    import transformers

    transformers.logging.set_verbosity_error()
    from tunesmith.config.recipe import validate_recipe
    from tunesmith.recipes.finetune import finetune

    started = time.perf_counter()
    result = finetune(validate_recipe(recipe_for(job)), echo=lambda *a: None)
    test = result["test"]
    spam = test["per_class"]["spam"]
    return {
        "ratio": job["ratio"], "method": job["method"], "seed": job["seed"], "steps": result["steps"],
        "minority_f1": spam["f1"], "minority_recall": spam["recall"], "minority_precision": spam["precision"],
        "macro_f1": test["macro_f1"], "pr_auc": test.get("pr_auc"), "balanced_accuracy": test["balanced_accuracy"],
        "validation_macro_f1": result["validation"]["macro_f1"], "best_step": result["best"]["step"],
        "threshold": (result.get("imbalance", {}).get("threshold") or {}).get("value"),
        "train_s": result["timing"]["train_s"], "wall_s": round(time.perf_counter() - started, 1),
        "device": result["environment"]["device"],
    }


def _worker(job: dict) -> dict:
    try:
        return run_one(job)
    except Exception as exc:  # noqa: BLE001 - one failed run must not lose the others
        return {"ratio": job["ratio"], "method": job["method"], "seed": job["seed"],
                "error": f"{type(exc).__name__}: {exc}"}


# --- the table ----------------------------------------------------------------------------------

def summarize(rows: list[dict]) -> str:
    """Markdown: per ratio and method, mean ± sd over seeds, and the comparison with plain CE."""
    ok = [r for r in rows if "error" not in r]
    lines = []
    for ratio in sorted({r["ratio"] for r in ok}):
        here = [r for r in ok if r["ratio"] == ratio]
        methods = [m for m in METHODS if any(r["method"] == m for r in here)]
        ce = [r["minority_f1"] for r in here if r["method"] == "ce"]
        lines += [f"**1:{ratio}**", "",
                  "| method | seeds | minority F1 (test) | macro-F1 (test) | PR-AUC (test) | train s | vs CE: Δ minority F1 | seed ranges apart? |",
                  "|---|---|---|---|---|---|---|---|"]
        for method in methods:
            runs = [r for r in here if r["method"] == method]
            f1 = [r["minority_f1"] for r in runs]
            delta, apart = "", ""
            if ce and method != "ce":
                delta = f"{statistics.mean(f1) - statistics.mean(ce):+.3f}"
                apart = "yes" if min(f1) > max(ce) else ("below" if max(f1) < min(ce) else "no")
            pr = [r["pr_auc"] for r in runs if r.get("pr_auc") is not None]
            lines.append(f"| {method} | {len(runs)} | {_ms(f1)} | {_ms([r['macro_f1'] for r in runs])} | "
                         f"{_ms(pr)} | {statistics.mean(r['train_s'] for r in runs):.1f} | {delta} | {apart} |")
        lines.append("")
    failed = [r for r in rows if "error" in r]
    if failed:
        lines.append(f"{len(failed)} runs failed: " + "; ".join(f"1:{r['ratio']} {r['method']} seed {r['seed']}: "
                                                             f"{r['error'][:120]}" for r in failed))
    return "\n".join(lines)


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


# --- main ---------------------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1:50, ce + combo, seed 0, 40 steps")
    parser.add_argument("--ratios", default="20,50")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"any of {', '.join(METHODS)}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per run (batch 32)")
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--model", default="minilm", help="packaged name or model directory")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (worker processes)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch CPU threads per run")
    parser.add_argument("--workdir", default=None, help="where data and runs go (default: a temporary directory)")
    parser.add_argument("--results", default="imbalance_results.jsonl", help="JSONL file the runs are appended to")
    parser.add_argument("--table", metavar="RESULTS", help="only print the table of a saved results file")
    args = parser.parse_args(argv)
    if args.table:
        rows = [json.loads(line) for line in Path(args.table).read_text().splitlines() if line.strip()]
        print(summarize(rows))
        return 0
    if args.quick:
        args.ratios, args.methods, args.seeds, args.steps, args.eval_every = "50", "ce,combo", "0", 40, 20
    ratios = [int(r) for r in args.ratios.split(",")]
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method {unknown[0]}; methods: {', '.join(METHODS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tunesmith-imbalance-"))
    data = make_data(workdir / "data", ratios)
    print(json.dumps({"data": data["sizes"], "steps": args.steps, "model": args.model}), flush=True)
    threads = max(1, args.threads // args.jobs) if args.jobs > 1 else args.threads
    jobs = [{"ratio": r, "method": m, "seed": s, "model": args.model, "train": data[f"train_{r}"],
             "validation": data["validation"], "test": data["test"], "steps": args.steps,
             "eval_every": args.eval_every, "threads": threads,
             "output": str(workdir / "runs" / f"1to{r}_{m}_s{s}")}
            for r in ratios for s in seeds for m in methods]
    results = Path(args.results)
    rows = []
    started = time.perf_counter()
    if args.jobs > 1:
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            for row in pool.imap_unordered(_worker, jobs):
                rows.append(_record(results, row, started))
    else:
        for job in jobs:
            rows.append(_record(results, _worker(job), started))
    print(summarize(rows))
    return 0 if all("error" not in r for r in rows) else 1


def _record(results: Path, row: dict, started: float) -> dict:
    with results.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
    shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
    print(f"[{time.perf_counter() - started:7.1f}s] {json.dumps(shown)}", flush=True)
    return row


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    sys.exit(main())
