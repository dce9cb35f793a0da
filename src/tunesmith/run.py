"""One fine-tuning run, start to finish: recipe -> data -> model -> loop -> evaluation -> artifacts.

`finetune(recipe)` is what `tunesmith train` calls. It reads like a torchtune recipe: set everything
up, train, then evaluate the best model on validation and test and write the run directory.
"""

from __future__ import annotations

import platform
import time

import torch
import transformers
from accelerate.utils import set_seed
from safetensors.torch import load_file

from tunesmith import __version__
from tunesmith.artifacts import RunDir
from tunesmith.baselines import collect_baselines
from tunesmith.data.token_cache import encode_splits
from tunesmith.imbalance.run_hooks import ImbalanceRun
from tunesmith.methods import apply_method
from tunesmith.methods.measure import peak_memory
from tunesmith.models import check_weights_safe, resolve_model
from tunesmith.recipe import Recipe
from tunesmith.tasks import make_task
from tunesmith.train.checkpoint import Checkpointer, finished_result
from tunesmith.train.loop import plan_steps, train_loop
from tunesmith.train.optim import build_optimizer, build_schedule
from tunesmith.train.precision import make_accelerator, prepare_for_training
from tunesmith.train.stopping import EarlyStopper
from tunesmith.trackers import finish_tracking, make_trackers, start_tracking


def finetune(recipe: Recipe, *, echo=print) -> dict:
    """Run the recipe; return the final results (also written to RUN/eval.json)."""
    started = time.perf_counter()
    task = make_task(recipe)
    settings = recipe.train
    if recipe.resume and (done := finished_result(RunDir(recipe.output))) is not None:
        echo(f"note: {recipe.output} already finished (eval.json, no checkpoint left): nothing to resume")
        return done
    trackers = make_trackers(recipe)  # report.trackers (TensorBoard, MLflow); checked before any data loads

    # 1. data: read, validate and split before any model is loaded (bad input fails fast)
    splits = task.load_data()
    for note in splits.notes:
        echo(f"note: {note}")
    echo(task.describe_splits(splits))

    # 2. model and tokenizer
    model_dir = resolve_model(recipe.model)
    check_weights_safe(model_dir, allow_pickle=recipe.allow_pickle)
    set_seed(settings.seed)
    model, tokenizer = task.load_model(model_dir)
    model, method = apply_method(model, recipe.method)  # full / freeze / bitfit / lora / dora, before the optimizer
    echo(method.describe())
    hooks = ImbalanceRun(recipe, task, echo)  # classification: data diagnostics and imbalance counter-measures
    hooks.inspect(splits, tokenizer)  # prints warnings; findings listed in inspect.fail_on stop the run here

    # 3. tokenize once (reused from the token cache when data, tokenizer and settings match); dynamic padding
    datasets = encode_splits(task, splits.frames(), tokenizer, enabled=recipe.data.cache_tokenized, echo=echo)
    eval_batch = settings.eval_batch_size or settings.batch_size * 2
    train_loader = task.make_loader(  # a task may batch its own way (LM tasks: -100 labels)
        datasets["train"], tokenizer, batch_size=settings.batch_size, seed=settings.seed,
        order="grouped" if settings.group_by_length else "shuffle")
    eval_loaders = {name: task.make_loader(ds, tokenizer, batch_size=eval_batch, order="by_length")
                    for name, ds in datasets.items() if name != "train"}
    train_loader = hooks.train_loader(train_loader, datasets["train"], splits.train, tokenizer)  # resample/augment

    # 4. optimizer, schedule, Accelerate
    accelerator = make_accelerator(settings.precision, gradient_accumulation_steps=settings.grad_accumulation,
                                   log_with=trackers or None)
    plan = plan_steps(len(train_loader), settings)
    optimizer = build_optimizer(model, settings)
    schedule = build_schedule(optimizer, settings, plan.total_steps)
    # mixed precision covers the training forward only: every evaluation (before, during and after training,
    # and `tunesmith evaluate`) runs in fp32, so their numbers compare
    model, optimizer, train_loader, *loaders = prepare_for_training(accelerator, model, optimizer, train_loader,
                                                                    *eval_loaders.values())
    eval_loaders = dict(zip(eval_loaders, loaders))

    # 5. train; the best model by the chosen metric is saved each time it improves
    run = RunDir(recipe.output)
    stop = settings.early_stopping
    stopper = EarlyStopper(stop.metric, task.metric_mode(stop.metric), stop.patience, stop.target, stop.min_delta)
    checkpoints = Checkpointer(run, recipe, model=model, optimizer=optimizer, schedule=schedule,
                               accelerator=accelerator, stopper=stopper, plan=plan, train_loader=train_loader,
                               train_data=datasets["train"], echo=echo)
    checkpoints.start(recipe.resume)  # creates RUN; resuming, picks the newest valid checkpoint (train/checkpoint.py)
    run.write_recipe(task.resolved_recipe(recipe).model_copy(update={"resume": False}))  # max_length as used
    log = start_tracking(accelerator, recipe, run.log)  # run.log, plus accelerator.log when trackers run
    hooks.save(run)  # RUN/inspect.json
    echo(f"training {plan.total_steps} steps ({plan.steps_per_epoch}/epoch) on {accelerator.device}, "
         f"evaluating every {plan.eval_every} steps; run directory: {run.path}")

    def save_best(record: dict) -> None:
        if accelerator.is_main_process:
            method.save(accelerator.unwrap_model(model), tokenizer, run)  # LoRA: RUN/adapter + merged RUN/model

    task.before_training(model, tokenizer, eval_loaders, accelerator)  # LM: pretrained perplexity, generations
    with checkpoints.signals():  # SIGINT/SIGTERM: checkpoint at the end of the step, then stop
        state = train_loop(
            model=model, optimizer=optimizer, schedule=schedule, train_loader=train_loader, accelerator=accelerator,
            plan=plan, stopper=stopper, compute_loss=task.compute_loss,
            evaluate=lambda: task.evaluate(model, eval_loaders["validation"], accelerator, desc="validation"),
            on_best=save_best, log=log, checkpoints=checkpoints, state=checkpoints.restore(),
        )
    train_seconds = time.perf_counter() - state.started  # the loop's time, summed over a resumed run's processes

    # 6. reload the best weights, evaluate on every held-out split, write the results
    accelerator.wait_for_everyone()
    model = method.load_best(accelerator.unwrap_model(model), run, _load_best_weights, tokenizer)  # LoRA: merged
    hooks.tune_threshold(model, eval_loaders["validation"], accelerator, run)  # binary: imbalance.threshold.tune
    final = {name: task.evaluate(model, loader, accelerator, desc=name) for name, loader in eval_loaders.items()}
    for name, metrics in final.items():
        log({"type": "eval", "split": name, "step": stopper.best_step, "final": True, **metrics})
    result = {
        "task": task.name,
        "model": recipe.model,
        "best": {"metric": stopper.metric, "value": stopper.best, "step": stopper.best_step},
        "stop_reason": state.stop_reason,
        "steps": state.step,
        "epochs": round(state.step / plan.steps_per_epoch, 4),
        **final,
        "baselines": collect_baselines(recipe, task, list(final), run, echo=echo),  # majority, tfidf, scratch
        "data": {name: len(ds) for name, ds in datasets.items()},
        "sources": splits.sources,
        **hooks.summary(),  # "imbalance" (loss, weights, sampling, threshold) and "inspect" (finding counts)
        "timing": _timing(state, time.perf_counter() - started, train_seconds),
        "environment": _environment(accelerator),
        "method": method.summary(),  # trainable vs total parameters
        "memory": peak_memory(accelerator.device),  # peak RSS (CPU) / peak allocated (GPU)
        "model_dir": str(run.model_dir),
    }
    result.update(task.extra_results(model, tokenizer, accelerator))  # LM: generations before/after, token counts
    finish_tracking(accelerator)
    if accelerator.is_main_process:
        run.write_eval(result)
        checkpoints.finish()  # RUN/checkpoints removed unless checkpoint.keep_on_finish
        if recipe.report.html:
            result["report"] = _write_report(run, echo)
    return result


