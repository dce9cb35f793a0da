"""`tunesmith plan RECIPE [--time-budget 30m] [--memory-budget 8GB]`: which fine-tuning method fits?

For each candidate method (strongest first: full, lora, freeze of the lower half of the layers, bitfit, plus
the recipe's own method when it is another), REAL training steps run on the recipe's model, data, batch
size, max_length, precision and this machine, in a fresh process:

    1 step on the batch of the longest training rows (warm-up; the memory peak a run reaches), then
    `steps` timed steps on batches drawn as the run's loader draws them (length-grouped megabatches, or
    shuffled), an evaluation of the longest validation batch and 2 timed ones, one save of the model as the
    run saves its best (LoRA: adapter + merged copy) and one checkpoint serialisation.

Projections (`project`): forward+backward seconds per padded token, as measured, x the padded tokens of
the recipe's epochs (token lengths fitted from character lengths on a tokenized sample, batches formed as
the loader forms them); measured optimizer-step time x steps; measured evaluation time per padded token x
the validation (and test) set at each evaluation and at the end; measured save time per evaluation;
measured loading and tokenization time.

Peak memory is measured in a fresh process per method: a process's peak RSS only ever grows, so in one
process every method after the first would report the largest so far. tracemalloc would not do: it sees
Python's allocator, not the tensors (torch allocates them in C++); it is used for what it does see, the
tokenized dataset a run keeps as Python lists (measured on a sample, added to the child's peak RSS). On a
GPU the child reports torch.cuda.max_memory_allocated, and the memory budget is compared against that.
The child's RSS includes the interpreter, torch and the data, as a real run's does.

A candidate that exceeds the memory budget is measured again with gradient checkpointing when the recipe
does not already use it. The recommendation is the strongest candidate that fits both budgets. The order
of strength is a prior from the literature (full >= LoRA > freezing the lower layers > BitFit on
classification benchmarks; docs/benchmarks.md measures it on SST-2): plan measures costs, not quality.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

from tunesmith.errors import TunesmithError, shown
from tunesmith.methods.spec import MethodSpec

DEFAULT_STEPS = 5
DEFAULT_TIMEOUT_S = 900
# A process's RSS keeps growing for a while as batches of varying shapes come and go (allocator growth):
# on MiniLM/SST-2 (docs/benchmarks.md) a 63-step epoch peaked at 1.14-1.33x what 5 measured steps reached
# (30 steps: 1.13x). The planning figure on CPU is the measured peak times this headroom.
MEMORY_HEADROOM = 1.3
# higher = weaker; ties keep the candidate order
STRENGTH = {"full": 0, ("freeze", "embeddings"): 1, "dora": 2, "lora": 3, ("freeze", "layers"): 4, "bitfit": 5,
            ("freeze", "all_but_head"): 6}


class PlanError(TunesmithError):
    """A bad budget or a plan that could not measure anything."""


# ---- budgets ---------------------------------------------------------------------------------------------

_TIME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_MEMORY_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
                 "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_duration(text: str) -> float:
    """'30m', '1h30m', '90s', '1.5h' -> seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhd])", text.strip().lower())
    if not parts or re.sub(r"\d+(?:\.\d+)?\s*[smhd]", "", text.strip().lower()).strip():
        raise PlanError(f"--time-budget {shown(text)}: expected a duration such as 30m, 1h30m, 90s or 1.5h")
    return sum(float(n) * _TIME_UNITS[u] for n, u in parts)


