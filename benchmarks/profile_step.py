"""Where a training step's time goes: MiniLM on SST-2 batches, as tunesmith trains it, under torch.profiler.

The same batches tunesmith's loop sees (length-grouped, dynamic padding, batch 32), the same optimizer
(AdamW, fused kernel) and precision (`precision: auto` through Accelerate); after a few warm-up steps,
`--steps` steps are profiled and the CPU time of the top-level operators is summed by kind.

    python benchmarks/profile_step.py                    # 30 profiled steps; needs ../shared/data/sst2
    python benchmarks/profile_step.py --precision fp32

Prints a markdown table (kind, ms per step, share) and the top operators.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import sst2_subset  # noqa: E402

KINDS = [  # first match wins, on the operator name
    ("matmul (linear layers, attention scores)", ("addmm", "aten::mm", "bmm", "matmul", "linear", "baddbmm")),
    ("attention kernel (SDPA)", ("scaled_dot_product", "flash_attention", "_efficient_attention")),
    ("optimizer step (fused AdamW)", ("_fused_adamw", "adamw", "Optimizer.step")),
    ("gradient clipping (norms)", ("norm", "clip_grad", "_foreach_mul")),
    ("embedding lookup and its gradient", ("embedding",)),
    ("layer norm", ("layer_norm",)),
    ("RMSNorm (pow, mean, rsqrt)", ("rms_norm", "rsqrt", "aten::pow", "aten::mean")),
    ("SiLU (SwiGLU)", ("silu",)),
    ("loss (log-softmax, NLL)", ("cross_entropy", "nll_loss", "log_softmax")),
    ("GELU, dropout, softmax, adds (elementwise)", ("gelu", "dropout", "softmax", "add", "mul", "div", "tanh",
                                                     "where", "masked_fill", "bernoulli")),
    ("dtype casts (bf16 autocast)", ("aten::to", "_to_copy", "copy_")),
    ("zeroing gradients, allocation", ("zero_", "fill_", "empty", "zeros")),
]


def kind_of(name: str) -> str:
    lowered = name.lower()
    for kind, keys in KINDS:
        if any(key.lower() in lowered for key in keys):
            return kind
    return "other"


def kind_table(events, steps: int, cuda: bool) -> tuple[list, list, float]:
    """(kinds by ms per step, largest first; operators by self ms per step, largest first; total ms per step).
    The self time of every operator (no double counting of nested calls), summed by kind: CPU time on a CPU, GPU
    kernel time on a GPU (the CPU side there is launch overhead)."""
    by_kind: dict[str, float] = defaultdict(float)
    top = []
    for event in events:
        self_us = event.self_device_time_total if cuda else event.self_cpu_time_total
        self_ms = self_us / 1000 / steps
        by_kind[kind_of(event.key)] += self_ms
        top.append((self_ms, event.key))
    return sorted(by_kind.items(), key=lambda kv: -kv[1]), sorted(top, reverse=True), sum(by_kind.values())


def main() -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from tunesmith.data.encode import encode_texts, make_loader
    from tunesmith.models import load_for_classification, resolve_model
    from tunesmith.config.recipe import TrainSpec
    from tunesmith.train.optim import build_optimizer
    from tunesmith.train.precision import make_accelerator

    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--model", default="minilm", help="packaged name or local directory")
    parser.add_argument("--train", type=Path, help="an SST-2 TSV (default: the 8,000-row subset of ../shared)")
    args = parser.parse_args()

    import pandas as pd

    train = args.train or sst2_subset(Path(tempfile.mkdtemp(prefix="profile-data-")), 8000)[0]
    frame = pd.read_csv(train, sep="\t", quoting=3)
    model, tokenizer = load_for_classification(resolve_model(args.model), num_labels=2, id2label={0: "0", 1: "1"},
                                               label2id={"0": 0, "1": 1})
    dataset = encode_texts(tokenizer, frame["sentence"].tolist(), max_length=128, labels=frame["label"].tolist())
    loader = make_loader(dataset, tokenizer, batch_size=32, order="grouped", seed=0)
    settings = TrainSpec(lr=5e-5, weight_decay=0.01, precision=args.precision)
    optimizer = build_optimizer(model, settings)
    accelerator = make_accelerator(settings.precision)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    model.train()
    batches = iter(loader)

    def step():
        batch = next(batches)
        loss = model(**batch).loss
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return batch["input_ids"].shape

    for _ in range(args.warmup):
        step()
    shapes = []
    cuda = torch.cuda.is_available()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            shapes.append(step())
        if cuda:
            torch.cuda.synchronize()
    rows, top, total = kind_table(prof.key_averages(), args.steps, cuda)
    mean_len = sum(s[1] for s in shapes) / len(shapes)
    print(f"precision {accelerator.mixed_precision}, {args.steps} steps, batch 32 x {mean_len:.1f} tokens on "
          f"average, {'GPU kernel' if cuda else f'{torch.get_num_threads()} threads, CPU'} time: {total:.1f} ms of "
          f"operator time per step\n")
    print("| where | ms per step | share |\n|---|---|---|")
    for kind, ms in rows:
        print(f"| {kind} | {ms:.1f} | {100 * ms / total:.0f}% |")
    print("\ntop operators (self ms per step):")
    for ms, name in top[:15]:
        print(f"  {ms:7.2f}  {name}")
    if args.json:
        args.json.write_text(json.dumps({"precision": accelerator.mixed_precision, "steps": args.steps,
                                         "mean_tokens_per_row": mean_len, "ms_per_step": total,
                                         "by_kind": dict(rows), "top": top[:25]}, indent=2))


if __name__ == "__main__":
    main()
