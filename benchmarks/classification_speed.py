"""Classification speed: tunesmith vs Hugging Face Trainer, MiniLM on a fixed SST-2 subset.

Contenders (same model, data, hyper-parameters, machine; each in its own process):
  tunesmith        our loop as a user gets it: length-grouped batches in random order, dynamic padding,
                   precision auto, the default baselines and report
  tunesmith_random the same with train.group_by_length: false (random batch order)
  tunesmith_sorted_batches  the length grouping as transformers' LengthGroupedSampler orders it (each mega-batch
                   longest batch first), patched in: tunesmith's default until 2026-12-03
  trainer_random   Trainer with dynamic padding and random batch order (its defaults otherwise: fp32)
  trainer_tuned    Trainer tuned: dynamic padding, group_by_length, bf16 where the hardware has it
  trainer_default  Trainer as the official run_glue.py runs by default: every example padded to 128

    python benchmarks/classification_speed.py --seeds 0,1,2    # the four first contenders, 3 training seeds
    python benchmarks/classification_speed.py --contenders tunesmith,trainer_default,trainer_tuned --seeds 0
    python benchmarks/classification_speed.py --quick --seeds 0   # 800 examples: a smoke run
    python benchmarks/classification_speed.py --contender tunesmith --train T --dev D   (one, internal)

Prints one JSON object per contender, then the ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# the contender's whole process: imports, data, training, evaluations, report; a tunesmith contender started again
# under tcmalloc (as the tunesmith command starts itself) counts from its first start
STARTED = float(os.environ.pop("BENCH_STARTED_AT", "") or time.time())


def elapsed() -> float:
    return round(time.time() - STARTED, 1)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (emit, gemm_peak_flops, mean_sd, peak_rss_mb, run_contender, sst2_subset,  # noqa: E402
                    training_flops)

HYPER = {"batch_size": 32, "lr": 5e-5, "epochs": 1, "max_length": 128, "weight_decay": 0.01}
TRAINER_PADDING = {"trainer_default": "max_length", "trainer_random": "random", "trainer_tuned": "tuned"}
CONTENDERS = ("tunesmith", "tunesmith_random", "tunesmith_sorted_batches", *TRAINER_PADDING)
SEED_STUDY = "tunesmith,tunesmith_random,trainer_random,trainer_tuned"


def run_tunesmith(model: str, train: Path, dev: Path, out: Path, eval_every: int | None,
                  precision: str = "auto", grouped: bool = True, seed: int = 0) -> dict:
    from tunesmith.config.recipe import validate_recipe
    from tunesmith.recipes.finetune import finetune

    recipe = validate_recipe({
        "model": model,
        "data": {"train": str(train), "validation": str(dev), "columns": {"text": "sentence", "label": "label"}},
        "train": {**{k: HYPER[k] for k in ("batch_size", "lr", "epochs", "max_length", "weight_decay")},
                  "seed": seed, "group_by_length": grouped, "warmup": 0.0, "precision": precision,
                  "eval_every": eval_every or "epoch", "log_every": 50, "early_stopping": {"metric": "accuracy"}},
        "output": str(out),
    })
    result = finetune(recipe, echo=lambda *a: None)
    timing = result["timing"]
    return {
        "train_s": timing["train_s"], "samples": result["data"]["train"] * HYPER["epochs"],
        "tokens": timing["tokens"], "padded_tokens": timing["padded_tokens"],
        "accuracy": result["validation"]["accuracy"], "curve": _tunesmith_curve(out),
        "precision": result["environment"]["precision"], "process_s": elapsed(),
        "allocator": result["environment"]["allocator"],
    }


def _tunesmith_curve(out: Path) -> list[dict]:
    """(training seconds, dev accuracy) at each evaluation, evaluation time excluded."""
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{"step": r["step"], "train_s": r.get("train_s"), "accuracy": r["accuracy"]}
            for r in records if r["type"] == "eval" and not r.get("final")]


def run_trainer(model_name: str, train: Path, dev: Path, out: Path, padding: str, eval_every: int | None,
                seed: int = 0) -> dict:
    """padding: "max_length" (run_glue's default), "random" (dynamic, random order, fp32) or "tuned" (dynamic,
    grouped by length, bf16 where the hardware has it)."""
    import pandas as pd
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                              Trainer, TrainerCallback, TrainingArguments)

    from tunesmith.models import resolve_model
    from tunesmith.train.precision import auto_uses_bf16

    model_dir = resolve_model(model_name)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)

    def encode(path: Path) -> list[dict]:
        frame = pd.read_csv(path, sep="\t", quoting=3)
        pad = "max_length" if padding == "max_length" else False
        enc = tokenizer(list(frame["sentence"]), truncation=True, max_length=HYPER["max_length"], padding=pad)
        return [{**{k: enc[k][i] for k in enc}, "labels": int(label)} for i, label in enumerate(frame["label"])]

    train_ds, dev_ds = encode(train), encode(dev)
    tuned = padding == "tuned"
    bf16 = tuned and auto_uses_bf16()  # bf16 wherever the hardware has it (a CPU with AVX512-BF16 too)
    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=HYPER["batch_size"], per_device_eval_batch_size=64,
        learning_rate=HYPER["lr"], num_train_epochs=HYPER["epochs"], weight_decay=HYPER["weight_decay"],
        lr_scheduler_type="linear", warmup_steps=0, max_grad_norm=1.0, seed=seed,
        train_sampling_strategy="group_by_length" if tuned else "random", bf16=bf16,
        eval_strategy="steps" if eval_every else "no", eval_steps=eval_every, save_strategy="no",
        logging_strategy="no", report_to="none", disable_tqdm=True, use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0, include_num_input_tokens_seen="all",
    )
    curve: list[dict] = []

    class Clock(TrainerCallback):
        """Training time with evaluation excluded, as for tunesmith."""
        def __init__(self):
            self.started, self.in_eval = time.perf_counter(), 0.0

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            self.in_eval += metrics.get("eval_runtime", 0.0)
            curve.append({"step": state.global_step, "accuracy": metrics["eval_accuracy"],
                          "train_s": time.perf_counter() - self.started - self.in_eval})

    def accuracy(pred):
        return {"accuracy": float((pred.predictions.argmax(-1) == pred.label_ids).mean())}

    trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=dev_ds,
                      data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer,
                      compute_metrics=accuracy, callbacks=[clock := Clock()])
    output = trainer.train()
    train_s = output.metrics["train_runtime"] - clock.in_eval
    final = trainer.evaluate()
    real_tokens = sum(len(ids) for ids in (tokenizer(pd.read_csv(train, sep="\t", quoting=3)["sentence"].tolist(),
                                                       truncation=True, max_length=HYPER["max_length"])["input_ids"]))
    return {
        "train_s": train_s, "samples": len(train_ds) * HYPER["epochs"], "tokens": real_tokens * HYPER["epochs"],
        "padded_tokens": int(trainer.state.num_input_tokens_seen), "accuracy": final["eval_accuracy"],
        "curve": curve, "precision": "bf16" if bf16 else "fp32", "process_s": elapsed(),
    }


def contender_main(args) -> None:
    if args.contender.startswith("tunesmith"):  # as the tunesmith command runs: under tcmalloc where installed
        from tunesmith.allocator import run_under_preferred_allocator

        os.environ["BENCH_STARTED_AT"] = repr(STARTED)
        run_under_preferred_allocator((str(Path(__file__).resolve()),))
        os.environ.pop("BENCH_STARTED_AT")
    from tunesmith.models import resolve_model
    from transformers import AutoModelForSequenceClassification

    out = Path(tempfile.mkdtemp(prefix=f"bench-{args.contender}-"))
    if args.contender == "tunesmith_sorted_batches":
        import tunesmith.data.encode as encode
        from transformers.trainer_pt_utils import LengthGroupedSampler

        encode.ShuffledLengthGroupedSampler = LengthGroupedSampler
    if args.contender.startswith("tunesmith"):
        result = run_tunesmith(args.model, args.train, args.dev, out, args.eval_every, args.precision,
                               grouped=args.contender != "tunesmith_random", seed=args.seed)
    else:
        result = run_trainer(args.model, args.train, args.dev, out, padding=TRAINER_PADDING[args.contender],
                             eval_every=args.eval_every, seed=args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(resolve_model(args.model), num_labels=2)
    flops = training_flops(model, result["padded_tokens"])
    peak = gemm_peak_flops()
    result.update({
        "contender": args.contender, "peak_rss_mb": round(peak_rss_mb(), 1),
        "samples_per_s": round(result["samples"] / result["train_s"], 2),
        "tokens_per_s": round(result["tokens"] / result["train_s"], 1),
        "padding_fraction": round(1 - result["tokens"] / max(result["padded_tokens"], 1), 4),
        "achieved_flops_fraction": round(flops / result["train_s"] / peak, 4),
        "gemm_peak_gflops": round(peak / 1e9, 1),
    })
    emit(result)


def time_to(curve: list[dict], target: float) -> float | None:
    for point in curve:
        if point["accuracy"] >= target:
            return round(point["train_s"], 1)
    return None


def last_accuracy(run: dict) -> float:
    """The dev accuracy of the model at the end of the epoch (the last evaluation), as for every contender."""
    return run["curve"][-1]["accuracy"]


def best_accuracy(run: dict) -> float:
    """The best evaluation's dev accuracy: the model tunesmith keeps (Trainer keeps the last unless told)."""
    return max(point["accuracy"] for point in run["curve"])