def parse_memory(text: str) -> int:
    """'8GB' (10**9), '8GiB' / '8G' (2**30), '512MB' -> bytes."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text.strip().lower())
    if not match or match.group(2) not in _MEMORY_UNITS:
        raise PlanError(f"--memory-budget {shown(text)}: expected a size such as 8GB, 8GiB or 512MB")
    return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2)])


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def format_bytes(n: float | None) -> str:
    return "?" if n is None else f"{n / 2**30:.2f} GiB"


# ---- candidates ------------------------------------------------------------------------------------------


def strength(spec: MethodSpec) -> int:
    return STRENGTH.get((spec.name, spec.freeze) if spec.name == "freeze" else spec.name, 9)


def candidates(recipe, num_layers: int | None) -> list[MethodSpec]:
    """full, lora, freeze (embeddings + lower half of the layers), bitfit, and the recipe's own method."""
    gc = {"gradient_checkpointing": recipe.method.gradient_checkpointing}
    half = (num_layers or 0) // 2
    freeze = {"name": "freeze", "freeze": "layers", "layers": half} if half >= 1 else {"name": "freeze"}
    specs = [MethodSpec(name="full", **gc), MethodSpec(name="lora", **gc), MethodSpec(**freeze, **gc),
             MethodSpec(name="bitfit", **gc)]
    own = recipe.method
    if all(own.model_dump() != s.model_dump() for s in specs):
        specs.append(own)
    return sorted(specs, key=strength)


# ---- the plan (parent process) ---------------------------------------------------------------------------


def plan(recipe, *, time_budget_s: float | None = None, memory_budget: int | None = None,
         steps: int = DEFAULT_STEPS, timeout_s: float = DEFAULT_TIMEOUT_S, memory_headroom: float = MEMORY_HEADROOM,
         echo=print) -> dict:
    """Measure every candidate in its own subprocess; project; recommend. Returns the plan as a dict."""
    from tunesmith.models import check_weights_safe, resolve_model
    from tunesmith.tasks import make_task
    from tunesmith.train.loop import plan_steps

    if steps < 1:
        raise PlanError("--steps must be at least 1")
    if memory_headroom < 1:
        raise PlanError("--memory-headroom must be at least 1")
    task = make_task(recipe)
    splits = task.load_data()  # bad data fails here, before any measurement
    frames = splits.frames()
    rows = {name: len(frame) for name, frame in frames.items()}
    model_dir = resolve_model(recipe.model)
    check_weights_safe(model_dir, allow_pickle=recipe.allow_pickle)
    settings = recipe.train
    batches_per_epoch = max(1, math.ceil(rows["train"] / settings.batch_size))
    loop = plan_steps(batches_per_epoch, settings)
    shape = {"rows": rows, "batches_per_epoch": batches_per_epoch, "steps_per_epoch": loop.steps_per_epoch,
             "total_steps": loop.total_steps, "eval_every": loop.eval_every,
             "evaluations": math.ceil(loop.total_steps / loop.eval_every)}
    echo(f"plan: {rows['train']} training rows, batch {settings.batch_size}, {loop.total_steps} optimizer steps "
         f"({loop.steps_per_epoch}/epoch); measuring {steps} real steps per method, each in a fresh process")

    results = []
    for spec in candidates(recipe, _num_layers(model_dir)):
        row = _measure_and_project(recipe, spec, steps, timeout_s, shape, memory_headroom, echo)
        results.append(row)
        too_big = memory_budget is not None and row.get("peak_bytes", 0) > memory_budget
        out_of_memory = "out of memory" in row.get("error", "").lower()  # CUDA OOM, or killed by the kernel
        if (too_big or out_of_memory) and not spec.gradient_checkpointing:
            echo(f"  {spec.describe()} {'ran out of memory' if out_of_memory else 'exceeds the memory budget'}: "
                 f"measuring it with gradient checkpointing")
            gc_spec = spec.model_copy(update={"gradient_checkpointing": True})
            results.append(_measure_and_project(recipe, gc_spec, steps, timeout_s, shape, memory_headroom, echo))
    for row in results:
        row["fits_time"] = None if time_budget_s is None or "error" in row else row["total_s"] <= time_budget_s
        row["fits_memory"] = None if memory_budget is None or "error" in row else row["peak_bytes"] <= memory_budget
        row["fits"] = "error" not in row and row["fits_time"] is not False and row["fits_memory"] is not False
    if all("error" in row for row in results):
        raise PlanError("no method could be measured: " + "; ".join(f"{r['method']}: {r['error']}" for r in results))
    choice, reason = recommend(results, time_budget_s, memory_budget)
    return {
        "recipe_model": recipe.model, "device": next(r["device"] for r in results if "device" in r),
        "time_budget_s": time_budget_s, "memory_budget_bytes": memory_budget, "steps_measured": steps,
        "memory_headroom": memory_headroom,
        **shape, "candidates": results, "recommended": choice, "reason": reason,
    }


