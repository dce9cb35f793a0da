"""Adapter switching (issue 15): N task adapters on one base in memory vs N merged models, memory and latency.

    runs     N = 3 LoRA runs of the packaged MiniLM (method lora, its defaults: r 8, alpha 16, query/value,
             lr 1e-3), one per task, each ROWS training rows drawn with seed 0 (+ 20% stratified validation),
             1 epoch, batch 32, max_length 64:
               sst2      ../shared/data/sst2/train.tsv (sentence, label)
               sms_spam  data/sms_spam/SMSSpamCollection (shipped)
               ag_news   ../shared/data/ag_news/test.csv (title as the text; 4 topics)
    switched one process: `SwitchedRuns` (recipes/adapters.py): the base once, the 3 adapters and heads on it
    merged   one process: the 3 runs' RUN/model (adapter merged into the base), each a full model in memory
    one      one process: a single RUN/model (what one model costs; the reference for both)

Each configuration is measured in a fresh process (`--measure`): the resident memory (VmRSS, /proc/self/status)
after imports, after loading and after the timing passes (`resident_mb`: the last minus the first; safetensors
are memory-mapped, so a weight is resident once read), and the peak (VmHWM); per-batch latency on the same 256 SST-2 dev
sentences, tokenized once (max_length 64): for each run in turn, at batch 32 (8 batches) and batch 1 (32
examples), the model forward only (median ms over REPEATS passes); `switched` includes switching the adapter
(set_adapter) before each run's batches, and the switch alone is timed too. Torch threads: all the machine's.
Finally `tunesmith merge` (svd, weights 1) of the 3 runs, re-evaluated per task (recipes/merge.py): what one
merged body + 3 heads costs in quality against each task's own adapter.

    python benchmarks/adapter_switching.py --json benchmarks/results_cpu_adapter_switching.json
    python benchmarks/adapter_switching.py --quick        # a few steps each: checks that it works, numbers mean nothing
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, peak_rss_mb, require_shared  # noqa: E402

ROWS, QUICK_ROWS = 2500, 160
REPEATS, QUICK_REPEATS = 5, 1
TEXTS = 256


def quiet(*_args, **_kwargs):
    pass


def sample_lines(lines: list[str], n: int, seed: int = 0) -> list[str]:
    lines = list(lines)
    random.Random(seed).shuffle(lines)
    return lines[:n]


def task_data(workdir: Path, rows: int) -> dict[str, dict]:
    """{task: data section}: a seeded sample of each data set, written under workdir."""
    workdir.mkdir(parents=True, exist_ok=True)
    sst2 = (require_shared("sst2") / "train.tsv").read_text(encoding="utf-8").splitlines()
    (workdir / "sst2.tsv").write_text("\n".join([sst2[0], *sample_lines(sst2[1:], rows)]) + "\n", encoding="utf-8")
    spam = (REPO / "data" / "sms_spam" / "SMSSpamCollection").read_text(encoding="utf-8").splitlines()
    (workdir / "sms_spam.tsv").write_text("\n".join(sample_lines(spam, rows)) + "\n", encoding="utf-8")
    news = (require_shared("ag_news") / "test.csv").read_text(encoding="utf-8").splitlines()
    (workdir / "ag_news.csv").write_text("\n".join(sample_lines(news, rows)) + "\n", encoding="utf-8")
    held_out = {"split": 0.2, "stratify": True}
    return {
        "sst2": {"train": str(workdir / "sst2.tsv"), "columns": {"text": "sentence", "label": "label"},
                 "validation": held_out},
        "sms_spam": {"train": str(workdir / "sms_spam.tsv"), "format": "tsv", "header": False,
                     "columns": {"label": 0, "text": 1}, "validation": held_out},
        "ag_news": {"train": str(workdir / "ag_news.csv"), "format": "csv", "header": False,
                    "columns": {"label": 0, "text": 1}, "validation": held_out},
    }


def train_runs(workdir: Path, quick: bool) -> dict[str, Path]:
    from tunesmith.config.recipe import validate_recipe
    from tunesmith.recipes.finetune import finetune

    runs = {}
    for task, data in task_data(workdir / "data", QUICK_ROWS if quick else ROWS).items():
        out = workdir / task
        settings = {"epochs": 1, "batch_size": 32, "max_length": 64, "seed": 0,
                    "early_stopping": {"metric": "macro_f1"}, **({"max_steps": 3} if quick else {})}
        raw = {"model": "minilm", "data": data, "train": settings, "method": "lora", "baselines": False,
               "report": {"html": False}, "preflight": {"enabled": False}, "output": str(out)}
        if not (out / "eval.json").is_file():  # an interrupted benchmark started again reuses finished runs
            started = time.perf_counter()
            finetune(validate_recipe(raw), echo=quiet)
            print(json.dumps({"trained": task, "seconds": round(time.perf_counter() - started, 1)}), flush=True)
        runs[task] = out
    return runs


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def batches(tokenizer, texts: list[str], size: int) -> list[dict]:
    return [dict(tokenizer(texts[i:i + size], padding=True, truncation=True, max_length=64, return_tensors="pt"))
            for i in range(0, len(texts), size)]


def timed(fn, repeats: int) -> float:
    """Median milliseconds of `fn()` over `repeats` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return round(1000 * statistics.median(times), 3)


