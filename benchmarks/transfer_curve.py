"""Transfer between tasks (issue 15): a learning curve on a low-resource target, from the packaged model vs from
a run fine-tuned on a shared source task.

    source   AG News titles (4 topics; 2,500 rows drawn with seed 0 from ../shared/data/ag_news/test.csv, 10%
             stratified validation), MiniLM, full fine-tuning, 1 epoch, batch 32: one run, RUN_SOURCE
    target   SST-2 sentiment: N = 32 / 128 / 512 rows drawn from train.tsv with seed s (s = 0, 1, 2; the seed
             also seeds training), 300 rows of SST-2 dev (drawn once, seed 0) as the validation set, full
             fine-tuning at lr 2e-4 (full fine-tuning's default 5e-5 left both starts at chance for N <= 128 in
             these budgets), batch 16, a fixed budget of steps per N (24 / 48 / 64, i.e. 12 / 6 / 2 epochs),
             4 evaluations, best by accuracy
    starts   (a) model: minilm                  the packaged MiniLM, a new head
             (b) model: RUN_SOURCE              the AG News run: its body, a new head (init.head auto: the
                                                labels differ), transfer.watch: RUN_SOURCE (AG News accuracy of
                                                its head on the SST-2-trained body, before and after)

Reported per N and start: the best validation accuracy (mean and sample sd over the seeds), and the training
seconds (evaluations excluded) until the first evaluation at or above (a)'s mean best accuracy at that N.
Seconds are indicative only when other jobs share the machine.

    python benchmarks/transfer_curve.py --json benchmarks/results_cpu_transfer_curve.json
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

SIZES = {32: 24, 128: 48, 512: 64}  # training rows -> optimizer steps (batch 16)
SEEDS = (0, 1, 2)
EVALUATIONS = 4
TARGET_LR = 2e-4
SOURCE_ROWS = 2500
DEV_ROWS = 300


def quiet(*_args, **_kwargs):
    pass


def sample(path: Path, out: Path, n: int, seed: int, header: bool = True) -> Path:
    """`n` rows of `path` drawn with `seed` (after the header line, when it has one)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    head, rows = (lines[:1], lines[1:]) if header else ([], lines)
    random.Random(seed).shuffle(rows)
    out.write_text("\n".join([*head, *rows[:n]]) + "\n", encoding="utf-8")
    return out


def source_recipe(workdir: Path, out: Path) -> dict:
    train = sample(require_shared("ag_news") / "test.csv", workdir / "ag_news_2500.csv", SOURCE_ROWS, 0, header=False)
    return {"model": "minilm",
            "data": {"train": str(train), "format": "csv", "header": False,
                     "columns": {"label": 0, "text": 1}, "validation": {"split": 0.1, "stratify": True}},
            "train": {"epochs": 1, "batch_size": 32, "max_length": 64, "early_stopping": {"metric": "accuracy"},
                      "seed": 0},
            "baselines": False, "report": {"html": False}, "output": str(out)}


def target_recipe(model: str, train: Path, dev: Path, n: int, seed: int, out: Path, watch: str | None) -> dict:
    steps = SIZES[n]
    raw = {"model": model,
           "data": {"train": str(train), "validation": str(dev), "columns": {"text": "sentence", "label": "label"}},
           "train": {"epochs": 1000, "max_steps": steps, "lr": TARGET_LR, "batch_size": 16, "eval_batch_size": 64, "max_length": 64,
                     "warmup": 0.1,
                     "eval_every": steps // EVALUATIONS, "early_stopping": {"metric": "accuracy"}, "seed": seed},
           "baselines": False, "report": {"html": False}, "output": str(out)}
    if watch:
        raw["transfer"] = {"watch": watch}
    return raw


def train(raw: dict) -> dict:
    """One run's numbers; a run already finished in its output directory (an interrupted benchmark started again
    with the same --workdir) is read back, not trained again."""
    from tunesmith.config.recipe import validate_recipe
    from tunesmith.recipes.finetune import finetune

    done = Path(raw["output"]) / "eval.json"
    result = json.loads(done.read_text()) if done.is_file() else finetune(validate_recipe(raw), echo=quiet)
    records = [json.loads(line) for line in (Path(raw["output"]) / "metrics.jsonl").read_text().splitlines()]
    curve = [{"step": r["step"], "train_s": r["train_s"], "accuracy": r["accuracy"]} for r in records
             if r.get("type") == "eval" and r.get("split") == "validation" and not r.get("final")]
    return {"accuracy": result["validation"]["accuracy"], "macro_f1": result["validation"]["macro_f1"],
            "best_step": result["best"]["step"], "train_s": result["timing"]["train_s"], "curve": curve,
            "head": (result.get("lineage") or {}).get("head"),
            "watch": (result.get("transfer") or {}).get("watch")}


def reach(curve: list[dict], threshold: float) -> dict:
    """Training seconds and steps to the first evaluation at or above `threshold` (None: never)."""
    for point in curve:
        if point["accuracy"] >= threshold:
            return {"train_s": point["train_s"], "step": point["step"]}
    return {"train_s": None, "step": None}


def spread(values: list[float]) -> dict:
    return {"mean": round(statistics.mean(values), 4), "sd": round(statistics.stdev(values), 4),
            "min": round(min(values), 4), "max": round(max(values), 4)}


def summarize(runs: list[dict]) -> dict:
    summary = {}
    for n in SIZES:
        at = {start: [r for r in runs if r["n"] == n and r["start"] == start] for start in ("minilm", "source")}
        threshold = statistics.mean(r["accuracy"] for r in at["minilm"])
        row = {}
        for start, chosen in at.items():
            reached = [reach(r["curve"], threshold) for r in chosen]
            seconds = [x["train_s"] for x in reached if x["train_s"] is not None]
            row[start] = {"accuracy": spread([r["accuracy"] for r in chosen]),
                          "train_s": round(statistics.mean(r["train_s"] for r in chosen), 1),
                          "reached": f"{len(seconds)}/{len(chosen)}",
                          "seconds_to_threshold": round(statistics.mean(seconds), 1) if seconds else None,
                          "steps_to_threshold": [x["step"] for x in reached]}
        row["threshold"] = round(threshold, 4)
        row["source_minus_minilm_points"] = round(100 * (row["source"]["accuracy"]["mean"]
                                                         - row["minilm"]["accuracy"]["mean"]), 2)
        summary[str(n)] = row
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-transfer-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    source = workdir / "source_ag_news"
    source_result = train(source_recipe(workdir, source))
    dev = sample(require_shared("sst2") / "dev.tsv", workdir / "sst2_dev_300.tsv", DEV_ROWS, 0)
    print(json.dumps({"source": {k: v for k, v in source_result.items() if k != "curve"}}), flush=True)
    runs = []
    for n in SIZES:
        for seed in SEEDS:
            data = sample(require_shared("sst2") / "train.tsv", workdir / f"sst2_{n}_seed{seed}.tsv", n, seed)
            for start, model, watch in (("minilm", "minilm", None), ("source", str(source), str(source))):
                result = train(target_recipe(model, data, dev, n, seed, workdir / f"{start}-{n}-{seed}", watch))
                runs.append({"n": n, "seed": seed, "start": start, **result})
                print(json.dumps({k: v for k, v in runs[-1].items() if k != "curve"}), flush=True)
    results = {"source": source_result, "runs": runs, "summary": summarize(runs),
               "total_s": round(time.perf_counter() - started, 1)}
    print(json.dumps(results["summary"], indent=2), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
