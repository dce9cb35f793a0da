"""A multi-task run (`task: multi_task`): one shared encoder body, one head per task, one training loop.

    run = MultiTaskRun(recipe)
    run.setup()    # each task's recipe, data and model (heads on one body), the mixed loader, optimizer, checkpoints
    run.train()    # train/loop.py: each batch is one task's, drawn by multi_task.mixing; the loss is that task's
    run.finish()   # best weights back, each task's final metrics; RUN/tasks/<name>/{model,recipe.yaml,eval.json}

RUN/tasks/<name> is an ordinary run directory of that task (its recipe and a plain Hugging Face model, body + its
head), so `tunesmith predict RUN --task NAME` (and evaluate, serve on RUN/tasks/NAME) use it as any run.
Validation evaluates every task on its own held-out rows; metrics.jsonl and eval.json hold them per task
("validation": {"<task>": {...}, "mean": ..., "loss": ...}). Checkpoints and exact resume are train/checkpoint.py's:
the mixed loader's one generator (data/mixing.py) is saved with every other random state.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from accelerate.utils import set_seed
from torch.utils.data import DataLoader

from tunesmith.artifacts import RunDir
from tunesmith.data.mixing import TASK_KEY, MixedBatchSampler, MixedCollate, MixedDataset, mixing_weights
from tunesmith.data.token_cache import encode_splits
from tunesmith.errors import RecipeError
from tunesmith.methods import apply_method, count_parameters
from tunesmith.methods.base import load_best_weights
from tunesmith.methods.measure import peak_memory
from tunesmith.models import check_weights_safe, resolve_model
from tunesmith.models.multi_task import MultiTaskModel
from tunesmith.models.parent_run import find_parent_run
from tunesmith.recipes.finetune import environment, timing
from tunesmith.recipes.multi_task_parts import evaluate_tasks, make_tasks, stop_metric
from tunesmith.train.checkpoint import Checkpointer
from tunesmith.train.checkpoint_store import finished_result
from tunesmith.train.loop import plan_steps, train_loop
from tunesmith.train.optim import build_optimizer, build_schedule
from tunesmith.train.precision import evaluation_context, make_accelerator, prepare_for_training
from tunesmith.train.run_claim import claim_run_dir
from tunesmith.train.stopping import EarlyStopper

METHODS = ("full", "freeze", "bitfit")  # set requires_grad on each task's model; lora/dora wrap one model


def train_multi_task(recipe, *, echo=print) -> dict:
    """`tunesmith train` of a multi-task recipe; the results (also RUN/eval.json)."""
    check_supported(recipe)
    with claim_run_dir(recipe, echo=echo) as run_dir:
        if recipe.resume and (done := finished_result(run_dir)) is not None:
            echo(f"note: {recipe.output} already finished (eval.json, no checkpoint left): nothing to resume")
            return done
        run = MultiTaskRun(recipe, run_dir=run_dir, echo=echo)
        run.setup()
        run.train()
        return run.finish()


def check_supported(recipe) -> None:
    if recipe.method.name not in METHODS:
        raise RecipeError(f"method: {recipe.method.name} is not supported with task: multi_task; choose one of "
                          f"{', '.join(METHODS)}")
    if find_parent_run(recipe.model) is not None:
        raise RecipeError(f"model: {recipe.model} is a finished run; a multi-task run starts from a pretrained "
                          f"model (a packaged name or a model directory)")


class MultiTaskRun:
    def __init__(self, recipe, *, run_dir: RunDir | None = None, echo=print):
        self.recipe, self.echo = recipe, echo
        self.run = run_dir or RunDir(recipe.output)
        self.started = time.perf_counter()

    # ---- 1. set-up --------------------------------------------------------------------------
    def setup(self) -> None:
        recipe, settings = self.recipe, self.recipe.train
        self.tasks = make_tasks(recipe)
        self.metric, mode = stop_metric(recipe, self.tasks)
        self.splits = {name: task.load_data() for name, task in self.tasks.items()}
        for name, task in self.tasks.items():
            for note in self.splits[name].notes:
                self.echo(f"note: {name}: {note}")
            self.echo(f"{name}: {task.describe_splits(self.splits[name])}")
        self.model, self.tokenizer, self.method = self._load_model()
        self.datasets = {name: encode_splits(task, self.splits[name].frames(), self.tokenizer,
                                             enabled=task.recipe.data.cache_tokenized, echo=self.echo)
                         for name, task in self.tasks.items()}
        self.accelerator = make_accelerator(settings.precision, gradient_accumulation_steps=settings.grad_accumulation)
        if self.accelerator.num_processes > 1:
            raise RecipeError("task: multi_task trains in one process; run it without --processes")
        train_loader, held_out = self._loaders()
        self.plan = plan_steps(len(train_loader), settings)
        self.optimizer = build_optimizer(self.model, settings)
        self.schedule = build_schedule(self.optimizer, settings, self.plan.total_steps)
        flat = [(name, split, loader) for name, splits in held_out.items() for split, loader in splits.items()]
        self.model, self.optimizer, self.train_loader, *prepared = prepare_for_training(
            self.accelerator, self.model, self.optimizer, train_loader, *[loader for *_, loader in flat])
        self.held_out = {name: {} for name in self.tasks}
        for (name, split, _), loader in zip(flat, prepared):
            self.held_out[name][split] = loader
        stop = settings.early_stopping
        self.stopper = EarlyStopper(self.metric, mode, stop.patience, stop.target, stop.min_delta)
        self.checkpoints = Checkpointer(
            self.run, recipe, model=self.model, optimizer=self.optimizer, schedule=self.schedule,
            accelerator=self.accelerator, stopper=self.stopper, plan=self.plan, train_loader=self.train_loader,
            train_data=self.train_data, echo=self.echo)

    def _load_model(self):
        """Each task's model as its own run would load it (same seed), then all given the first one's body."""
        model_dir = resolve_model(self.recipe.model)
        check_weights_safe(model_dir, allow_pickle=self.recipe.allow_pickle)
        models, tokenizer = {}, None
        for name, task in self.tasks.items():
            set_seed(self.recipe.train.seed)
            models[name], tokenizer = task.load_model(model_dir)
        model = MultiTaskModel(models)
        for name in models:
            _, method = apply_method(models[name], self.recipe.method)
        trainable, total = count_parameters(model)  # the whole: one body, every head
        method = dataclasses.replace(method, trainable=trainable, total=total)
        self.echo(f"{method.describe()}; {len(models)} heads on one shared body")
        return model, tokenizer, method

    def _loaders(self) -> tuple[DataLoader, dict]:
        settings, names = self.recipe.train, list(self.tasks)
        collates = []
        for name, task in self.tasks.items():
            data = self.datasets[name]["train"]
            loader = task.make_loader(data, self.tokenizer, batch_size=settings.batch_size, order="shuffle",
                                      seed=settings.seed)
            if task.train_loader(loader, data, self.splits[name].train, self.tokenizer, self.echo) is not loader:
                raise RecipeError(f"tasks.{name}.imbalance: re-sampling and augmentation are not supported in a "
                                  f"multi-task recipe (an imbalance loss is); remove them")
            collates.append(loader.collate_fn)
        self.train_data = MixedDataset([self.datasets[name]["train"] for name in names])
        self.rows = {name: len(self.datasets[name]["train"]) for name in names}
        spec = self.recipe.multi_task
        self.weights = mixing_weights(self.rows, spec.mixing, spec.temperature)
        lengths = [self.datasets[n]["train"].lengths() for n in names] if settings.group_by_length else None
        sampler = MixedBatchSampler(self.train_data.offsets, [self.weights[n] for n in names], settings.batch_size,
                                    settings.seed, lengths=lengths)
        train = DataLoader(self.train_data, batch_sampler=sampler, collate_fn=MixedCollate(collates))
        eval_batch = settings.eval_batch_size or settings.batch_size * 2
        held_out = {name: {split: task.make_loader(ds, self.tokenizer, batch_size=eval_batch, order="by_length")
                           for split, ds in self.datasets[name].items() if split != "train"}
                    for name, task in self.tasks.items()}
        return train, held_out

    # ---- 2. train ---------------------------------------------------------------------------
    def train(self) -> None:
        run, plan = self.run, self.plan
        self.checkpoints.start(self.recipe.resume)
        run.write_recipe(self.recipe.model_copy(update={"resume": False, "overwrite": False}),
                         header=f"train.lr {self.recipe.train.lr:g}: {self.recipe.lr_source}")
        for name, task in self.tasks.items():
            task_run = RunDir(task.recipe.output)
            task_run.path.mkdir(parents=True, exist_ok=True)
            task_run.write_recipe(task.resolved_recipe(), header=f"task {name} of the multi-task run {run.path}")
        self.echo(f"training {plan.total_steps} steps ({plan.steps_per_epoch}/epoch) on {self.accelerator.device}, "
                  f"tasks drawn {self.recipe.multi_task.mixing} ("
                  + ", ".join(f"{n} {p:.2f}" for n, p in self.weights.items())
                  + f"), evaluating every {plan.eval_every} steps; run directory: {run.path}")
        with self.checkpoints.signals():
            self.state = train_loop(
                model=self.model, optimizer=self.optimizer, schedule=self.schedule, train_loader=self.train_loader,
                accelerator=self.accelerator, plan=plan, stopper=self.stopper, compute_loss=self._loss,
                evaluate=lambda: self._evaluate("validation"), on_best=self._save_best, log=run.log,
                checkpoints=self.checkpoints, state=self.checkpoints.restore())
        self.train_seconds = time.perf_counter() - self.state.started

    def _loss(self, model, batch):
        """The loss of one batch: its task's compute_loss on that task's model (body + its head)."""
        name = list(self.tasks)[int(batch[TASK_KEY])]
        rows = {key: value for key, value in batch.items() if key != TASK_KEY}
        return self.tasks[name].compute_loss(self.accelerator.unwrap_model(model).models[name], rows)

    def _evaluate(self, split: str) -> dict:
        with evaluation_context(self.accelerator, self.recipe.train):  # each task's model: no autocast wrapper
            return evaluate_tasks(self.tasks, self.accelerator.unwrap_model(self.model), self.held_out,
                                  self.accelerator, split, self.metric)

    def _save_best(self, record: dict) -> None:
        models = self.accelerator.unwrap_model(self.model).models
        for name, task in self.tasks.items():  # RUN/tasks/<name>/model: body + that task's head
            self.method.save(models[name], self.tokenizer, RunDir(task.recipe.output))

    # ---- 3. finish --------------------------------------------------------------------------
    def finish(self) -> dict:
        state = self.state
        self._best_back()
        splits = [split for split in ("validation", "test") if any(split in held for held in self.held_out.values())]
        final = {split: self._evaluate(split) for split in splits}
        for split, metrics in final.items():
            self.run.log({"type": "eval", "split": split, "step": self.stopper.best_step, "final": True, **metrics})
        result = {
            "task": self.recipe.task, "model": self.recipe.model,
            "best": {"metric": self.stopper.metric, "value": self.stopper.best, "step": self.stopper.best_step},
            "stop_reason": state.stop_reason, "steps": state.step,
            "epochs": round(state.step / self.plan.steps_per_epoch, 4),
            **final,
            "tasks": self._task_results(final),
            "mixing": {"rule": self.recipe.multi_task.mixing, "temperature": self.recipe.multi_task.temperature,
                       "rows": self.rows, "weights": self.weights},
            "timing": timing(state, time.perf_counter() - self.started, self.train_seconds),
            "environment": environment(self.accelerator),
            "method": self.method.summary(),
            "learning_rate": {"value": self.recipe.train.lr, "source": self.recipe.lr_source},
            "memory": peak_memory(self.accelerator.device),
            "model_dirs": {name: str(RunDir(task.recipe.output).model_dir) for name, task in self.tasks.items()},
        }
        self.run.write_eval(result)
        self.checkpoints.finish()
        return result

    def _best_back(self) -> None:
        """Each task's best weights back (the body is the same in all: saved at the same step), then its
        after_training (e.g. a tuned decision threshold, stored in RUN/tasks/<name>/model)."""
        models = self.accelerator.unwrap_model(self.model).models
        for name, task in self.tasks.items():
            self.method.load_best(models[name], RunDir(task.recipe.output), load_best_weights, self.tokenizer)
        for name, task in self.tasks.items():
            with evaluation_context(self.accelerator, self.recipe.train):
                task.after_training(models[name], self.held_out[name]["validation"], self.accelerator,
                                    RunDir(task.recipe.output), self.echo)

    def _task_results(self, final: dict) -> dict:
        """{task: its final metrics per split, rows, sources, model}; also RUN/tasks/<name>/eval.json."""
        out = {}
        for name, task in self.tasks.items():
            task_run = RunDir(task.recipe.output)
            out[name] = {"task": task.name, "stop_metric": task.stop_metric,
                         **{split: metrics[name] for split, metrics in final.items() if name in metrics},
                         "data": {split: len(ds) for split, ds in self.datasets[name].items()},
                         "sources": self.splits[name].sources, "model_dir": str(task_run.model_dir)}
            task_run.write_eval({**out[name], "multi_task_run": str(Path(self.recipe.output))})
        return out
