"""One MiniLM training step (forward, backward, clipping, fused AdamW) on a batch of 32 x L random tokens,
fp32 vs bf16 autocast: how `precision: auto` was chosen for CPUs with AVX512-BF16/AMX.

    python benchmarks/step_lengths.py            # median ms of 8 steps after 2 warm-up, L = 6 ... 60
"""

from __future__ import annotations

import time

import torch


def main() -> None:
    from tunesmith.models import load_for_classification, resolve_model

    torch.manual_seed(0)
    model, _ = load_for_classification(resolve_model("minilm"), num_labels=2, id2label={0: "0", 1: "1"},
                                       label2id={"0": 0, "1": 1})
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=True)
    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device_type).train()

    def median_ms(length: int, bf16: bool, steps: int = 10) -> float:
        ids = torch.randint(1000, 20000, (32, length), device=device_type)
        labels = torch.randint(0, 2, (32,), device=device_type)
        times = []
        for _ in range(steps):
            started = time.perf_counter()
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
                loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device_type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
        kept = sorted(times[2:])
        return 1000 * kept[len(kept) // 2]

    print("| L (tokens) | fp32 ms | bf16 autocast ms |\n|---|---|---|")
    for length in (6, 10, 14, 20, 28, 40, 60):
        print(f"| {length} | {median_ms(length, False):.0f} | {median_ms(length, True):.0f} |", flush=True)


if __name__ == "__main__":
    main()
