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

    python benchmarks/causal_speed.py                 # 30 steps of batch 4 x 256 tokens
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

CONTENDERS = ("tunesmith", "tunesmith_fp32_base", "tunesmith_full_logits", "tunesmith_checkpointing", "trainer_peft")
LORA = {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}


def recipe_dict(model: str, steps: int, out: Path, block: int = 256, loss_chunk: int = 256,
                frozen_precision: str = "auto", checkpointing: bool = False) -> dict:
    return {
        "model": model, "task": "causal_lm",
        "data": {"train": str(REPO / "data" / "tiny_shakespeare" / "input.txt"), "validation": {"split": 0.02}},
        "lm": {"text_unit": "paragraph", "validation_by": "tail", "block_size": block, "sample_prompts": [],
               "loss_chunk": loss_chunk},
        "method": {"name": "lora", **LORA, "frozen_precision": frozen_precision,
                   "gradient_checkpointing": checkpointing},
        "train": {"epochs": 1, "max_steps": steps, "batch_size": 4, "eval_batch_size": 8, "lr": 2e-4,
                  "schedule": "linear", "warmup": 0.0, "max_length": block, "eval_every": steps, "log_every": 5,
                  "early_stopping": {"metric": "loss"}, "seed": 0, "weight_decay": 0.0},
        "output": str(out),
    }


def run_tunesmith(model: str, steps: int, out: Path, block: int, loss_chunk: int = 256,
                  frozen_precision: str = "auto", checkpointing: bool = False) -> dict:
    from tunesmith.config.recipe import validate_recipe
    from tunesmith.recipes.finetune import finetune

    raw = recipe_dict(model, steps, out, block, loss_chunk, frozen_precision, checkpointing)
    result = finetune(validate_recipe(raw), echo=lambda *a: None)
    timing = result["timing"]
    return {"train_s": timing["train_s"], "tokens": timing["tokens"], "padded_tokens": timing["padded_tokens"],
            "val_loss": result["validation"]["loss"], "precision": result["environment"]["precision"]}


def run_trainer(model_name: str, steps: int, out: Path, block: int) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments

    from tunesmith.models import resolve_model
    from tunesmith.config.recipe import validate_recipe
    from tunesmith.tasks import make_task
    from tunesmith.train.precision import auto_uses_bf16, make_accelerator

    task = make_task(validate_recipe(recipe_dict(model_name, steps, out, block)))
    splits = task.load_data()
    model, tokenizer = task.load_model(resolve_model(model_name))
    train_ds, valid_ds = task.encode(splits.train, tokenizer), task.encode(splits.validation, tokenizer)
    collate = task.make_loader(train_ds, tokenizer, batch_size=4, order="sequential").collate_fn  # labels as ours
    train, valid = [[dict(ds[i]) for i in range(len(ds))] for ds in (train_ds, valid_ds)]
    torch.manual_seed(0)
    model = get_peft_model(model, LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                                             target_modules=LORA["target_modules"], task_type="CAUSAL_LM"))
    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=4, per_device_eval_batch_size=8, learning_rate=2e-4,
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
    loader = accelerator.prepare(task.make_loader(valid_ds, tokenizer, batch_size=8, order="by_length"))
    val_loss = task.evaluate(trained, loader, accelerator, desc="validation")["loss"]
    return {"train_s": output.metrics["train_runtime"], "tokens": tokens, "padded_tokens": tokens,
            "val_loss": val_loss, "precision": "bf16" if args.bf16 else "fp32"}


def contender_main(args) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    from tunesmith.models import resolve_model

    out = Path(tempfile.mkdtemp(prefix=f"bench-lm-{args.contender}-"))
    if args.contender == "trainer_peft":
        result = run_trainer(args.model, args.steps, out, args.block_size)
    else:  # tunesmith_full_logits: lm.loss_chunk 0, the model's own loss (what tunesmith did before chunking);
        # tunesmith_fp32_base: method.frozen_precision fp32 (the frozen base kept in fp32, as before)
        result = run_tunesmith(args.model, args.steps, out, args.block_size,
                               loss_chunk=0 if args.contender == "tunesmith_full_logits" else 256,
                               frozen_precision="fp32" if args.contender == "tunesmith_fp32_base" else "auto",
                               checkpointing=args.contender == "tunesmith_checkpointing")
    config = AutoConfig.from_pretrained(resolve_model(args.model))
    with __import__("torch").device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    # LoRA still runs the full forward and the backward through activations: ~6 x params x tokens bounds it
    flops = training_flops(model, result["padded_tokens"])
    result.update({"contender": args.contender, "peak_rss_mb": round(peak_rss_mb(), 1),
                   "tokens_per_s": round(result["tokens"] / result["train_s"], 1),
                   "achieved_flops_fraction": round(flops / result["train_s"] / gemm_peak_flops(), 4)})
    emit(result)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contender", choices=CONTENDERS)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.contender:
        return contender_main(args)
    steps = 6 if args.quick else args.steps
    results = {c: run_contender(Path(__file__), ["--contender", c, "--model", args.model, "--steps", str(steps),
                                                      "--block-size", str(args.block_size)])
               for c in CONTENDERS}
    for result in results.values():
        print(json.dumps(result), flush=True)
    ours, peer = results["tunesmith"], results["trainer_peft"]
    unchunked, fp32_base = results["tunesmith_full_logits"], results["tunesmith_fp32_base"]
    summary = {"steps": steps, "tokens_per_s_ratio": round(ours["tokens_per_s"] / peer["tokens_per_s"], 2),
               "peak_rss_ratio": round(ours["peak_rss_mb"] / peer["peak_rss_mb"], 2),
               "val_loss_relative_delta": round((ours["val_loss"] - peer["val_loss"]) / peer["val_loss"], 5),
               "chunked_vs_full_logits": {
                   "tokens_per_s_ratio": round(ours["tokens_per_s"] / unchunked["tokens_per_s"], 2),
                   "peak_rss_mb_saved": round(unchunked["peak_rss_mb"] - ours["peak_rss_mb"], 1)},
               "bf16_vs_fp32_base": {
                   "tokens_per_s_ratio": round(ours["tokens_per_s"] / fp32_base["tokens_per_s"], 2),
                   "peak_rss_mb_saved": round(fp32_base["peak_rss_mb"] - ours["peak_rss_mb"], 1)},
               "checkpointing_vs_trainer_peft": {
                   "tokens_per_s_ratio": round(results["tunesmith_checkpointing"]["tokens_per_s"] / peer["tokens_per_s"], 2),
                   "peak_rss_ratio": round(results["tunesmith_checkpointing"]["peak_rss_mb"] / peer["peak_rss_mb"], 2)}}
    summary["targets"] = {  # issue 18: >= 1.4x Trainer + PEFT tokens/s, <= 0.6x its peak RSS, loss within 0.5%
        "tokens/s >= 1.4x Trainer+PEFT": "met" if summary["tokens_per_s_ratio"] >= 1.4 else "missed",
        "peak RSS <= 0.6x Trainer+PEFT": "met" if summary["peak_rss_ratio"] <= 0.6 else "missed",
        "validation loss within 0.5%": "met" if abs(summary["val_loss_relative_delta"]) <= 0.005 else "missed"}
    print(json.dumps(summary), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"results": results, **summary}, indent=2))


if __name__ == "__main__":
    main()