def recommend(results: list[dict], time_budget_s, memory_budget) -> tuple[dict | None, str]:
    """The strongest candidate that fits (rows are strongest first), and why, in words."""
    ordered = sorted(results, key=lambda r: (r["strength"], r["spec"].get("gradient_checkpointing", False)))
    fitting = [r for r in ordered if r["fits"]]
    budget = _budget_words(time_budget_s, memory_budget)
    if not fitting:
        measured = [r for r in ordered if "error" not in r]
        fastest = min(measured, key=lambda r: r["total_s"])
        smallest = min(measured, key=lambda r: r["peak_bytes"])
        return None, (f"nothing fits {budget}: the fastest is {fastest['method']} "
                      f"({format_duration(fastest['total_s'])}), the smallest {smallest['method']} "
                      f"({format_bytes(smallest['peak_bytes'])}); lower train.epochs or train.max_length, "
                      f"train on fewer rows, or use a smaller model")
    best = fitting[0]
    stronger = [r for r in ordered[:ordered.index(best)] if not r["fits"]]  # stronger, or the same without GC
    why_not = "; ".join(f"{r['method']} does not fit ({_misfit(r, time_budget_s, memory_budget)})"
                        for r in stronger)
    fit_words = (f"projected {format_duration(best['total_s'])}"
                 + (f" of {format_duration(time_budget_s)}" if time_budget_s else "")
                 + f", peak {format_bytes(best['peak_bytes'])}"
                 + (f" of {format_bytes(memory_budget)}" if memory_budget else ""))
    if not stronger:
        lead = ("it is the strongest candidate" if time_budget_s or memory_budget
                else "no budget was given, so the strongest candidate")
        return best, f"{best['method']}: {lead} and fits ({fit_words})"
    return best, f"{why_not}; {best['method']} is the strongest that fits ({fit_words})"


def _misfit(row, time_budget_s, memory_budget) -> str:
    if "error" in row:
        return f"failed: {row['error']}"
    parts = []
    if row["fits_time"] is False:
        parts.append(f"projected {format_duration(row['total_s'])} > {format_duration(time_budget_s)}")
    if row["fits_memory"] is False:
        parts.append(f"peak {format_bytes(row['peak_bytes'])} > {format_bytes(memory_budget)}")
    return ", ".join(parts)


def _budget_words(time_budget_s, memory_budget) -> str:
    words = ([format_duration(time_budget_s)] if time_budget_s else []) + \
            ([format_bytes(memory_budget)] if memory_budget else [])
    return "the budget (" + " and ".join(words) + ")" if words else "the budget"


def _num_layers(model_dir: Path) -> int | None:
    config = json.loads((Path(model_dir) / "config.json").read_text())
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if isinstance(config.get(key), int):
            return config[key]
    return None


def _measure_and_project(recipe, spec: MethodSpec, steps: int, timeout_s: float, shape: dict, headroom: float,
                         echo) -> dict:
    row = {"method": spec.describe(), "spec": spec.model_dump(mode="json"), "strength": strength(spec)}
    echo(f"  measuring {spec.describe()} ...")
    try:
        measured = run_worker(recipe, spec, steps, timeout_s)
    except PlanError as exc:
        echo(f"    failed: {exc}")
        return {**row, "error": str(exc)}
    row.update(measured)
    row.update(project(measured, shape, recipe.train))
    row["measured_peak_bytes"] = measured["peak_bytes"]
    if measured["peak_kind"] == "rss":  # + the tokenized dataset the run keeps in memory; x the headroom
        row["dataset_bytes"] = int(measured["dataset_bytes_per_row"] * sum(shape["rows"].values()))
        row["peak_bytes"] = int((measured["peak_bytes"] + row["dataset_bytes"]) * headroom)
    echo(f"    {row['step_s']:.3f}s/step -> epoch {format_duration(row['epoch_s'])}, total "
         f"{format_duration(row['total_s'])}; peak {format_bytes(row['measured_peak_bytes'])} measured, "
         f"{format_bytes(row['peak_bytes'])} planned")
    return row


