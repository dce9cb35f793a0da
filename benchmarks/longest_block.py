"""The longest block that trains in 4 GiB of RSS: smollm2 + LoRA, tunesmith vs Trainer + PEFT (issue 18).

Each contender of benchmarks/causal_speed.py (same recipe: LoRA r 8 on q_proj/v_proj, Tiny Shakespeare packed
into blocks) runs in its own process at batch 1 for 2 optimizer steps, at blocks of 512, 1024, 2048, 4096 and 8192
tokens (SmolLM2's context is 8192), and its whole-process peak RSS is recorded (model load, preflight, training,
evaluation and saving included for tunesmith; training and the same evaluation for the Trainer). A contender
stops at the first block over the limit: the peak grows with the block. Memory only, no timing: it may run beside
other work.

    python benchmarks/longest_block.py --json benchmarks/results_cpu_longest_block.json
    python benchmarks/longest_block.py --limit-mb 3072 --contenders tunesmith trainer_peft
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_contender  # noqa: E402

SCRIPT = Path(__file__).resolve().parent / "causal_speed.py"
BLOCKS = (512, 1024, 2048, 4096, 8192)


def peaks_of(contender: str, blocks: tuple[int, ...], limit_mb: float, steps: int) -> dict:
    """{block: peak RSS MB} up to and including the first block over `limit_mb`; the longest one within it."""
    peaks: dict[int, float] = {}
    for block in blocks:
        result = run_contender(SCRIPT, ["--contender", contender, "--method", "lora", "--steps", str(steps),
                                        "--block-size", str(block), "--batch-size", "1"])
        peaks[block] = result["peak_rss_mb"]
        print(json.dumps({"contender": contender, "block": block, "peak_rss_mb": peaks[block],
                          "tokens_per_s": result["tokens_per_s"], "val_loss": result["val_loss"]}), flush=True)
        if peaks[block] > limit_mb:
            break
    within = [block for block, peak in peaks.items() if peak <= limit_mb]
    return {"peak_rss_mb": peaks, "longest_block": max(within) if within else None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contenders", nargs="+", default=["tunesmith", "tunesmith_checkpointing", "trainer_peft"])
    parser.add_argument("--limit-mb", type=float, default=4096.0)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = {c: peaks_of(c, BLOCKS, args.limit_mb, args.steps) for c in args.contenders}
    summary = {"limit_mb": args.limit_mb, "steps": args.steps, "batch_size": 1,
               "longest_block": {c: r["longest_block"] for c, r in results.items()}}
    print(json.dumps(summary), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"results": results, **summary}, indent=2))


if __name__ == "__main__":
    main()
