"""Causal-LM LoRA speed: tunesmith vs Hugging Face Trainer + PEFT, SmolLM2-135M on Tiny Shakespeare.

Same model, the same packed 256-token blocks (built once by tunesmith's causal_lm task and handed to
both), same LoRA (r 8, alpha 16, dropout 0.05, q_proj/v_proj), same optimizer settings and number of
steps, bf16 autocast for both where the hardware has it (tunesmith's `precision: auto`); each contender in
its own process (clean peak-memory figure). The validation loss of both comes from the same evaluation code,
in fp32. Two more contenders isolate tunesmith's own changes in the same run: tunesmith_full_logits is tunesmith
with `lm.loss_chunk: 0` (the model's own loss over the full logits tensor; what tasks/lm_loss.py changes), and
tunesmith_fp32_base keeps the frozen base in fp32 (`method.frozen_precision: fp32`; what
methods/frozen_precision.py changes). tunesmith_full_logits holds the base in bf16 as tunesmith does.
tunesmith_checkpointing is tunesmith with `method.gradient_checkpointing: true` (each decoder layer's activations
recomputed in the backward pass): what memory it saves and what speed it costs.

With `--method full` the same comparison is made for full fine-tuning (every weight trains, lr 2e-5): tunesmith
and tunesmith_checkpointing against the plain Trainer (no PEFT); issue 18's targets there are >= 1.3x tokens/s
and <= 0.7x peak RSS.

    python benchmarks/causal_speed.py                 # 30 steps of batch 4 x 256 tokens
    python benchmarks/causal_speed.py --method full   # full fine-tuning
    python benchmarks/causal_speed.py --quick         # 6 steps: a smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, emit, gemm_peak_flops, peak_rss_mb, run_contender, training_flops  # noqa: E402

CONTENDERS = {"lora": ("tunesmith", "tunesmith_fp32_base", "tunesmith_full_logits", "tunesmith_checkpointing",
                        "trainer_peft"),
              "full": ("tunesmith", "tunesmith_checkpointing", "trainer")}
LORA = {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}
LR = {"lora": 2e-4, "full": 2e-5}
TARGETS = {"lora": {"tokens_per_s": 1.4, "peak_rss": 0.6}, "full": {"tokens_per_s": 1.3, "peak_rss": 0.7}}


def method_dict(method: str, frozen_precision: str, checkpointing: bool) -> dict:
    if method == "full":
        return {"name": "full", "gradient_checkpointing": checkpointing}
    return {"name": "lora", **LORA, "frozen_precision": frozen_precision, "gradient_checkpointing": checkpointing}


def recipe_dict(model: str, steps: int, out: Path, block: int = 256, loss_chunk: int = 256,
                frozen_precision: str = "auto", checkpointing: bool = False, method: str = "lora",
                batch_size: int = 4) -> dict:
    return {
        "model": model, "task": "causal_lm",
        "data": {"train": str(REPO / "data" / "tiny_shakespeare" / "input.txt"), "validation": {"split": 0.02}},
        "lm": {"text_unit": "paragraph", "validation_by": "tail", "block_size": block, "sample_prompts": [],
               "loss_chunk": loss_chunk},
        "method": method_dict(method, frozen_precision, checkpointing),
        "train": {"epochs": 1, "max_steps": steps, "batch_size": batch_size, "eval_batch_size": 2 * batch_size, "lr": LR[method],
                  "schedule": "linear", "warmup": 0.0, "max_length": block, "eval_every": steps, "log_every": 5,
                  "early_stopping": {"metric": "loss"}, "seed": 0, "weight_decay": 0.0,
                  "eval_precision": "fp32"},  # the validation loss in fp32, as the peer's is computed
        "output": str(out),
    }


def run_tunesmith(model: str, steps: int, out: Path, block: int, loss_chunk: int = 256,
                  frozen_precision: str = "auto", checkpointing: bool = False, method: str = "lora",
                  batch_size: int = 4) -> dict:
    from tunesmith.config.recipe import validate_recipe
    from tunesmith.recipes.finetune import finetune

    raw = recipe_dict(model, steps, out, block, loss_chunk, frozen_precision, checkpointing, method, batch_size)
    result = finetune(validate_recipe(raw), echo=lambda *a: None)
    timing = result["timing"]
    return {"train_s": timing["train_s"], "tokens": timing["tokens"], "padded_tokens": timing["padded_tokens"],
            "val_loss": result["validation"]["loss"], "precision": result["environment"]["precision"],
            "allocator": result["environment"]["allocator"]}


def run_trainer(model_name: str, steps: int, out: Path, block: int, method: str = "lora",
                batch_size: int = 4) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments

    from tunesmith.models import resolve_model
    from tunesmith.config.recipe import validate_recipe
    from tunesmith.tasks import make_task
    from tunesmith.train.precision import auto_uses_bf16, make_accelerator

    task = make_task(validate_recipe(recipe_dict(model_name, steps, out, block, method=method,
                                                 batch_size=batch_size)))
    splits = task.load_data()
    model, tokenizer = task.load_model(resolve_model(model_name))
    train_ds, valid_ds = task.encode(splits.train, tokenizer), task.encode(splits.validation, tokenizer)
    collate = task.make_loader(train_ds, tokenizer, batch_size=batch_size, order="sequential").collate_fn  # as ours
    train, valid = [[dict(ds[i]) for i in range(len(ds))] for ds in (train_ds, valid_ds)]
    torch.manual_seed(0)
    if method == "lora":
        model = get_peft_model(model, LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                                                 target_modules=LORA["target_modules"], task_type="CAUSAL_LM"))
    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=batch_size, per_device_eval_batch_size=2 * batch_size,
        learning_rate=LR[method],
        max_steps=steps, lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, seed=0,
        eval_strategy="no", save_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(), bf16=auto_uses_bf16(), dataloader_num_workers=0,
        include_num_input_tokens_seen="all",
    )
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=valid,
                      data_collator=collate)
    output = trainer.train()
    tokens = int(trainer.state.num_input_tokens_seen)
    # validation loss with tunesmith's evaluation code, in fp32 as tunesmith's final evaluation runs
    trained = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    accelerator = make_accelerator("fp32")
    loader = accelerator.prepare(task.make_loader(valid_ds, tokenizer, batch_size=2 * batch_size, order="by_length"))
    val_loss = task.evaluate(trained, loader, accelerator, desc="validation")["loss"]
    return {"train_s": output.metrics["train_runtime"], "tokens": tokens, "padded_tokens": tokens,
            "val_loss": val_loss, "precision": "bf16" if args.bf16 else "fp32"}


def contender_main(args) -> None:
    if args.contender.startswith("tunesmith"):  # as the tunesmith command runs: under tcmalloc where installed
        from tunesmith.allocator import run_under_preferred_allocator

        run_under_preferred_allocator((str(Path(__file__).resolve()),))
    from transformers import AutoConfig, AutoModelForCausalLM

    from tunesmith.models import resolve_model

    out = Path(tempfile.mkdtemp(prefix=f"bench-lm-{args.contender}-"))
    if args.contender.startswith("trainer"):
        result = run_trainer(args.model, args.steps, out, args.block_size, args.method, args.batch_size)
    else:  # tunesmith_full_logits: lm.loss_chunk 0, the model's own loss (what tunesmith did before chunking);
        # tunesmith_fp32_base: method.frozen_precision fp32 (the frozen base kept in fp32, as before)
        result = run_tunesmith(args.model, args.steps, out, args.block_size,
                               loss_chunk=0 if args.contender == "tunesmith_full_logits" else 256,
                               frozen_precision="fp32" if args.contender == "tunesmith_fp32_base" else "auto",
                               checkpointing=args.contender == "tunesmith_checkpointing",
                               method=args.method, batch_size=args.batch_size)
    config = AutoConfig.from_pretrained(resolve_model(args.model))
    with __import__("torch").device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    # LoRA still runs the full forward and the backward through activations: ~6 x params x tokens bounds it
    flops = training_flops(model, result["padded_tokens"])
    result.update({"contender": args.contender, "method": args.method, "peak_rss_mb": round(peak_rss_mb(), 1),
                   "tokens_per_s": round(result["tokens"] / result["train_s"], 1),
                   "achieved_flops_fraction": round(flops / result["train_s"] / gemm_peak_flops(), 4)})
    emit(result)


def ratios(ours: dict, other: dict) -> dict:
    return {"tokens_per_s_ratio": round(ours["tokens_per_s"] / other["tokens_per_s"], 2),
            "peak_rss_ratio": round(ours["peak_rss_mb"] / other["peak_rss_mb"], 2),
            "peak_rss_mb_saved": round(other["peak_rss_mb"] - ours["peak_rss_mb"], 1)}


def summarize(results: dict, method: str, steps: int) -> dict:
    peer = results["trainer_peft" if method == "lora" else "trainer"]
    ours = results["tunesmith"]
    summary = {"method": method, "steps": steps, **ratios(ours, peer),
               "val_loss_relative_delta": round((ours["val_loss"] - peer["val_loss"]) / peer["val_loss"], 5),
               "checkpointing_vs_peer": ratios(results["tunesmith_checkpointing"], peer)}
    if method == "lora":
        summary["chunked_vs_full_logits"] = ratios(ours, results["tunesmith_full_logits"])
        summary["bf16_vs_fp32_base"] = ratios(ours, results["tunesmith_fp32_base"])
    target = TARGETS[method]  # issue 18: tokens/s and peak RSS against the peer, validation loss within 0.5%
    summary["targets"] = {
        f"tokens/s >= {target['tokens_per_s']}x peer": "met" if summary["tokens_per_s_ratio"] >= target["tokens_per_s"]
        else "missed",
        f"peak RSS <= {target['peak_rss']}x peer": "met" if summary["peak_rss_ratio"] <= target["peak_rss"] else "missed",
        "validation loss within 0.5%": "met" if abs(summary["val_loss_relative_delta"]) <= 0.005 else "missed"}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contender")
    parser.add_argument("--method", choices=tuple(CONTENDERS), default="lora")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.contender:
        return contender_main(args)
    steps = 6 if args.quick else args.steps
    shared = ["--method", args.method, "--model", args.model, "--steps", str(steps),
              "--block-size", str(args.block_size), "--batch-size", str(args.batch_size)]
    results = {c: run_contender(Path(__file__), ["--contender", c, *shared]) for c in CONTENDERS[args.method]}
    for result in results.values():
        print(json.dumps(result), flush=True)
    summary = summarize(results, args.method, steps)
    print(json.dumps(summary), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"results": results, **summary}, indent=2))


if __name__ == "__main__":
    main()
