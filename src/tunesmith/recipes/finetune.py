"""One fine-tuning run in three phases, as torchtune's recipes are: set-up, train, finish.

    run = FineTune(recipe)
    run.setup()     # task, data, model + method, token cache, loaders, optimizer, schedule, Accelerate, checkpoints
    run.train()     # the loop (train/loop.py); the best model is saved whenever it improves
    run.finish()    # best weights reloaded, final evaluations, baselines, eval.json, report

`finetune(recipe)` is what `tunesmith train` calls. The set-up functions `prepare_data` and `prepare_model`
are the ones `tunesmith plan` measures with (recipes/plan.py), so plan measures what a run does. The recipe
is read, never written; the task's derived settings go to RUN/recipe.yaml through `task.resolved_recipe()`.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from accelerate.utils import set_seed

from tunesmith import __version__
from tunesmith.allocator import allocator_in_use
from tunesmith.artifacts import RunDir
from tunesmith.config.method import DEFAULT_LR, LOW_LR_FACTOR, default_lr
from tunesmith.data.token_cache import encode_splits
from tunesmith.evaluation.verdict import quality_verdict
from tunesmith.methods import apply_method
from tunesmith.methods.base import load_best_weights
from tunesmith.methods.lora import continue_start
from tunesmith.methods.measure import peak_memory, release_freed_memory
from tunesmith.models import check_weights_safe, resolve_model
from tunesmith.models.parent_run import check_start
from tunesmith.errors import PreflightError
from tunesmith.preflight import PreflightContext, PreflightReport, record_in_inspect, run_preflight
from tunesmith.recipes.baselines import collect_baselines
from tunesmith.recipes.transfer_watch import make_watch
from tunesmith.report import write_report
from tunesmith.tasks import make_task
from tunesmith.trackers import finish_tracking, make_trackers, start_tracking
from tunesmith.train.checkpoint import Checkpointer
from tunesmith.train.checkpoint_store import finished_result
from tunesmith.train.distributed import batches_per_process, main_process, share_from_main
from tunesmith.train.loop import plan_steps, recorded_evaluation, train_loop
from tunesmith.train.optim import build_optimizer, build_schedule
from tunesmith.train.precision import evaluation_context, hold_frozen_weights, make_accelerator, prepare_for_training
from tunesmith.train.sharding import (FSDP, check_model, check_recipe, engine_of, full_model_state,
                                      load_full_model_state)
from tunesmith.train.run_claim import STAGING, claim_run_dir
from tunesmith.train.stopping import EarlyStopper


def finetune(recipe, *, echo=print, judge=None) -> dict:
    """Run the recipe; return the final results (also written to RUN/eval.json). `judge(value, step)`, when given,
    is asked after each validation whether to stop early (train/stopping.py; `tunesmith tune`'s pruner).

    File safety (train/run_claim.py): RUN is checked and locked first; a finished run being overwritten stays as
    it is while the new run trains in RUN/.overwrite, whose files replace it only once the new run has finished."""
    echo = echo if main_process() else quiet  # several processes: the main one prints (train/distributed.py)
    with claim_run_dir(recipe, echo=echo) as run_dir:
        if recipe.resume and (done := finished_result(run_dir)) is not None:
            echo(f"note: {recipe.output} already finished (eval.json, no checkpoint left): nothing to resume")
            return done
        run = FineTune(recipe, run_dir=run_dir, echo=echo, judge=judge)
        run.setup()
        run.train()
        result = run.finish()
    if result.get("report") and run_dir.path == Path(recipe.output) / STAGING:  # it named RUN/.overwrite
        result["report"] = write_report_safely(RunDir(recipe.output), echo)
    return result


def prepare_data(recipe, echo=print):
    """(task, splits): the recipe's data read, validated and split before any model is loaded."""
    check_start(recipe.model, recipe.init)  # model: an earlier run: finished, and init: only with one
    task = make_task(recipe)
    splits = task.load_data()
    for note in splits.notes:
        echo(f"note: {note}")
    echo(task.describe_splits(splits))
    return task, splits


def prepare_model(recipe, task, echo=print):
    """(model, tokenizer, applied method): the pretrained model with the task's head, the method applied
    (full / freeze / bitfit / lora / dora) before any optimizer sees the parameters. With init.adapter: continue
    the model is the base the parent's adapter sits on, and that adapter is loaded to train further."""
    adapter = continue_start(recipe)  # init.adapter: continue: the parent's adapter, on the base it sits on
    model_dir = resolve_model(str(adapter.base_dir) if adapter else recipe.model)
    check_weights_safe(model_dir, allow_pickle=recipe.allow_pickle)
    set_seed(recipe.train.seed)
    model, tokenizer = task.load_model(model_dir)
    model, method = apply_method(model, recipe.method, adapter=adapter, keep_head=task.head_start != "new")
    echo(method.describe())
    return model, tokenizer, method


@dataclass
class Loaders:
    train: object
    held_out: dict  # {"validation": loader, "test": loader}


class FineTune:
    def __init__(self, recipe, *, run_dir: RunDir | None = None, echo=print, judge=None):
        self.recipe = recipe
        self.echo = echo
        self.judge = judge
        self.run = run_dir or RunDir(recipe.output)  # RUN, or RUN/.overwrite (finetune)
        self.started = time.perf_counter()

    # ---- 1. set-up --------------------------------------------------------------------------
    def setup(self) -> None:
        recipe, settings = self.recipe, self.recipe.train
        self.trackers = make_trackers(recipe, output=self.run.path)  # report.trackers; checked before data loads
        self.task, self.splits = prepare_data(recipe, self.echo)
        self.model, self.tokenizer, self.method = prepare_model(recipe, self.task, self.echo)
        lr_note = learning_rate_note(recipe)
        if not (recipe.preflight.enabled and lr_note.startswith("warning")):  # preflight reports it (lr_below_method)
            self.echo(lr_note)
        if main_process():  # diagnostics, once per run (a failure stops the main process, and the launcher the rest)
            self.task.inspect_data(self.splits, self.tokenizer, self.echo)  # may stop the run (inspect.fail_on)
        self.datasets = encode_splits(self.task, self.splits.frames(), self.tokenizer,
                                      enabled=recipe.data.cache_tokenized, echo=self.echo)
        loaders = self._loaders()
        self.accelerator = make_accelerator(settings.precision, gradient_accumulation_steps=settings.grad_accumulation,
                                            log_with=self.trackers or None)
        check_recipe(recipe, self.accelerator)  # what FSDP / DeepSpeed runs cannot do (train/sharding.py)
        check_model(self.accelerator, self.model)
        self.plan = plan_steps(batches_per_process(len(loaders.train), self.accelerator.num_processes), settings)
        self.optimizer = build_optimizer(self.model, settings)
        self.schedule = build_schedule(self.optimizer, settings, self.plan.total_steps)
        self.bf16_base = bf16_base = hold_frozen_weights(self.accelerator, self.model, recipe.method, self.echo)
        # mixed precision covers the training step; every evaluation enters evaluation_context: the training precision
        # (eval_precision: train) or fp32 (a frozen base held in bf16: evaluations during training in bf16, the final
        # one in fp32), so their numbers compare (train/precision.py)
        self.model, self.optimizer, train_loader, *held_out = prepare_for_training(
            self.accelerator, self.model, self.optimizer, loaders.train, *loaders.held_out.values(),
            autocast_everywhere=bf16_base)
        self.loaders = Loaders(train_loader, dict(zip(loaders.held_out, held_out)))
        self.preflight = self._preflight()
        release_freed_memory()  # the round trip's model copy: freed, and given back before training
        stop = settings.early_stopping
        metric = self.task.stop_metric
        self.stopper = EarlyStopper(metric, self.task.metric_mode(metric), stop.patience, stop.target, stop.min_delta,
                                    judge=self.judge)
        self.checkpoints = Checkpointer(
            self.run, recipe, model=self.model, optimizer=self.optimizer, schedule=self.schedule,
            accelerator=self.accelerator, stopper=self.stopper, plan=self.plan, train_loader=train_loader,
            train_data=self.datasets["train"], echo=self.echo)
        self.watch = make_watch(recipe, self.task, self.model, self.tokenizer, self.accelerator, self.echo)

    def _preflight(self) -> PreflightReport:
        """The checks run on the main process only (every rank holds the same weights and data, and transformers
        saves on rank 0 alone); their outcome is shared, so a preflight error stops every rank with one message."""
        accelerator, report, failure = self.accelerator, PreflightReport(), None
        if accelerator.is_main_process:
            context = PreflightContext(self.recipe, self.task, accelerator.unwrap_model(self.model), self.tokenizer,
                                       self.method, self.splits, self.datasets, self.plan.total_steps)
            try:
                report = run_preflight(context, echo=self.echo, sharded=engine_of(accelerator) == FSDP)
            except PreflightError as stopped:
                failure = str(stopped)
        failure, report = share_from_main(accelerator, (failure, report))
        if failure:
            raise PreflightError(failure)
        return report

    def _loaders(self) -> Loaders:
        settings, task = self.recipe.train, self.task
        train = task.make_loader(self.datasets["train"], self.tokenizer, batch_size=settings.batch_size,
                                 seed=settings.seed, order="grouped" if settings.group_by_length else "shuffle")
        train = task.train_loader(train, self.datasets["train"], self.splits.train, self.tokenizer, self.echo)
        eval_batch = settings.eval_batch_size or settings.batch_size * 2
        held_out = {name: task.make_loader(ds, self.tokenizer, batch_size=eval_batch, order="by_length")
                    for name, ds in self.datasets.items() if name != "train"}
        return Loaders(train, held_out)

    # ---- 2. train ---------------------------------------------------------------------------
    def train(self) -> None:
        run, plan, accelerator = self.run, self.plan, self.accelerator
        self.checkpoints.start(self.recipe.resume)  # creates RUN; resuming, picks the newest valid checkpoint
        run.write_recipe(self.task.resolved_recipe().model_copy(update={"resume": False, "overwrite": False}),
                         header=f"train.lr {self.recipe.train.lr:g}: {self.recipe.lr_source}")
        log = self.log = self.watch.logging(start_tracking(accelerator, self.recipe, run.log))  # + trackers, watch
        self.echo(f"training {plan.total_steps} steps ({plan.steps_per_epoch}/epoch) on {accelerator.device}, "
                  f"evaluating every {plan.eval_every} steps; run directory: {run.path}")
        validation = self.loaders.held_out["validation"]
        with self._evaluating():  # dpo: the reference log-probs, in the precision the policy's are computed in
            self.task.before_training(self.model, self.tokenizer, self.loaders.held_out, accelerator,
                                      train_data=self.datasets["train"])
        self.watch.before_training(self.model, log, run.read_metrics())  # transfer.watch: step 0
        release_freed_memory()
        with self.checkpoints.signals():  # SIGINT/SIGTERM: checkpoint at the end of the step, then stop
            self.state = train_loop(
                model=self.model, optimizer=self.optimizer, schedule=self.schedule,
                train_loader=self.loaders.train, accelerator=accelerator, plan=plan, stopper=self.stopper,
                compute_loss=self.task.compute_loss,
                evaluate=self.watch.around(lambda: self._evaluate(validation, "validation"), self.model),
                on_best=self._save_best, log=log, checkpoints=self.checkpoints, state=self.checkpoints.restore(),
            )
        self.train_seconds = time.perf_counter() - self.state.started  # summed over a resumed run's processes

    def _evaluating(self):
        """Around every evaluation: the run's evaluation precision (train/precision.py)."""
        return evaluation_context(self.accelerator, self.recipe.train)

    def _evaluate(self, loader, split: str) -> dict:
        with self._evaluating():
            return self.task.evaluate(self.model, loader, self.accelerator, desc=split)

    def _save_best(self, record: dict) -> None:
        accelerator = self.accelerator  # FSDP: every process gathers the full weights, the main one writes them
        state = full_model_state(accelerator, self.model) if engine_of(accelerator) == FSDP else None
        if accelerator.is_main_process:  # LoRA: RUN/adapter during training, merged RUN/model at the end
            self.method.save(accelerator.unwrap_model(self.model), self.tokenizer, self.run, state_dict=state)

    # ---- 3. finish --------------------------------------------------------------------------
    def finish(self) -> dict:
        task, run, accelerator, state = self.task, self.run, self.accelerator, self.state
        accelerator.wait_for_everyone()
        release_freed_memory()  # what training freed, before the best weights (LoRA: the fp32 base) load
        default = load_best_weights
        if engine_of(accelerator) == FSDP:  # the full best weights, read by every process, into its shards
            default = lambda model, run: load_best_weights(  # noqa: E731
                model, run, load_state=lambda state: load_full_model_state(accelerator, self.model, state))
        model = self.method.load_best(accelerator.unwrap_model(self.model), run, default, self.tokenizer)
        with self._evaluating():
            retuned = task.after_training(model, self.loaders.held_out["validation"], accelerator, run, self.echo)
            final = self._final_evaluations(model, self._best_validation_metrics() if not retuned else None)
        for name, metrics in final.items():
            self.log({"type": "eval", "split": name, "step": self.stopper.best_step, "final": True, **metrics})
        result = {
            "task": task.name,
            "model": self.recipe.model,
            "best": {"metric": self.stopper.metric, "value": self.stopper.best, "step": self.stopper.best_step},
            "stop_reason": state.stop_reason,
            "steps": state.step,
            "epochs": round(state.step / self.plan.steps_per_epoch, 4),
            **final,
            "summary_columns": list(task.summary_columns),
            "baselines": collect_baselines(self.recipe, task, list(final), run, finetune=finetune, echo=self.echo),
            "data": {name: len(ds) for name, ds in self.datasets.items()},
            "sources": self.splits.sources,
            "timing": timing(state, time.perf_counter() - self.started, self.train_seconds),
            "environment": environment(accelerator),
            "method": self.method.summary(),  # trainable vs total parameters
            "learning_rate": {"value": self.recipe.train.lr, "source": self.recipe.lr_source},
            "memory": peak_memory(accelerator.device),  # peak RSS (CPU) / peak allocated (GPU)
            "model_dir": str(RunDir(self.recipe.output).model_dir),
            "max_length": task.length_summary(),
            "preflight": self.preflight.to_dict(),
        }
        result.update(task.extra_results(model, self.tokenizer, accelerator))
        result.update({"lineage": task.lineage()} if task.parent is not None else {})  # model: an earlier run
        result.update(self.watch.results(model, self.log))  # transfer.watch: before, after, change
        result["verdict"] = quality_verdict(self.recipe, result, self.stopper.metric,
                                            task.metric_mode(self.stopper.metric))
        finish_tracking(accelerator)
        if accelerator.is_main_process:
            with self._evaluating():
                task.save_artifacts(run, model, self.loaders.held_out, accelerator)
            record_in_inspect(run.path, self.preflight)
            run.write_eval(result)
            self.checkpoints.finish()  # RUN/checkpoints removed unless checkpoint.keep_on_finish
            if self.recipe.report.html:
                result["report"] = write_report_safely(run, self.echo)
        return result


    def _final_evaluations(self, model, validation: dict | None) -> dict:
        """Every held-out split evaluated on the best model; `validation`: its metrics already known."""
        return {name: validation if name == "validation" and validation is not None
                else self.task.evaluate(model, loader, self.accelerator, desc=name)
                for name, loader in self.loaders.held_out.items()}

    def _best_validation_metrics(self) -> dict | None:
        """The metrics of the evaluation at the best step when evaluating the reloaded best model would repeat it
        exactly - the same weights (not a PEFT merge), the same precision (no bf16 frozen base), one full copy of
        the weights (not FSDP / DeepSpeed shards) - and the task saves nothing of that pass (saves_final_outputs),
        else None. It saves a pass over the validation set."""
        if (not self.method.reloads_exactly or self.bf16_base or engine_of(self.accelerator) is not None
                or self.task.saves_final_outputs):
            return None
        return recorded_evaluation(self.state, self.stopper.best_step)


def quiet(*_args, **_kwargs) -> None:
    """The echo of the non-main processes of a multi-process run."""


def learning_rate_note(recipe) -> str:
    """One line on train.lr: its value and source, and a warning when a set rate is far below the method's own."""
    lr, method = recipe.train.lr, recipe.method
    own = default_lr(method)
    if recipe.lr_source != "the recipe":
        return f"train.lr {lr:g}: {recipe.lr_source} (train.lr not set; full fine-tuning's is {DEFAULT_LR['full']:g})"
    if lr * LOW_LR_FACTOR <= own:
        return (f"warning: train.lr {lr:g} is {own / lr:.0f}x below method {method.name}'s default ({own:g}): a full "
                f"fine-tuning rate under {method.name} often learns little. Leave train.lr out to use the default, "
                f"or try --set train.lr={own:g}")
    return f"train.lr {lr:g}: set in the recipe"


def write_report_safely(run: RunDir, echo) -> str | None:
    """RUN/report.html; training already succeeded, so a failure here is reported, not raised."""
    try:
        return str(write_report(run.path))
    except Exception as exc:  # noqa: BLE001 - the model and eval.json are written; `tunesmith report` retries
        echo(f"warning: report.html not written ({type(exc).__name__}: {exc}); retry with: tunesmith report {run.path}")
        return None


def timing(state, total_seconds: float, loop_seconds: float) -> dict:
    """Training throughput counts only the training steps, not the evaluations between them."""
    train_s = max(loop_seconds - state.eval_seconds, 1e-9)
    return {
        "total_s": round(total_seconds, 2), "train_s": round(train_s, 2), "eval_s": round(state.eval_seconds, 2),
        "train_samples_per_s": round(state.samples / train_s, 2),
        "train_tokens_per_s": round(state.tokens / train_s, 1),
        "tokens": state.tokens, "padded_tokens": state.padded_tokens,
        "padding_fraction": round(1 - state.tokens / max(state.padded_tokens, 1), 4),
    }


def environment(accelerator) -> dict:
    return {
        "tunesmith": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
        "python": platform.python_version(), "device": str(accelerator.device),
        "processes": accelerator.num_processes, "engine": engine_of(accelerator) or "DDP",
        "threads": torch.get_num_threads(),
        "precision": "bf16" if accelerator.mixed_precision == "bf16" else "fp32",
        "allocator": allocator_in_use(),  # tcmalloc where the command line found it (tunesmith/allocator.py)
    }
