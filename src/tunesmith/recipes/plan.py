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
`plan --quality` (recipes/plan_quality.py) adds a short real training run per method and recommends by it.
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

from tunesmith.config.method import MethodSpec
from tunesmith.config.recipe import validate_recipe
from tunesmith.errors import TunesmithError, shown
from tunesmith.models import check_weights_safe, resolve_model
from tunesmith.recipes.finetune import prepare_data
from tunesmith.recipes.plan_measure import measure
from tunesmith.train.loop import plan_steps

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


def parse_duration(text: str, option: str = "--time-budget") -> float:
    """'30m', '1h30m', '90s', '1.5h' -> seconds (a PlanError naming `option` otherwise)."""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhd])", text.strip().lower())
    if not parts or re.sub(r"\d+(?:\.\d+)?\s*[smhd]", "", text.strip().lower()).strip():
        raise PlanError(f"{option} {shown(text)}: expected a duration such as 30m, 1h30m, 90s or 1.5h")
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
    if steps < 1:
        raise PlanError("--steps must be at least 1")
    if memory_headroom < 1:
        raise PlanError("--memory-headroom must be at least 1")
    task, splits = prepare_data(recipe, echo=lambda line: None)  # bad data fails here, before any measurement
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
        raw = recipe.model_dump(mode="json", exclude_unset=True)  # keys left unset stay unset (task checks)
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

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        result = measure(validate_recipe(raw), steps)
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        result = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"}
    Path(out).write_text(json.dumps(result))