def measure(kind: str, runs: list[Path], texts: list[str], repeats: int) -> dict:
    """One configuration, in this (fresh) process: memory after loading, per-batch forward latency per run."""
    import torch

    from tunesmith.recipes.adapters import SwitchedRuns
    from tunesmith.recipes.predict import TrainedRun

    before = rss_mb()
    if kind == "switched":
        switched = SwitchedRuns(runs)
        models = {run.adapter_name: switched.model for run in switched.runs}
        tokenizer = switched.tokenizer
    else:
        loaded = [TrainedRun(run) for run in (runs if kind == "merged" else runs[:1])]
        models = {str(i): run.model for i, run in enumerate(loaded)}
        tokenizer = loaded[0].tokenizer
    loaded_rss = rss_mb()
    shapes = {"b32": batches(tokenizer, texts, 32), "b1": batches(tokenizer, texts[:32], 1)}
    latency, switch_ms = {}, {}
    with torch.no_grad():
        for name, model in models.items():
            model.eval()

            def run_all(chosen, name=name, model=model):
                if kind == "switched":
                    model.set_adapter(name, inference_mode=True)
                for batch in chosen:
                    model(**batch)

            latency[name] = {shape: round(timed(lambda chosen=chosen: run_all(chosen), repeats) / len(chosen), 3)
                             for shape, chosen in shapes.items()}
            if kind == "switched":
                switch_ms[name] = timed(lambda name=name, model=model: model.set_adapter(name, inference_mode=True),
                                        max(repeats, 20))
    after = rss_mb()  # every weight touched: safetensors are memory-mapped, resident once read
    return {"kind": kind, "models_in_memory": 1 if kind != "merged" else len(models), "runs": len(models),
            "rss_before_load_mb": round(before, 1), "rss_after_load_mb": round(loaded_rss, 1),
            "rss_after_inference_mb": round(after, 1), "loaded_mb": round(loaded_rss - before, 1),
            "resident_mb": round(after - before, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
            "ms_per_batch": latency, "set_adapter_ms": switch_ms or None, "threads": torch.get_num_threads()}


def measure_in_child(kind: str, runs: list[Path], texts_file: Path, repeats: int) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    args = [sys.executable, __file__, "--measure", kind, "--texts", str(texts_file), "--repeats", str(repeats),
            *map(str, runs)]
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"--measure {kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def merge_quality(runs: dict[str, Path], workdir: Path) -> dict:
    from tunesmith.recipes.merge import merge_runs

    report = merge_runs(list(runs.values()), output=workdir / "merged", combination="svd", echo=quiet)
    return {name: {"metric": row["metric"], "own_adapter": row["source_metrics"][row["metric"]],
                   "merged_body": row["merged_metrics"][row["metric"]], "delta": row["delta"][row["metric"]],
                   "prediction_agreement": row["prediction_agreement"]}
            for name, row in report["tasks"].items()}


def summary(measured: dict) -> dict:
    def mean_latency(kind, shape):
        return round(statistics.mean(v[shape] for v in measured[kind]["ms_per_batch"].values()), 3)

    return {kind: {"resident_mb": row["resident_mb"], "peak_rss_mb": row["peak_rss_mb"],
                   "ms_per_batch_b32": mean_latency(kind, "b32"), "ms_per_example_b1": mean_latency(kind, "b1")}
            for kind, row in measured.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--quick", action="store_true", help="a few steps per run, 1 timing pass (a smoke test)")
    parser.add_argument("--measure", choices=["switched", "merged", "one"], help=argparse.SUPPRESS)
    parser.add_argument("--texts", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=REPEATS, help=argparse.SUPPRESS)
    parser.add_argument("runs", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # the child process of one configuration
        texts = json.loads(args.texts.read_text())
        print(json.dumps(measure(args.measure, args.runs, texts, args.repeats)))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-adapters-"))
    started = time.perf_counter()
    runs = train_runs(workdir, args.quick)
    dev = (require_shared("sst2") / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    texts_file = workdir / "texts.json"
    texts_file.write_text(json.dumps([line.split("\t")[0] for line in sample_lines(dev, TEXTS)]))
    repeats = QUICK_REPEATS if args.quick else REPEATS
    measured = {}
    for kind in ("one", "switched", "merged"):
        measured[kind] = measure_in_child(kind, list(runs.values()), texts_file, repeats)
        print(json.dumps(measured[kind]), flush=True)
    results = {"quick": args.quick, "rows_per_task": QUICK_ROWS if args.quick else ROWS, "tasks": list(runs),
               "measured": measured, "summary": summary(measured), "merge_svd": merge_quality(runs, workdir),
               "total_s": round(time.perf_counter() - started, 1)}
    print(json.dumps({"summary": results["summary"], "merge_svd": results["merge_svd"]}, indent=2), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