def summarize(results: dict[str, list[dict]], n_train: int, target: float | None) -> dict:
    """Per contender over the seeds: last and best dev accuracy, training and whole-process seconds, and for
    each seed the training seconds to the first evaluation at `target` or above (default: trainer_random's mean
    last accuracy). A contender reaches the target when most of its seeds do; its time is then the median (a
    seed that never reaches it counts as never)."""
    if target is None:
        target = statistics.mean(map(last_accuracy, results["trainer_random"])) if "trainer_random" in results \
            else 0.83
    per_contender = {}
    for name, runs in results.items():
        times = [time_to(r["curve"], target) for r in runs]
        median = statistics.median([t if t is not None else math.inf for t in times])
        per_contender[name] = {
            "seeds": [r["seed"] for r in runs],
            "last_accuracy": mean_sd([last_accuracy(r) for r in runs]),
            "best_accuracy": mean_sd([best_accuracy(r) for r in runs]),
            "train_s": mean_sd([r["train_s"] for r in runs]), "process_s": mean_sd([r["process_s"] for r in runs]),
            "padding_fraction": mean_sd([r["padding_fraction"] for r in runs]),
            "peak_rss_mb": mean_sd([r["peak_rss_mb"] for r in runs]),
            "time_to_target_s": times, "seeds_reaching_target": sum(t is not None for t in times),
            "median_time_to_target_s": None if math.isinf(median) else median,
        }
    summary = {"n_train": n_train, "target": round(target, 4), "contenders": per_contender}
    summary["targets"] = verdicts(per_contender)
    return summary


