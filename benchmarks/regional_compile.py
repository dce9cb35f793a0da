"""Regional compilation (`method.compile: regional`) against eager: SmolLM2-135M + LoRA (r 8, alpha 16, dropout
0.05, q_proj/v_proj) on Tiny Shakespeare, causal_lm, packed 256-token blocks, batch 4: does the compile pay, and
after how many steps?

Contenders, each in its own process (clean timings and peak memory):
- eager: `method.compile: none`;
- regional: `method.compile: regional` with an empty Inductor cache (TORCHINDUCTOR_CACHE_DIR, a fresh directory):
  the first compiled run on a machine;
- regional_warm: the same again on the cache `regional` filled: any later run of the same model and shapes.

Per contender: the first step's seconds (compilation included: tunesmith compiles the forward and the backward in
the first training forward), the steady step (median of the steps after the first two), steady tokens/s, the
whole process's wall seconds (imports, data, preflight, training, evaluation, saving) and the validation loss.
Then, for each compiled contender against eager:
- compile_s: the first step's extra seconds (its first step minus eager's first step);
- break_even_steps: compile_s / (eager steady step - compiled steady step), the run length in steps from which the
  compiled run has trained faster; break_even_wall_steps the same from the whole processes' fixed costs
  (wall seconds minus steps x steady step, compiled minus eager);
- pays_within_minutes: break-even measured in minutes of eager training; issue 18 keeps the compile where a run
  of a few minutes (`--few-minutes`, 5) wins.

    python benchmarks/regional_compile.py                  # 100 steps of 4 x 256 tokens a contender
    python benchmarks/regional_compile.py --steps 300 --json benchmarks/results_cpu_regional_compile.json
    python benchmarks/regional_compile.py --quick          # 3 steps: a smoke run, its timings mean nothing

Run it alone on the machine: anything else running moves both the compile time and the steps.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from causal_speed import recipe_dict as lora_recipe  # noqa: E402
from common import emit, peak_rss_mb, run_contender  # noqa: E402

CONTENDERS = ("eager", "regional", "regional_warm")
STEADY_SKIP = 2  # steps left out of the steady step: the first compiles, the second may recompile (a new shape)


def recipe_dict(model: str, steps: int, out: Path, compile_mode: str, block: int = 256, batch_size: int = 4) -> dict:
    """causal_speed.py's LoRA recipe with `method.compile`, a log record every step, no baselines or report."""
    raw = lora_recipe(model, steps, out, block, batch_size=batch_size)
    raw["method"]["compile"] = compile_mode
    raw["train"]["log_every"] = 1
    return {**raw, "report": {"html": False}, "baselines": False}


def step_seconds(run: Path) -> list[float]:
    """Each optimizer step's seconds, from RUN/metrics.jsonl (log_every 1: one record a step)."""
    elapsed = [record["elapsed_s"] for record in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
               if record.get("type") == "train"]
    return [b - a for a, b in zip([0.0, *elapsed], elapsed)]


def contender_main(args) -> None:
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = args.cache_dir  # before torch is imported
    import torch
    from torch._dynamo.utils import counters

    from tunesmith.config.recipe import validate_recipe
    from tunesmith.recipes.finetune import finetune

    out = Path(tempfile.mkdtemp(prefix=f"bench-compile-{args.contender}-"))
    compile_mode = "none" if args.contender == "eager" else "regional"
    raw = recipe_dict(args.model, args.steps, out, compile_mode, args.block_size, args.batch_size)
    result = finetune(validate_recipe(raw), echo=lambda *a: None)
    steps = step_seconds(out)
    shutil.rmtree(out, ignore_errors=True)  # a run directory of smollm2 is ~0.5 GB
    steady = statistics.median(steps[STEADY_SKIP:] or steps[-1:])
    tokens_per_step = result["timing"]["tokens"] / max(len(steps), 1)
    emit({"contender": args.contender, "steps": len(steps), "first_step_s": round(steps[0], 3),
          "steady_step_s": round(steady, 4), "steady_tokens_per_s": round(tokens_per_step / steady, 1),
          "train_s": result["timing"]["train_s"], "eval_s": result["timing"]["eval_s"],
          "val_loss": result["validation"]["loss"], "precision": result["environment"]["precision"],
          "device": result["environment"]["device"], "threads": torch.get_num_threads(),
          "graphs_compiled": int(counters["stats"]["unique_graphs"]), "peak_rss_mb": round(peak_rss_mb(), 1)})


def versus_eager(compiled: dict, eager: dict, steps: int, few_minutes: float) -> dict:
    """What the compile costs against eager, and from how many steps it pays (None: it never does)."""
    compile_s = compiled["first_step_s"] - eager["first_step_s"]
    saving = eager["steady_step_s"] - compiled["steady_step_s"]
    fixed = ((compiled["wall_s"] - steps * compiled["steady_step_s"])
             - (eager["wall_s"] - steps * eager["steady_step_s"]))
    break_even = compile_s / saving if saving > 0 else None
    break_even_wall = fixed / saving if saving > 0 else None
    minutes = break_even_wall * eager["steady_step_s"] / 60 if break_even_wall is not None else None
    return {"compile_s": round(compile_s, 2),
            "steady_speedup": round(eager["steady_step_s"] / compiled["steady_step_s"], 3),
            "step_s_saved": round(saving, 4), "fixed_cost_s": round(fixed, 2),
            "break_even_steps": None if break_even is None else round(max(break_even, 0.0), 1),
            "break_even_wall_steps": None if break_even_wall is None else round(max(break_even_wall, 0.0), 1),
            "pays_within_minutes": None if minutes is None else round(max(minutes, 0.0), 2),
            f"pays in a run of {few_minutes:g} minutes": minutes is not None and minutes <= few_minutes,
            "wall_s_ratio_at_these_steps": round(compiled["wall_s"] / eager["wall_s"], 3),
            "val_loss_relative_delta": round((compiled["val_loss"] - eager["val_loss"]) / eager["val_loss"], 5)}


def run_all(args, steps: int) -> dict:
    shared = ["--model", args.model, "--steps", str(steps), "--block-size", str(args.block_size),
              "--batch-size", str(args.batch_size)]
    caches = {"eager": tempfile.mkdtemp(prefix="inductor-eager-")}
    caches["regional"] = caches["regional_warm"] = tempfile.mkdtemp(prefix="inductor-regional-")  # warm: reused
    results = {}
    for contender in CONTENDERS:
        started = time.perf_counter()
        result = run_contender(Path(__file__), ["--contender", contender, "--cache-dir", caches[contender], *shared])
        result["wall_s"] = round(time.perf_counter() - started, 2)  # the whole process, interpreter start included
        results[contender] = result
        print(json.dumps(result), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contender", choices=CONTENDERS)
    parser.add_argument("--cache-dir")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--few-minutes", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.contender:
        return contender_main(args)
    steps = 3 if args.quick else args.steps
    results = run_all(args, steps)
    summary = {"steps": steps, "quick": args.quick,
               **{name: versus_eager(results[name], results["eager"], steps, args.few_minutes)
                  for name in CONTENDERS if name != "eager"}}
    if args.quick:
        summary["note"] = "a --quick smoke run: too few steps for the timings to mean anything"
    print(json.dumps(summary), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"results": results, **summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
