"""The measurement behind `tunesmith plan` (runs in a fresh child process per method): a few real training
steps, evaluation batches and one save, with the run's own set-up and training step."""

from __future__ import annotations

import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save as to_bytes

from tunesmith.artifacts import RunDir
from tunesmith.data.doc_table import DocumentTable
from tunesmith.methods.measure import peak_memory
from tunesmith.recipes.finetune import prepare_data, prepare_model
from tunesmith.train.checkpoint_state import encode_tree, model_tensors
from tunesmith.train.loop import backward_and_clip, forward_loss
from tunesmith.train.optim import build_optimizer
from tunesmith.train.precision import evaluation_context, hold_frozen_weights, make_accelerator, prepare_for_training


def measure(recipe, steps: int) -> dict:
    """A few real training steps of recipe.method on the recipe's model and data; times and peak memory.
    The set-up (data, model, method) and the training step are the run's own (recipes/finetune.py,
    train/loop.py)."""
    settings = recipe.train
    task, splits = prepare_data(recipe, echo=lambda line: None)
    # causal_lm / sft splits are Arrow tables read as a stream: plan samples rows of them in memory
    frames = {name: frame.to_frame() if isinstance(frame, DocumentTable) else frame
              for name, frame in splits.frames().items()}
    started = time.perf_counter()
    model, tokenizer, method = prepare_model(recipe, task, echo=lambda line: None)
    accelerator = make_accelerator(settings.precision)
    optimizer = build_optimizer(model, settings)
    bf16_base = hold_frozen_weights(accelerator, model, recipe.method, echo=lambda line: None)
    model, optimizer = prepare_for_training(accelerator, model, optimizer, autocast_everywhere=bf16_base)  # as a run
    load_s = time.perf_counter() - started
    loader_for = task.make_loader
    rng = np.random.default_rng(settings.seed)
    size, eval_size = settings.batch_size, settings.eval_batch_size or 2 * settings.batch_size

    def encode(frame, rows, batch_size):
        """One device batch of `rows` of `frame`, padded as the run pads it; (batch, encoding seconds)."""
        t0 = time.perf_counter()
        dataset = task.encode(frame.iloc[np.sort(np.asarray(rows))], tokenizer)
        seconds = time.perf_counter() - t0
        batch = next(iter(loader_for(dataset, tokenizer, batch_size=batch_size, order="sequential")))
        return {k: v.to(accelerator.device) for k, v in batch.items()}, seconds

    # token length from character length, fitted on a tokenized sample of training rows; that sample also
    # gives the memory a run spends on keeping every tokenized row (Python lists, which tracemalloc sees)
    train, validation = frames["train"], frames["validation"]
    sample = np.sort(rng.choice(len(train), min(256, len(train)), replace=False))
    tracemalloc.start()
    kept = task.encode(train.iloc[sample], tokenizer)
    dataset_bytes_per_row = tracemalloc.get_traced_memory()[0] / max(len(sample), 1)
    tracemalloc.stop()
    to_tokens = _length_model(row_lengths(train)[sample], kept, task.max_length)  # at most the positions
    del kept

    # training batches drawn as the run's loader draws them (length-grouped megabatches, or shuffled)
    train_tokens = to_tokens(row_lengths(train))
    order = _sampler_order(train_tokens, size, settings.group_by_length, rng)
    epoch_batches = [order[i:i + size] for i in range(0, len(order), size)]
    full_batches = [b for b in epoch_batches if len(b) == size] or epoch_batches
    timed_rows = [full_batches[i] for i in rng.choice(len(full_batches), steps, replace=len(full_batches) < steps)]
    longest_rows = np.argsort(-train_tokens, kind="stable")[:size]  # the memory peak: the longest rows
    longest, _ = encode(train, longest_rows, size)
    timed, encode_s = zip(*(encode(train, rows, size) for rows in timed_rows))
    # evaluation batches: the run evaluates longest-first (by_length)
    val_tokens = to_tokens(row_lengths(validation))
    val_order = np.argsort(-val_tokens, kind="stable")
    val_batches = [val_order[i:i + eval_size] for i in range(0, len(val_order), eval_size)]
    eval_longest, _ = encode(validation, val_batches[0], eval_size)
    eval_timed = [encode(validation, val_batches[i], eval_size)[0]
                  for i in rng.choice(len(val_batches), min(2, len(val_batches)), replace=False)]

    def padded(batch) -> int:
        return int(batch["input_ids"].numel())

    def sync():
        if accelerator.device.type == "cuda":
            torch.cuda.synchronize()

    model.train()
    fb, opt = [], []
    for i, batch in enumerate([longest, *timed]):
        sync()
        t0 = time.perf_counter()
        loss = forward_loss(accelerator, task.compute_loss, model, batch)  # as the run's training step
        backward_and_clip(accelerator, model, loss, settings.max_grad_norm)
        sync()
        t1 = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        t2 = time.perf_counter()
        if i > 0:  # the first (longest) batch is the warm-up
            fb.append(t1 - t0)
            opt.append(t2 - t1)
        if not torch.isfinite(loss.detach()):
            raise RuntimeError(f"the loss became {loss.item()} while measuring")
    model.eval()
    eval_seconds = 0.0
    with torch.no_grad(), evaluation_context(accelerator, settings):  # in the run's evaluation precision
        model(**eval_longest)  # warm-up, and the evaluation's memory peak
        for batch in eval_timed:
            sync()
            t0 = time.perf_counter()
            model(**batch)
            sync()
            eval_seconds += time.perf_counter() - t0
    model.train()
    save_s, checkpoint_s = _save_like_a_run(model, optimizer, tokenizer, method, accelerator)
    memory = peak_memory(accelerator.device)
    peak_mb = memory.get("peak_gpu_mb", memory["peak_rss_mb"])

    def padded_tokens(tokens, batches) -> int:
        return int(sum(tokens[b].max() * len(b) for b in batches))

    test = frames.get("test")
    return {
        "device": str(accelerator.device), "threads": torch.get_num_threads(),
        "trainable_params": method.trainable, "total_params": method.total,
        "fb_s": float(np.mean(fb)), "optimizer_s": float(np.mean(opt)), "measured_steps": len(fb),
        "fb_s_all": [round(x, 4) for x in fb], "timed_padded_tokens": [padded(b) for b in timed],
        "epoch_padded_tokens": padded_tokens(train_tokens, epoch_batches), "epoch_batches": len(epoch_batches),
        "eval_s_per_token": eval_seconds / max(sum(padded(b) for b in eval_timed), 1),
        "validation_padded_tokens": padded_tokens(val_tokens, val_batches),
        "test_padded_tokens": 0 if test is None else padded_tokens(
            to_tokens(row_lengths(test)), [np.arange(i, min(i + eval_size, len(test)))
                                            for i in range(0, len(test), eval_size)]),
        "save_s": save_s, "checkpoint_s": checkpoint_s,
        "tokenize_s_per_row": float(np.sum(encode_s)) / (steps * size),
        "load_s": round(load_s, 2), "longest_batch_tokens": padded(longest),
        "peak_bytes": int(peak_mb * 2**20), "peak_kind": "gpu allocated" if "peak_gpu_mb" in memory else "rss",
        "peak_rss_mb": memory["peak_rss_mb"], "peak_gpu_mb": memory.get("peak_gpu_mb"),
        "dataset_bytes_per_row": round(dataset_bytes_per_row, 1),
    }


