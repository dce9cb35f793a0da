"""Classification speed: tunesmith vs Hugging Face Trainer, MiniLM on a fixed SST-2 subset.

Contenders (same model, data, hyper-parameters, machine; each in its own process):
  tunesmith       our loop: length-grouped batches, dynamic padding, precision auto
  trainer_default Trainer as the official run_glue.py runs by default: every example padded to 128
  trainer_tuned   Trainer tuned: dynamic padding, group_by_length, bf16 where the hardware has it

    python benchmarks/classification_speed.py               # all three, 8,000 examples, 1 epoch
    python benchmarks/classification_speed.py --quick       # 800 examples: a smoke run
    python benchmarks/classification_speed.py --contender tunesmith --train T --dev D   (one, internal)

Prints one JSON object per contender, then the ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, gemm_peak_flops, peak_rss_mb, run_contender, sst2_subset, training_flops  # noqa: E402

HYPER = {"batch_size": 32, "lr": 5e-5, "epochs": 1, "max_length": 128, "weight_decay": 0.01, "seed": 0}


def run_tunesmith(model: str, train: Path, dev: Path, out: Path, eval_every: int | None,
                  precision: str = "auto") -> dict:
    from tunesmith.config.recipe import validate_recipe
    from tunesmith.recipes.finetune import finetune

    recipe = validate_recipe({
        "model": model,
        "data": {"train": str(train), "validation": str(dev), "columns": {"text": "sentence", "label": "label"}},
        "train": {**{k: HYPER[k] for k in ("batch_size", "lr", "epochs", "max_length", "weight_decay", "seed")},
                  "warmup": 0.0, "precision": precision, "eval_every": eval_every or "epoch", "log_every": 50,
                  "early_stopping": {"metric": "accuracy"}},
        "output": str(out),
    })
    result = finetune(recipe, echo=lambda *a: None)
    timing = result["timing"]
    return {
        "train_s": timing["train_s"], "samples": result["data"]["train"] * HYPER["epochs"],
        "tokens": timing["tokens"], "padded_tokens": timing["padded_tokens"],
        "accuracy": result["validation"]["accuracy"], "curve": _tunesmith_curve(out),
        "precision": result["environment"]["precision"],
    }


def _tunesmith_curve(out: Path) -> list[dict]:
    """(training seconds, dev accuracy) at each evaluation, evaluation time excluded."""
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{"step": r["step"], "train_s": r.get("train_s"), "accuracy": r["accuracy"]}
            for r in records if r["type"] == "eval" and not r.get("final")]


def run_trainer(model_name: str, train: Path, dev: Path, out: Path, tuned: bool, eval_every: int | None) -> dict:
    import pandas as pd
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                              Trainer, TrainerCallback, TrainingArguments)

    from tunesmith.models import resolve_model
    from tunesmith.train.precision import auto_uses_bf16

    model_dir = resolve_model(model_name)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(HYPER["seed"])
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)

    def encode(path: Path) -> list[dict]:
        frame = pd.read_csv(path, sep="\t", quoting=3)
        padding = False if tuned else "max_length"
        enc = tokenizer(list(frame["sentence"]), truncation=True, max_length=HYPER["max_length"], padding=padding)
        return [{**{k: enc[k][i] for k in enc}, "labels": int(label)} for i, label in enumerate(frame["label"])]

    train_ds, dev_ds = encode(train), encode(dev)
    bf16 = tuned and auto_uses_bf16()  # bf16 wherever the hardware has it (a CPU with AVX512-BF16 too)
    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=HYPER["batch_size"], per_device_eval_batch_size=64,
        learning_rate=HYPER["lr"], num_train_epochs=HYPER["epochs"], weight_decay=HYPER["weight_decay"],
        lr_scheduler_type="linear", warmup_steps=0, max_grad_norm=1.0, seed=HYPER["seed"],
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
        "curve": curve, "precision": "bf16" if bf16 else "fp32",
    }


def contender_main(args) -> None:
    from tunesmith.models import resolve_model
    from transformers import AutoModelForSequenceClassification

    out = Path(tempfile.mkdtemp(prefix=f"bench-{args.contender}-"))
    if args.contender == "tunesmith":
        result = run_tunesmith(args.model, args.train, args.dev, out, args.eval_every, args.precision)
    else:
        result = run_trainer(args.model, args.train, args.dev, out, tuned=args.contender == "trainer_tuned",
                             eval_every=args.eval_every)
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


def summarize(results: dict, n_train: int, target: float) -> dict:
    """Ratios tunesmith / each Trainer: training time, time to `target` dev accuracy, accuracy, peak memory."""
    for result in results.values():
        result["time_to_target_s"] = time_to(result["curve"], target)
    ours = results["tunesmith"]
    summary = {"n_train": n_train, "target": target, "ratios": {
        peer: {"speedup_train_s": round(results[peer]["train_s"] / ours["train_s"], 2),
               "speedup_time_to_target": (round(results[peer]["time_to_target_s"] / ours["time_to_target_s"], 2)
                                          if results[peer]["time_to_target_s"] and ours["time_to_target_s"] else None),
               "accuracy_delta": round(ours["accuracy"] - results[peer]["accuracy"], 4),
               "peak_rss_ratio": round(ours["peak_rss_mb"] / results[peer]["peak_rss_mb"], 2)}
        for peer in ("trainer_default", "trainer_tuned")}}
    summary["targets"] = verdicts(summary["ratios"])
    return summary


def verdicts(ratios: dict) -> dict:
    """The issue's targets, met or missed: >= 3x the run_glue-default Trainer to the same accuracy (within 0.5
    point; time to `target`, else the epoch's training time), >= 1.2x the tuned Trainer's throughput at equal
    accuracy (within 0.5 point, or better)."""
    default, tuned = ratios["trainer_default"], ratios["trainer_tuned"]
    default_speedup = default["speedup_time_to_target"] or default["speedup_train_s"]
    return {
        ">=3x run_glue-default Trainer at equal accuracy": "met" if default_speedup >= 3 and
        default["accuracy_delta"] >= -0.005 else "missed",
        ">=1.2x tuned Trainer throughput at equal accuracy": "met" if tuned["speedup_train_s"] >= 1.2 and
        tuned["accuracy_delta"] >= -0.005 else "missed",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contender", choices=["tunesmith", "trainer_default", "trainer_tuned"])
    parser.add_argument("--train", type=Path)
    parser.add_argument("--dev", type=Path)
    parser.add_argument("--eval-every", type=int, default=None)
    parser.add_argument("--model", default="minilm", help="packaged name or local directory")
    parser.add_argument("--data-dir", type=Path, help="holds sst2_train_N.tsv and sst2_dev.tsv (default: made from ../shared)")
    parser.add_argument("--quick", action="store_true", help="800 training examples (CI smoke)")
    parser.add_argument("--n-train", type=int, default=8000)
    parser.add_argument("--target", type=float, default=0.83, help="dev accuracy for time-to-accuracy")
    parser.add_argument("--resummarize", type=Path, help="recompute the ratios of a saved --json file (e.g. for "
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
    results = {}
    for contender in ("tunesmith", "trainer_default", "trainer_tuned"):
        results[contender] = run_contender(Path(__file__), ["--contender", contender, "--train", str(train),
                                                           "--dev", str(dev), "--eval-every", str(eval_every),
                                                           "--model", args.model, "--precision", args.precision])
        print(json.dumps(results[contender]), flush=True)
    summary = summarize(results, n_train, args.target)
    print(json.dumps(summary), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"results": results, **summary}, indent=2))


if __name__ == "__main__":
    main()
