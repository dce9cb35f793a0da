"""One fine-tuning run, start to finish: recipe -> data -> model -> loop -> evaluation -> artifacts.

`finetune(recipe)` is what `tunesmith train` calls. It reads like a torchtune recipe: set everything
up, train, then evaluate the best model on validation and test and write the run directory.
"""

from __future__ import annotations

import platform
import time

import torch
import transformers
from accelerate import Accelerator
from accelerate.utils import set_seed
from safetensors.torch import load_file

from tunesmith import __version__
from tunesmith.artifacts import RunDir
from tunesmith.data.encode import make_loader
from tunesmith.models import check_weights_safe, resolve_model
from tunesmith.recipe import Recipe
from tunesmith.tasks import make_task
from tunesmith.train.loop import plan_steps, train_loop
from tunesmith.train.optim import build_optimizer, build_schedule
from tunesmith.train.stopping import EarlyStopper


def finetune(recipe: Recipe, *, echo=print) -> dict:
    """Run the recipe; return the final results (also written to RUN/eval.json)."""
    started = time.perf_counter()
    task = make_task(recipe)
    settings = recipe.train

    # 1. data: read, validate and split before any model is loaded (bad input fails fast)
    splits = task.load_data()
    for note in splits.notes:
        echo(f"note: {note}")
    echo(_describe_splits(splits))

    # 2. model and tokenizer
    model_dir = resolve_model(recipe.model)
    check_weights_safe(model_dir, allow_pickle=recipe.allow_pickle)
    set_seed(settings.seed)
    model, tokenizer = task.load_model(model_dir)

    # 3. tokenize once; batches are padded dynamically
    datasets = {name: task.encode(frame, tokenizer) for name, frame in splits.frames().items()}
    eval_batch = settings.eval_batch_size or settings.batch_size * 2
    train_loader = make_loader(datasets["train"], tokenizer, batch_size=settings.batch_size, seed=settings.seed,
                               order="grouped" if settings.group_by_length else "shuffle")
    eval_loaders = {name: make_loader(ds, tokenizer, batch_size=eval_batch, order="by_length")
                    for name, ds in datasets.items() if name != "train"}

    # 4. optimizer, schedule, Accelerate
    accelerator = Accelerator(
        mixed_precision="bf16" if settings.precision == "bf16" else "no",
        gradient_accumulation_steps=settings.grad_accumulation,
    )
    plan = plan_steps(len(train_loader), settings)
    optimizer = build_optimizer(model, settings)
    schedule = build_schedule(optimizer, settings, plan.total_steps)
    model, optimizer, train_loader, *loaders = accelerator.prepare(model, optimizer, train_loader,
                                                                   *eval_loaders.values())
    eval_loaders = dict(zip(eval_loaders, loaders))

    # 5. train; the best model by the chosen metric is saved each time it improves
    run = RunDir(recipe.output).create()
    run.write_recipe(recipe)
    stop = settings.early_stopping
    stopper = EarlyStopper(stop.metric, task.metric_mode(stop.metric), stop.patience, stop.target, stop.min_delta)
    echo(f"training {plan.total_steps} steps ({plan.steps_per_epoch}/epoch) on {accelerator.device}, "
         f"evaluating every {plan.eval_every} steps; run directory: {run.path}")

    def save_best(record: dict) -> None:
        if accelerator.is_main_process:
            run.save_model(accelerator.unwrap_model(model), tokenizer)

    state = train_loop(
        model=model, optimizer=optimizer, schedule=schedule, train_loader=train_loader, accelerator=accelerator,
        plan=plan, stopper=stopper, compute_loss=task.compute_loss,
        evaluate=lambda: task.evaluate(model, eval_loaders["validation"], accelerator, desc="validation"),
        on_best=save_best, log=run.log,
    )
    train_seconds = time.perf_counter() - started

    # 6. reload the best weights, evaluate on every held-out split, write the results
    accelerator.wait_for_everyone()
    _load_best_weights(accelerator.unwrap_model(model), run)
    final = {name: task.evaluate(model, loader, accelerator, desc=name) for name, loader in eval_loaders.items()}
    for name, metrics in final.items():
        run.log({"type": "eval", "split": name, "step": stopper.best_step, "final": True, **metrics})
    result = {
        "task": task.name,
        "model": recipe.model,
        "best": {"metric": stopper.metric, "value": stopper.best, "step": stopper.best_step},
        "stop_reason": state.stop_reason,
        "steps": state.step,
        "epochs": round(state.step / plan.steps_per_epoch, 4),
        **final,
        "baselines": {name: task.baselines(name) for name in final},
        "data": {name: len(ds) for name, ds in datasets.items()},
        "sources": splits.sources,
        "timing": {"total_s": round(time.perf_counter() - started, 2), "train_s": round(train_seconds, 2),
                   "train_samples_per_s": round(state.samples / max(train_seconds, 1e-9), 2)},
        "environment": _environment(accelerator),
        "model_dir": str(run.model_dir),
    }
    if accelerator.is_main_process:
        run.write_eval(result)
    return result


def _load_best_weights(model, run: RunDir) -> None:
    weights = sorted(run.model_dir.glob("*.safetensors"))
    state = {}
    for path in weights:
        state.update(load_file(str(path)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    # tied weights (e.g. decoder embeddings) are saved once; anything else missing is a bug
    missing = [k for k in missing if k not in _tied_names(model)]
    if missing or unexpected:
        raise RuntimeError(f"best checkpoint does not match the model: missing {missing[:3]}, unexpected {unexpected[:3]}")


def _tied_names(model) -> set[str]:
    tied = getattr(model, "all_tied_weights_keys", None) or getattr(model, "_tied_weights_keys", None) or {}
    return set(tied if not isinstance(tied, dict) else list(tied.keys()) + list(tied.values()))


def _describe_splits(splits) -> str:
    counts = ", ".join(f"{name} {len(frame)}" for name, frame in splits.frames().items())
    return f"data: {counts} rows; {len(splits.labels)} labels: {', '.join(splits.labels.names)}"


def _environment(accelerator) -> dict:
    return {
        "tunesmith": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
        "python": platform.python_version(), "device": str(accelerator.device),
        "processes": accelerator.num_processes, "threads": torch.get_num_threads(),
    }