def project(m: dict, shape: dict, settings) -> dict:
    """Projected seconds per epoch and for the whole recipe, from the measured times.

    Forward + backward time is taken per padded token (measured seconds / padded tokens of the measured
    batches) times the padded tokens of an epoch's batches as the loader forms them (token lengths fitted
    from characters on a tokenized sample); the optimizer step per step; evaluation per padded token times
    the validation set's, at each evaluation and at the end (test too); one best-model save and one
    checkpoint per evaluation (an upper bound); loading and tokenizing once."""
    per_token = sum(m["fb_s_all"]) / max(sum(m["timed_padded_tokens"]), 1)
    epoch_fb = per_token * m["epoch_padded_tokens"]
    batches = min(shape["total_steps"] * settings.grad_accumulation,
                  math.ceil(shape["batches_per_epoch"] * settings.epochs))
    epochs_run = batches / shape["batches_per_epoch"]
    train_s = epochs_run * epoch_fb + shape["total_steps"] * m["optimizer_s"]
    one_eval = m["eval_s_per_token"] * m["validation_padded_tokens"]
    saves = m["save_s"] + (m["checkpoint_s"] or 0.0)
    evaluations = shape["evaluations"]
    eval_s = evaluations * one_eval + one_eval + m["eval_s_per_token"] * m["test_padded_tokens"]
    setup_s = m["load_s"] + sum(shape["rows"].values()) * m["tokenize_s_per_row"]
    evals_per_epoch = max(1, shape["steps_per_epoch"] // shape["eval_every"])
    epoch_s = epoch_fb + shape["steps_per_epoch"] * m["optimizer_s"] + evals_per_epoch * (one_eval + saves)
    return {"step_s": round(settings.grad_accumulation * m["fb_s"] + m["optimizer_s"], 4),
            "epoch_s": round(epoch_s, 3), "train_s": round(train_s, 3), "eval_s": round(eval_s, 3),
            "saves_s": round(evaluations * saves, 3), "setup_s": round(setup_s, 3),
            "total_s": round(setup_s + train_s + eval_s + evaluations * saves, 3)}


PRELOAD = ["torch", "transformers", "accelerate", "peft", "tunesmith.tasks", "tunesmith.methods",
           "tunesmith.train.optim"]


def run_worker(recipe, spec: MethodSpec, steps: int, timeout_s: float) -> dict:
    """Measure one method in a fresh child process.

    Children are forked from a multiprocessing fork server that has imported torch, transformers and PEFT
    once (and done nothing else: no threads, no CUDA), so each method starts from the same clean state as a
    new `tunesmith train` after its imports, without paying for them again. The child's peak RSS is its
    own (VmHWM, see methods/measure.py), whatever this process holds."""
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    with tempfile.TemporaryDirectory(prefix="tunesmith-plan-") as tmp:
        out = Path(tmp) / "result.json"
        raw = recipe.model_dump(mode="json")
        raw["method"] = spec.model_dump(mode="json")
        child = context.Process(target=_child, args=(raw, steps, str(out), os.getcwd()), daemon=True)
        with _main_module_hidden():
            child.start()
        child.join(timeout_s)
        if child.is_alive():
            child.kill()
            child.join()
            raise PlanError(f"did not finish {steps} steps within {timeout_s:g}s")
        if out.is_file():
            result = json.loads(out.read_text())
            if "error" in result:
                raise PlanError(result["error"])
            return result
        code = child.exitcode
        if code is not None and code < 0:
            raise PlanError(f"killed by signal {-code}" + (" (out of memory?)" if code == -9 else ""))
        raise PlanError(f"the measuring process exited with status {code} without a result")


@contextlib.contextmanager
def _main_module_hidden():
    """multiprocessing re-imports the caller's __main__ script in a forkserver child (as __mp_main__), which
    would re-run an unguarded script's top level (say, one that calls plan() without `if __name__ ==
    "__main__"`). The child needs nothing from __main__ (its target lives here), so while it starts,
    __main__ shows no file or spec and is not re-imported."""
    main = sys.modules.get("__main__")
    saved = {k: getattr(main, k) for k in ("__file__", "__spec__") if hasattr(main, k)}
    try:
        for key in saved:
            if key == "__file__":
                delattr(main, key)
            else:
                setattr(main, key, None)
        yield
    finally:
        for key, value in saved.items():
            setattr(main, key, value)


def _child(raw: dict, steps: int, out: str, cwd: str) -> None:
    """In the child: measure, and write the result (or the error) as JSON to `out`."""
    os.chdir(cwd)  # the recipe's data paths are relative to where tunesmith runs
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["TQDM_DISABLE"] = "1"
    warnings.simplefilter("ignore")  # library deprecation chatter; errors still raise
    try:
        import transformers

        from tunesmith.recipe import validate_recipe

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        result = measure(validate_recipe(raw), steps)
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        result = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"}
    Path(out).write_text(json.dumps(result))


# ---- the measurement (child process) ---------------------------------------------------------------------


def measure(recipe, steps: int) -> dict:
    """A few real training steps of recipe.method on the recipe's model and data; times and peak memory."""
    import tracemalloc

    import numpy as np
    import torch
    from accelerate.utils import set_seed

    from tunesmith.methods import apply_method
    from tunesmith.methods.measure import peak_memory
    from tunesmith.models import resolve_model
    from tunesmith.tasks import make_task
    from tunesmith.train.optim import build_optimizer
    from tunesmith.train.precision import make_accelerator, prepare_for_training

    settings = recipe.train
    task = make_task(recipe)
    splits = task.load_data()
    frames = splits.frames()
    started = time.perf_counter()
    set_seed(settings.seed)
    model, tokenizer = task.load_model(resolve_model(recipe.model))
    model, method = apply_method(model, recipe.method)
    accelerator = make_accelerator(settings.precision)
    optimizer = build_optimizer(model, settings)
    model, optimizer = prepare_for_training(accelerator, model, optimizer)  # fp32 evaluations, as a run
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
    to_tokens = _length_model(_row_lengths(train)[sample], kept, settings.max_length)
    del kept

    # training batches drawn as the run's loader draws them (length-grouped megabatches, or shuffled)
    train_tokens = to_tokens(_row_lengths(train))
    order = _sampler_order(train_tokens, size, settings.group_by_length, rng)
    epoch_batches = [order[i:i + size] for i in range(0, len(order), size)]
    full_batches = [b for b in epoch_batches if len(b) == size] or epoch_batches
    timed_rows = [full_batches[i] for i in rng.choice(len(full_batches), steps, replace=len(full_batches) < steps)]
    longest_rows = np.argsort(-train_tokens, kind="stable")[:size]  # the memory peak: the longest rows
    longest, _ = encode(train, longest_rows, size)
    timed, encode_s = zip(*(encode(train, rows, size) for rows in timed_rows))
    # evaluation batches: the run evaluates longest-first (by_length)
    val_tokens = to_tokens(_row_lengths(validation))
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
        with accelerator.autocast():  # as the run's training step
            loss = task.compute_loss(model, batch)
        accelerator.backward(loss)
        if settings.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
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
    with torch.no_grad():
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
            to_tokens(_row_lengths(test)), [np.arange(i, min(i + eval_size, len(test)))
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
    import numpy as np

    tokens = np.array([len(f["input_ids"]) for f in encoded.features]) if hasattr(encoded, "features") else None
    if tokens is None or len(tokens) < 2 or np.ptp(chars) == 0:
        mean = float(tokens.mean()) if tokens is not None and len(tokens) else 1.0
        return lambda c: np.clip(np.full(len(c), round(mean)), 1, max_length).astype(np.int64)
    a, b = np.polyfit(chars, tokens, 1)
    return lambda c: np.clip(np.rint(a * np.asarray(c) + b), 1, max_length).astype(np.int64)


def _sampler_order(lengths, batch_size: int, grouped: bool, rng):
    """Row order of one epoch as the run's training loader makes it: transformers' LengthGroupedSampler
    (random megabatches of min(50, n // (4 * batch)) batches, each sorted longest first) or a shuffle."""
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
    from tunesmith.artifacts import RunDir

    unwrapped = accelerator.unwrap_model(model)
    with tempfile.TemporaryDirectory(prefix="tunesmith-plan-save-") as tmp:
        t0 = time.perf_counter()
        run = RunDir(Path(tmp) / "run")
        run.path.mkdir()
        method.save(unwrapped, tokenizer, run)
        save_s = time.perf_counter() - t0
        try:
            from safetensors.torch import save as to_bytes

            from tunesmith.train.checkpoint import encode_tree, model_tensors
        except ImportError:
            return save_s, None
        t0 = time.perf_counter()
        tensors: dict = {}
        encode_tree(optimizer.state_dict(), tensors, "optimizer")
        for name, blob in (("model", to_bytes(model_tensors(unwrapped))), ("state", to_bytes(tensors))):
            (Path(tmp) / name).write_bytes(blob)
            del blob
        return save_s, time.perf_counter() - t0


def _row_lengths(frame):
    import numpy as np

    text = [c for c in ("text", "text_pair") if c in frame.columns]
    columns = text or [c for c in frame.columns if frame[c].dtype == object]
    total = np.zeros(len(frame), dtype=np.int64)
    for column in columns:
        total += frame[column].astype(str).str.len().to_numpy()
    return total


def print_plan(result: dict) -> None:
    from rich.table import Table

    from tunesmith.console import console

    budgets = []
    if result["time_budget_s"]:
        budgets.append(f"time {format_duration(result['time_budget_s'])}")
    if result["memory_budget_bytes"]:
        budgets.append(f"memory {format_bytes(result['memory_budget_bytes'])}")
    title = (f"plan on {result['device']}: {result['steps_measured']} measured steps per method"
             + (f"; budget {', '.join(budgets)}" if budgets else ""))
    table = Table(title=title, title_justify="left",
                  caption="step: forward+backward+optimizer, measured; epoch and total: projected from the "
                          "measured times (total includes evaluations, saves, loading and tokenization); peak: "
                          f"measured{' RSS x ' + format(result['memory_headroom'], 'g') + ' headroom' if result['memory_headroom'] != 1 else ''}"
                          " (see tunesmith/plan.py)",
                  caption_justify="left")
    for column in ("method", "trainable", "step", "epoch", "total", "peak memory", "fits"):
        table.add_column(column, justify="left" if column in ("method", "fits") else "right")
    chosen = (result["recommended"] or {}).get("method")
    for row in result["candidates"]:
        if "error" in row:
            table.add_row(row["method"], "", "", "", "", "", f"failed: {row['error'][:60]}")
            continue
        fits = "yes" if row["fits"] else "no"
        if row["fits_time"] is None and row["fits_memory"] is None:
            fits = "-"
        table.add_row(row["method"] + (" *" if row["method"] == chosen else ""),
                      f"{row['trainable_params'] / 1e6:.2f}M" if row["trainable_params"] >= 10**4
                      else f"{row['trainable_params']:,}",
                      f"{row['step_s']:.3f}s", format_duration(row["epoch_s"]), format_duration(row["total_s"]),
                      format_bytes(row["peak_bytes"]) + (" GPU" if row["peak_kind"] != "rss" else ""), fits)
    console.print(table)
    rec = result["recommended"]
    console.print(f"recommended: {rec['method'] if rec else 'none'}. {result['reason']}")
    if rec:
        spec = {k: v for k, v in rec["spec"].items() if v is not None}
        console.print("in the recipe:  method: " + json.dumps(spec).replace('"', ""))