def _length_model(chars, encoded, max_length: int):
    """tokens ~ a * characters + b, least squares on a tokenized sample; clipped to [1, max_length]."""
    tokens = np.asarray(encoded.lengths()) if hasattr(encoded, "lengths") else None
    if tokens is None or len(tokens) != len(chars) or len(tokens) < 2 or np.ptp(chars) == 0:  # != : windows
        mean = float(tokens.mean()) if tokens is not None and len(tokens) else 1.0
        return lambda c: np.clip(np.full(len(c), round(mean)), 1, max_length).astype(np.int64)
    a, b = np.polyfit(chars, tokens, 1)
    return lambda c: np.clip(np.rint(a * np.asarray(c) + b), 1, max_length).astype(np.int64)


def _sampler_order(lengths, batch_size: int, grouped: bool, rng):
    """Rows of one epoch cut into the run's batches: length-grouped as data.encode.length_grouped_batches groups
    them (random megabatches of min(50, n // (4 * batch)) batches, each sorted longest first; the run then
    shuffles the batches, which does not change which rows share one) or a shuffle."""
    import numpy as np

    n = len(lengths)
    perm = rng.permutation(n)
    if not grouped:
        return perm
    mega = max(1, min(n // (batch_size * 4), 50)) * batch_size
    return np.concatenate([sorted(perm[i:i + mega], key=lambda r: -lengths[r]) for i in range(0, n, mega)])


def _save_like_a_run(model, optimizer, tokenizer, method, accelerator) -> tuple[float, float | None]:
    """Save the model as the run saves its best (LoRA: adapter + merged copy) and serialise a checkpoint
    (model + optimizer state, as train/checkpoint.py writes it): their memory counts in the peak; seconds."""
    unwrapped = accelerator.unwrap_model(model)
    with tempfile.TemporaryDirectory(prefix="tunesmith-plan-save-") as tmp:
        t0 = time.perf_counter()
        run = RunDir(Path(tmp) / "run")
        run.path.mkdir()
        method.save(unwrapped, tokenizer, run)
        save_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        tensors: dict = {}
        encode_tree(optimizer.state_dict(), tensors, "optimizer")
        for name, blob in (("model", to_bytes(model_tensors(unwrapped))), ("state", to_bytes(tensors))):
            (Path(tmp) / name).write_bytes(blob)
            del blob
        return save_s, time.perf_counter() - t0


def row_lengths(frame):
    text = [c for c in ("text", "text_pair") if c in frame.columns]
    columns = text or [c for c in frame.columns if frame[c].dtype == object]
    total = np.zeros(len(frame), dtype=np.int64)
    for column in columns:
        total += frame[column].astype(str).str.len().to_numpy()
    return total
