"""Re-evaluate an export against the unquantised model: metrics on the run's validation set, size on disk,
latency per example at batch 1 and throughput at batch 32; the --max-drop gate; the console table.

Both models are measured the same way, one after the other, on the CPU (exports target CPUs and edge
devices), with torch and onnxruntime each using `torch.get_num_threads()` threads, on the same tokenized
examples. Latency: the first `latency_examples` validation rows one at a time (after 3 warm-up calls),
median and mean milliseconds. Throughput: up to `throughput_examples` rows in batches of 32 in file order
(padding per batch), examples per second; the logits of that pass also give the agreement of predictions
and the largest logit difference with the reference.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from tunesmith.data.encode import EncodedDataset

LATENCY_EXAMPLES = 64
THROUGHPUT_EXAMPLES = 1024
THROUGHPUT_BATCH = 32


class _OnCPU:
    """What task.evaluate needs from an Accelerator, for a plain single-process CPU evaluation."""

    device = torch.device("cpu")
    is_local_main_process = True
    is_main_process = True
    num_processes = 1

    @staticmethod
    def gather_for_metrics(value):
        return value


@torch.no_grad()
def measure(model, task, dataset: EncodedDataset, tokenizer, *, eval_batch: int = 64,
            latency_examples: int = LATENCY_EXAMPLES, throughput_examples: int = THROUGHPUT_EXAMPLES) -> dict:
    """Metrics (as the run's task computes them), latency, throughput and the logits of the throughput pass."""
    loader = task.make_loader(dataset, tokenizer, batch_size=eval_batch, order="by_length")
    metrics = task.evaluate(model, loader, _OnCPU(), desc="evaluate")
    model.eval()

    inputs = [{k: v for k, v in batch.items() if k != "labels"}
              for batch in task.make_loader(EncodedDataset(dataset.features[:latency_examples]), tokenizer,
                                            batch_size=1, order="sequential")]
    for batch in inputs[:3]:
        model(**batch)
    times = []
    for batch in inputs:
        start = time.perf_counter()
        model(**batch)
        times.append(time.perf_counter() - start)

    subset = EncodedDataset(dataset.features[:throughput_examples])
    batches = [{k: v for k, v in b.items() if k != "labels"}
               for b in task.make_loader(subset, tokenizer, batch_size=THROUGHPUT_BATCH, order="sequential")]
    model(**batches[0])  # warm-up
    logits = []
    start = time.perf_counter()
    for batch in batches:
        out = model(**batch).logits.float()
        if out.dim() == 3:  # token classification: one row per real (unpadded) token
            out = out[batch["attention_mask"].bool()]
        logits.append(out.cpu())
    seconds = time.perf_counter() - start
    return {
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        "latency_ms_b1": round(1000 * statistics.median(times), 3),
        "latency_ms_b1_mean": round(1000 * statistics.fmean(times), 3),
        "latency_examples": len(times),
        "throughput_b32": round(len(subset) / seconds, 1),
        "throughput_examples": len(subset),
        "logits": torch.cat(logits).numpy(),
    }


def compare(reference: dict, exported: dict, *, metric: str, mode: str, max_drop: float | None,
            decisions=lambda logits: logits.argmax(-1)) -> dict:
    """Deltas (export - reference) of every metric, the drop of the gated metric, and the verdict; the
    prediction agreement is the share of rows whose `decisions` (the task's: class, label set) are equal."""
    ref, exp = reference["metrics"], exported["metrics"]
    delta = {k: round(exp[k] - ref[k], 6) for k in ref if k in exp}
    drop = (ref[metric] - exp[metric]) if mode == "max" else (exp[metric] - ref[metric])
    a, b = reference["logits"], exported["logits"]
    return {
        "delta": delta,
        "drop": round(drop, 6),
        "max_drop": max_drop,
        "passed": max_drop is None or drop <= max_drop + 1e-12,
        "prediction_agreement": round(float(rows_equal(decisions(a), decisions(b)).mean()), 6),
        "max_abs_logit_diff": float(np.abs(a - b).max()),
    }


def rows_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row: every decision equal (a label set row counts once, not once per label)."""
    same = np.asarray(a) == np.asarray(b)
    return same.reshape(len(same), -1).all(axis=1)


def public(measured: dict) -> dict:
    return {k: v for k, v in measured.items() if k != "logits"}
