"""DPO with LoRA on HH-RLHF (harmless-base test): tunesmith's task dpo vs TRL's DPOTrainer + PEFT.

Same model (smollm2, the packaged SmolLM2-135M-Instruct), same LoRA (r 8, alpha 16, dropout 0 -- TRL turns
every dropout off anyway -- on q_proj,v_proj), same optimizer settings (AdamW, lr, linear schedule, no warmup,
weight decay, grad-norm clip 1), batch size in pairs, beta, steps, seed and max_length; bf16 autocast for
both where `precision: auto` would use it (train/precision.py). The reference is the base model with the
adapter switched off, in both.

The harness writes the seeded split once (WORKDIR/train.jsonl, validation.jsonl: HH rows unchanged) and both
contenders read those files. TRL gets pre-tokenized pairs from benchmarks/preference_pairs.py (the chat
template, truncation keeping the reply) through its own DataCollatorForPreference and loss code: a DPOTrainer
subclass only skips TRL's text tokenization for data that already has prompt_ids (TRL 1.16 always tokenizes
text and only truncates keep_start, which cuts the reply). tunesmith tokenizes the same rows with its data
layer. Each contender trains in its own process (clean peak RSS, taken right after training) and saves its
adapter; a third process scores the held-out pairs before (an untrained adapter: the base) and after, for
both, with the same code (preference_pairs.score_pairs: tunesmith.evaluation.preference, fp32). tunesmith_packed is
tunesmith with `lm.packing: true`: each batch's sequences end to end in one row, no padding (issue 18).

    python benchmarks/hh_dpo.py --json results.json       # 100 steps of 4 pairs, 200 held-out pairs
    python benchmarks/hh_dpo.py --quick                   # smoke run: 3 steps, ~40 pairs
    python benchmarks/hh_dpo.py --contenders trl          # one contender only

Reported per contender: train_s (trainer.train / tunesmith's timing, evaluation excluded), tokens_per_s
(non-pad tokens of both sides of the pairs trained on), peak_rss_mb, held-out reward accuracy / margin / loss
before and after (and the model's own log-prob preference, logp_accuracy).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, peak_rss_mb, require_shared, run_contender  # noqa: E402
from preference_pairs import encode_pairs, read_jsonl, score_pairs, split_pairs  # noqa: E402

CONTENDERS = ("tunesmith", "tunesmith_packed", "trl")  # tunesmith_packed: lm.packing (padding-free)
SOURCE = "hh_rlhf_harmless/harmless-base-test.jsonl.gz"


def tunesmith_recipe(args, out: Path, train_pairs: int, packing: bool = False) -> dict:
    """Task dpo with the same budget. epochs: enough for max_steps (TRL's max_steps runs past epoch ends); one
    validation only, at the last step, so RUN/adapter (the best evaluation's) is the final adapter, as TRL's."""
    workdir = Path(args.workdir)
    epochs = max(1, math.ceil(args.steps * args.batch_size / max(train_pairs, 1)))
    return {
        "model": args.model, "task": "dpo",
        "data": {"train": str(workdir / "train.jsonl"), "validation": str(workdir / "validation.jsonl"),
                 "columns": {"chosen": "chosen", "rejected": "rejected"}},
        "method": {"name": "lora", "r": args.lora_r, "alpha": args.lora_alpha, "dropout": 0.0,
                   "target_modules": args.lora_targets.split(",")},
        "preference": {"loss": "sigmoid", "beta": args.beta, "reference": "live"},
        "train": {"epochs": epochs, "max_steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
                  "schedule": "linear", "warmup": 0.0, "weight_decay": args.weight_decay, "max_length": args.max_length,
                  "grad_accumulation": 1, "max_grad_norm": 1.0, "precision": "auto", "seed": args.seed,
                  "eval_every": args.steps, "group_by_length": False},
        "lm": {"packing": packing},
        "report": {"html": False},
        "output": str(out),
    }


def run_tunesmith(args, out: Path, packing: bool = False) -> dict:
    from tunesmith.config.recipe import validate_recipe
    from tunesmith.recipes.finetune import finetune
    from tunesmith.tasks import TASKS

    if "dpo" not in TASKS:
        return {"skipped": "task dpo is not registered on this branch yet (tasks/dpo.py: git merge main)"}
    train_pairs = len(read_jsonl(Path(args.workdir) / "train.jsonl"))
    result = finetune(validate_recipe(tunesmith_recipe(args, out, train_pairs, packing)), echo=lambda *a: None)
    timing = result["timing"]
    return {"train_s": timing["train_s"], "tokens": timing["tokens"], "padded_tokens": timing["padded_tokens"],
            "adapter": str(out / "adapter"),
            "precision": result["environment"]["precision"]}


def trl_trainer_class():
    """DPOTrainer that takes already tokenized pairs (prompt_ids, chosen_ids, rejected_ids) as they are."""
    from trl import DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            if "prompt_ids" in dataset.column_names:
                return dataset
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

    return PretokenizedDPOTrainer


def run_trl(args, out: Path) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig

    from tunesmith.models import load_for_causal_lm, resolve_model
    from tunesmith.train.precision import auto_uses_bf16

    model, tokenizer = load_for_causal_lm(resolve_model(args.model))
    pairs, _ = encode_pairs(tokenizer, read_jsonl(Path(args.workdir) / "train.jsonl"), args.max_length)
    config = DPOConfig(
        output_dir=str(out), loss_type=["sigmoid"], beta=args.beta, max_length=None,  # pairs already fit
        precompute_ref_log_probs=False, learning_rate=args.lr, lr_scheduler_type="linear", warmup_steps=0,
        weight_decay=args.weight_decay, max_grad_norm=1.0, per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=1, max_steps=args.steps, seed=args.seed, bf16=auto_uses_bf16(),
        use_cpu=not torch.cuda.is_available(), gradient_checkpointing=False, report_to="none",
        save_strategy="no", logging_strategy="no", eval_strategy="no", disable_tqdm=True,
        dataloader_num_workers=0, include_num_input_tokens_seen="non_padding")
    lora = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=0.0,
                      target_modules=args.lora_targets.split(","), task_type="CAUSAL_LM")
    trainer = trl_trainer_class()(model=model, args=config, train_dataset=Dataset.from_list(pairs),
                                  processing_class=tokenizer, peft_config=lora)
    output = trainer.train()
    trainer.model.save_pretrained(out / "adapter")
    return {"train_s": output.metrics["train_runtime"], "tokens": int(trainer.state.num_input_tokens_seen),
            "adapter": str(out / "adapter"), "precision": "bf16" if config.bf16 else "fp32"}


def contender_main(args) -> None:
    out = Path(tempfile.mkdtemp(prefix=f"bench-dpo-{args.contender}-"))
    if args.contender.startswith("tunesmith"):
        result = run_tunesmith(args, out, packing=args.contender == "tunesmith_packed")
    else:
        result = run_trl(args, out)
    result.update({"contender": args.contender, "peak_rss_mb": round(peak_rss_mb(), 1)})  # before any scoring
    if "train_s" in result:
        result["tokens_per_s"] = round(result["tokens"] / result["train_s"], 1)
    else:
        shutil.rmtree(out, ignore_errors=True)
    emit(result)


def evaluate_main(args) -> None:
    """Held-out metrics: an untrained adapter (= the base: 'before'), then each trained adapter ('after')."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    from tunesmith.models import load_for_causal_lm, resolve_model

    base_dir = resolve_model(args.model)
    model, tokenizer = load_for_causal_lm(base_dir)
    pairs, left_out = encode_pairs(tokenizer, read_jsonl(Path(args.workdir) / "validation.jsonl"), args.max_length)
    torch.manual_seed(args.seed)
    fresh = get_peft_model(model, LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha,
                                             target_modules=args.lora_targets.split(","), task_type="CAUSAL_LM"))
    scores = {"before": score_pairs(fresh, pairs, tokenizer.pad_token_id, args.beta), "left_out": left_out}
    for name, adapter in zip(args.names.split(","), args.adapters.split(",")):
        trained = PeftModel.from_pretrained(load_for_causal_lm(base_dir)[0], adapter)
        scores[name] = score_pairs(trained, pairs, tokenizer.pad_token_id, args.beta)
    emit(scores)


def pass_through(args) -> list[str]:
    names = ("model", "workdir", "steps", "batch_size", "max_length", "lr", "beta", "weight_decay", "seed",
             "lora_r", "lora_alpha", "lora_targets")
    return [item for name in names for item in (f"--{name.replace('_', '-')}", str(getattr(args, name)))]


def table(results: dict, steps: int) -> str:
    lines = [f"DPO, {steps} steps: held-out reward accuracy / margin / loss before -> after",
             "| contender | train s | tokens/s | peak RSS MB | accuracy | margin | loss |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        if "skipped" in r:
            lines.append(f"| {name} | skipped: {r['skipped']} | | | | | |")
            continue
        b, a = r["before"], r["after"]
        lines.append(f"| {name} | {r['train_s']:.1f} | {r['tokens_per_s']:.0f} | {r['peak_rss_mb']:.0f} | "
                     f"{b['reward_accuracy']:.3f} -> {a['reward_accuracy']:.3f} | "
                     f"{b['reward_margin']:.4f} -> {a['reward_margin']:.4f} | {b['loss']:.4f} -> {a['loss']:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contender", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--evaluate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--names", help=argparse.SUPPRESS)
    parser.add_argument("--adapters", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated: tunesmith,tunesmith_packed,trl")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=4, help="pairs per step")
    parser.add_argument("--max-length", type=int, default=256, help="prompt + reply tokens per sequence")
    parser.add_argument("--validation-pairs", type=int, default=200)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--lora-alpha", type=float, default=16)
    parser.add_argument("--lora-targets", default="q_proj,v_proj")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 steps of 2 pairs, 30 train / 10 held out")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.contender:
        return contender_main(args)
    if args.evaluate:
        return evaluate_main(args)
    run_benchmark(args)


def run_benchmark(args) -> None:
    contenders = [c for c in args.contenders.split(",") if c]
    unknown = set(contenders) - set(CONTENDERS)
    if unknown:
        sys.exit(f"unknown contender {sorted(unknown)[0]}; choose from {', '.join(CONTENDERS)}")
    if args.quick:
        args.steps, args.batch_size, args.validation_pairs, args.max_length = 3, 2, 10, min(args.max_length, 128)
    args.workdir = tempfile.mkdtemp(prefix="bench-dpo-data-")
    split_pairs(require_shared(SOURCE), Path(args.workdir), args.validation_pairs,
                train_limit=30 if args.quick else None, seed=args.seed)
    script = Path(__file__)
    results = {c: run_contender(script, ["--contender", c, *pass_through(args)]) for c in contenders}
    trained = {c: r for c, r in results.items() if "adapter" in r}
    if trained:
        scores = run_contender(script, ["--evaluate", "--names", ",".join(trained),
                                        "--adapters", ",".join(r["adapter"] for r in trained.values()),
                                        *pass_through(args)])
        for name, result in trained.items():
            result.update({"before": scores["before"], "after": scores[name],
                           "validation_pairs": scores["before"]["pairs"], "validation_left_out": scores["left_out"]})
    settings = {k: getattr(args, k) for k in ("model", "steps", "batch_size", "max_length", "validation_pairs",
                                              "lr", "beta", "weight_decay", "seed", "lora_r", "lora_alpha",
                                              "lora_targets", "quick")}
    for result in trained.values():  # the adapters were scored: drop them and the split files
        shutil.rmtree(Path(result["adapter"]).parent, ignore_errors=True)
    shutil.rmtree(args.workdir, ignore_errors=True)
    print(table(results, args.steps), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"settings": settings, "results": results}, indent=2))


if __name__ == "__main__":
    main()