def _write_report(run: RunDir, echo) -> str | None:
    """RUN/report.html; training already succeeded, so a failure here is reported, not raised."""
    from tunesmith.report import write_report

    try:
        return str(write_report(run.path))
    except Exception as exc:  # noqa: BLE001 - the model and eval.json are written; `tunesmith report` retries
        echo(f"warning: report.html not written ({type(exc).__name__}: {exc}); retry with: tunesmith report {run.path}")
        return None


def _timing(state, total_seconds: float, loop_seconds: float) -> dict:
    """Training throughput counts only the training steps, not the evaluations between them."""
    train_s = max(loop_seconds - state.eval_seconds, 1e-9)
    return {
        "total_s": round(total_seconds, 2), "train_s": round(train_s, 2), "eval_s": round(state.eval_seconds, 2),
        "train_samples_per_s": round(state.samples / train_s, 2),
        "train_tokens_per_s": round(state.tokens / train_s, 1),
        "tokens": state.tokens, "padded_tokens": state.padded_tokens,
        "padding_fraction": round(1 - state.tokens / max(state.padded_tokens, 1), 4),
    }


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


def _environment(accelerator) -> dict:
    return {
        "tunesmith": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
        "python": platform.python_version(), "device": str(accelerator.device),
        "processes": accelerator.num_processes, "threads": torch.get_num_threads(),
        "precision": "bf16" if accelerator.mixed_precision == "bf16" else "fp32",
    }