def verdicts(stats: dict) -> dict:
    """Issue 18's classification targets, for each tunesmith contender: it reaches the target in most seeds, and
    >= 2x faster (median) than the fastest Trainer contender that does (met outright when no Trainer contender
    reaches it in most seeds within the epoch); mean last accuracy not below trainer_random's by more than
    0.3 point; whole-process seconds below trainer_tuned's."""
    trainers = [v["median_time_to_target_s"] for k, v in stats.items() if k.startswith("trainer")]
    fastest = min((t for t in trainers if t), default=None)
    out = {}
    for name, ours in stats.items():
        if not name.startswith("tunesmith"):
            continue
        row = {}
        if trainers:  # a run without Trainer contenders has nothing to be 2x faster than
            time = ours["median_time_to_target_s"]
            speedup = round(fastest / time, 2) if fastest and time else None
            met = time is not None and (fastest is None or speedup >= 2)
            row = {"speedup_to_target_vs_fastest_trainer": speedup,
                   "no trainer reaches the target in most seeds": fastest is None,
                   ">=2x to the target": "met" if met else "missed"}
        if "trainer_random" in stats:
            delta = round(100 * (ours["last_accuracy"]["mean"] - stats["trainer_random"]["last_accuracy"]["mean"]), 2)
            row.update({"last_accuracy_minus_trainer_random_points": delta,
                        "accuracy within 0.3 point": "met" if delta >= -0.3 else "missed"})
        if "trainer_tuned" in stats:
            ratio = round(ours["process_s"]["mean"] / stats["trainer_tuned"]["process_s"]["mean"], 2)
            row.update({"process_s_ratio_vs_trainer_tuned": ratio,
                        "whole process faster than trainer_tuned": "met" if ratio < 1 else "missed"})
        out[name] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contender", choices=CONTENDERS)
    parser.add_argument("--seed", type=int, default=0, help="(one contender, internal) the training seed")
    parser.add_argument("--train", type=Path)
    parser.add_argument("--dev", type=Path)
    parser.add_argument("--eval-every", type=int, default=None)
    parser.add_argument("--contenders", default=SEED_STUDY, help=f"comma-separated, of {', '.join(CONTENDERS)}")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds (the data subset stays seed 0's)")
    parser.add_argument("--model", default="minilm", help="packaged name or local directory")
    parser.add_argument("--data-dir", type=Path, help="holds sst2_train_N.tsv and sst2_dev.tsv (default: made from ../shared)")
    parser.add_argument("--quick", action="store_true", help="800 training examples (CI smoke)")
    parser.add_argument("--n-train", type=int, default=8000)
    parser.add_argument("--target", type=float, default=None,
                        help="dev accuracy for time-to-accuracy (default: trainer_random's mean final accuracy)")
    parser.add_argument("--resummarize", type=Path, help="recompute the summary of a saved --json file (e.g. for "
                        "another --target) without running anything")
    parser.add_argument("--json", type=Path, help="write all results here")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="tunesmith's train.precision (default auto, as a user gets it)")
    args = parser.parse_args()
    if args.contender:
        return contender_main(args)
    if args.resummarize:
        saved = json.loads(args.resummarize.read_text())
        summary = summarize(saved["results"], saved["n_train"], args.target)
        args.resummarize.write_text(json.dumps({"results": saved["results"], **summary}, indent=2))
        return print(json.dumps(summary))
    n_train = 800 if args.quick else args.n_train
    if args.data_dir:
        train, dev = args.data_dir / f"sst2_train_{n_train}.tsv", args.data_dir / "sst2_dev.tsv"
    else:
        train, dev = sst2_subset(Path(tempfile.mkdtemp(prefix="bench-data-")), n_train)
    eval_every = max(5, n_train // HYPER["batch_size"] // 5)  # five evaluations over the epoch
    contenders = args.contenders.split(",")
    results: dict[str, list[dict]] = {name: [] for name in contenders}
    for seed in (int(x) for x in args.seeds.split(",")):
        for contender in contenders:  # interleaved, so a drift of the machine touches every contender alike
            run = run_contender(Path(__file__), ["--contender", contender, "--seed", str(seed), "--train", str(train),
                                                 "--dev", str(dev), "--eval-every", str(eval_every),
                                                 "--model", args.model, "--precision", args.precision])
            results[contender].append({"seed": seed, **run})
            print(json.dumps(results[contender][-1]), flush=True)
    summary = summarize(results, n_train, args.target)
    print(json.dumps(summary, indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"results": results, "hyper": HYPER, **summary}, indent=2))


if __name__ == "__main__":
    main()
