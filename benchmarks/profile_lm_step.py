"""Where a LoRA training step's time goes, before and after issue 18's changes, and the fraction of the GEMM peak.

SmolLM2-135M + LoRA (causal_speed.py's recipe: r 8 on q_proj/v_proj, packed 256-token Tiny Shakespeare blocks,
batch 4, precision auto), set up by tunesmith's own FineTune.setup (data, model, method, frozen base, preflight) and
stepped as its loop steps (forward_loss, backward_and_clip, the fused AdamW step). Variants:
- before: `method.frozen_precision: fp32` and `lm.loss_chunk: 0` - the fp32 frozen base re-cast by autocast at
  every forward, and the model's own loss over the full logits (what tunesmith did before issue 18);
- after: the defaults - the frozen base held in bf16 and the fused chunked loss (tasks/lm_loss.py).

Each variant: `--warmup` steps, then `--steps` steps timed (wall clock, no profiler), then `--steps` more under
torch.profiler, whose operators' self time is summed by kind (profile_step.py's table). The achieved fraction of
the GEMM peak is the matmul work of a LoRA step - 4 x (the weights, output projection included) FLOPs per token:
the forward, and the backward through the activations (the frozen weights get no gradient); attention and the
adapters' own small matmuls left out - per timed second, over the GEMM peak measured now in the training precision.

    python benchmarks/profile_lm_step.py --variant after
    python benchmarks/profile_lm_step.py --both --json benchmarks/results_cpu_profile_lm_step.json

Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from causal_speed import recipe_dict  # noqa: E402
from common import emit, gemm_peak_flops, run_contender  # noqa: E402
from profile_step import kind_table  # noqa: E402

VARIANTS = {"before": {"frozen_precision": "fp32", "loss_chunk": 0}, "after": {}}


def lora_step_flops(model, tokens: int) -> float:
    """4 x (every weight matrix's parameters, the output projection counted once even when tied) x tokens."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    output = inner.get_output_embeddings().weight
    weights = sum(p.numel() for name, p in inner.named_parameters()
                  if "embed" not in name and "lora_" not in name and p is not output)
    return 4.0 * (weights + output.numel()) * tokens


def profile_variant(args) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from tunesmith.config.recipe import validate_recipe
    from tunesmith.recipes.finetune import FineTune
    from tunesmith.train.loop import backward_and_clip, forward_loss

    steps = args.warmup + 2 * args.steps
    raw = recipe_dict(args.model, steps, Path(tempfile.mkdtemp(prefix="profile-lm-")), **VARIANTS[args.variant])
    run = FineTune(validate_recipe(raw), echo=lambda *a: None)
    run.setup()
    model, optimizer, accelerator, task = run.model, run.optimizer, run.accelerator, run.task
    batches = iter(run.loaders.train)
    model.train()

    def step() -> int:
        batch = next(batches)
        loss = forward_loss(accelerator, task.compute_loss, model, batch)
        backward_and_clip(accelerator, model, loss, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return int(batch["input_ids"].numel())

    for _ in range(args.warmup):
        step()
    started = time.perf_counter()
    tokens = sum(step() for _ in range(args.steps))
    step_s = (time.perf_counter() - started) / args.steps
    cuda = torch.cuda.is_available()
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        for _ in range(args.steps):
            step()
    rows, top, total = kind_table(prof.key_averages(), args.steps, cuda)
    peak = gemm_peak_flops()
    flops = lora_step_flops(accelerator.unwrap_model(model), tokens)
    return {"variant": args.variant, "precision": accelerator.mixed_precision, "bf16_base": run.bf16_base,
            "step_s": round(step_s, 4), "tokens_per_s": round(tokens / args.steps / step_s, 1),
            "profiled_ms_per_step": round(total, 1), "by_kind": rows, "top": top[:15],
            "gemm_peak_gflops": round(peak / 1e9, 1), "matmul_gflop_per_step": round(flops / args.steps / 1e9, 1),
            "achieved_gemm_fraction": round(flops / args.steps / step_s / peak, 3)}


def print_variant(result: dict) -> None:
    print(f"\n{result['variant']}: {result['tokens_per_s']} tokens/s, {result['step_s']} s a step, "
          f"{result['achieved_gemm_fraction']:.0%} of the {result['gemm_peak_gflops']} GFLOP/s GEMM peak "
          f"({result['matmul_gflop_per_step']} GFLOP of matmul a step); profiled operator time "
          f"{result['profiled_ms_per_step']} ms a step\n")
    print("| where | ms per step | share |\n|---|---|---|")
    for kind, ms in result["by_kind"]:
        print(f"| {kind} | {ms:.0f} | {100 * ms / result['profiled_ms_per_step']:.0f}% |")
    print("\ntop operators (self ms per step):")
    for ms, name in result["top"][:10]:
        print(f"  {ms:7.1f}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", choices=tuple(VARIANTS))
    parser.add_argument("--both", action="store_true", help="before and after, each in its own process")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.both:
        shared = ["--model", args.model, "--steps", str(args.steps), "--warmup", str(args.warmup)]
        results = [run_contender(Path(__file__), ["--variant", v, *shared]) for v in VARIANTS]
        for result in results:
            print_variant(result)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        return
    emit(profile_variant(args))


if __name__ == "__main__":
    main()
