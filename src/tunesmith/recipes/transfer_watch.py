"""`transfer.watch: RUN`: while a run trains, also evaluate an earlier run's validation set, so forgetting its
task is seen (metrics.jsonl records with split "watch", eval.json "transfer", the report's transfer section).

The watched run's task and data come from its RUN/recipe.yaml (paths relative to where tunesmith runs, as
export rebuilds them); what its training stored in its model config (labels, tuned threshold, target
scaling) is restored as predict restores it; its validation rows are encoded with this run's tokenizer.
It is evaluated before the first step (step 0), after every validation of this run (same step), and on the
best model at the end. Two ways, chosen from the heads:

- direct: this run's model answers the watched task itself (same task family and label set: the head was
  kept, or both are language models; causal_lm / sft runs watched from causal_lm / sft / dpo runs). The
  watched task's own `evaluate` runs on this run's model.
- body: a classification-family run with another head (new labels, another task). A copy of the watched
  run's model keeps its own head; before each evaluation this run's body weights are copied into it. Needs
  a method that trains the body's weights in place (full, freeze, bitfit): a LoRA/DoRA adapter is refused.

dpo runs cannot be watched (their metrics need the reference model's scores of the pairs); a language model
cannot watch a classifier, nor the other way round. Each is a clear error before training starts.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

from tunesmith.config.recipe import load_recipe
from tunesmith.errors import DataError, RecipeError
from tunesmith.models.parent_run import LM_TASKS, find_parent_run, scalar_metrics
from tunesmith.tasks import make_task
from tunesmith.train.precision import evaluation_context

WATCH_SPLIT = "watch"
ADAPTER_METHODS = ("lora", "dora")


class NoWatch:
    """No transfer.watch: every hook leaves the run as it is."""

    def logging(self, log):
        return log

    def around(self, evaluate, model):
        return evaluate

    def before_training(self, model, log, records) -> None:
        pass

    def results(self, model, log) -> dict:
        return {}


def make_watch(recipe, task, model, tokenizer, accelerator, echo=print):
    """The run's watch (Watch), or NoWatch when the recipe has no transfer.watch."""
    if recipe.transfer is None:
        return NoWatch()
    return Watch(recipe, task, model, tokenizer, accelerator, echo)


class Watch:
    def __init__(self, recipe, task, model, tokenizer, accelerator, echo=print):
        path = recipe.transfer.watch
        watched = find_parent_run(path)
        if watched is None:
            raise RecipeError(f"transfer.watch: {path} is not a finished tunesmith run directory")
        self.run, self.accelerator, self.train_spec = watched, accelerator, recipe.train
        self.task = make_task(load_recipe(watched.recipe_path))
        self.how = watch_mode(watched, task, recipe.method.name, accelerator.unwrap_model(model).config)
        try:
            splits = self.task.load_data()
        except DataError as exc:
            raise DataError(f"{exc} (transfer.watch rebuilds {path}'s validation set from the data: section of "
                            f"{watched.recipe_path}; its paths are relative to where tunesmith runs)") from None
        self.model = None
        if self.how == "body":
            self.model, _ = self.task.load_trained(watched.model_dir)
            check_same_body(self.model, accelerator.unwrap_model(model), path)
            self.model.to(accelerator.device).eval()
        self.task.use_trained(SimpleNamespace(config=saved_config(watched, self.task)))
        self.task.fit_max_length(accelerator.unwrap_model(model).config)
        dataset = self.task.encode(splits.validation, tokenizer)
        batch = recipe.train.eval_batch_size or recipe.train.batch_size * 2
        self.loader = accelerator.prepare(self.task.make_loader(dataset, tokenizer, batch_size=batch,
                                                                order="by_length"))
        self.examples, self.metric = len(dataset), self.task.stop_metric
        self.pending: dict | None = None
        self.before: dict | None = None
        echo(f"transfer.watch: {path} ({watched.task}, {len(dataset)} validation examples, {self.metric}; "
             f"{'this model answers it' if self.how == 'direct' else 'its head on this body'})")

    def evaluate(self, model) -> dict:
        """The watched task's metrics of `model` on the watched validation set."""
        target = model
        if self.how == "body":
            body = self.accelerator.unwrap_model(model).base_model
            self.model.base_model.load_state_dict(body.state_dict())
            target = self.model
        with evaluation_context(self.accelerator, self.train_spec):  # the body's copy: no autocast wrapper
            return self.task.evaluate(target, self.loader, self.accelerator, desc=WATCH_SPLIT)

    def logging(self, log):
        """`log`, writing the pending watch record after each validation record of the loop."""
        def log_with_watch(record: dict) -> None:
            log(record)
            if (record.get("type") == "eval" and record.get("split", "validation") == "validation"
                    and not record.get("final") and self.pending is not None):
                log({"type": "eval", "split": WATCH_SPLIT, "step": record["step"], "epoch": record.get("epoch"),
                     "run": str(self.run.path), **self.pending})
                self.pending = None

        return log_with_watch

    def around(self, evaluate, model):
        """`evaluate` (the loop's validation), followed by the watched evaluation (logged after it)."""
        def evaluate_and_watch() -> dict:
            metrics = evaluate()
            self.pending = self.evaluate(model)
            return metrics

        return evaluate_and_watch

    def before_training(self, model, log, records: list[dict]) -> None:
        """Step 0, before any training step; a resumed run keeps the step-0 record it already has."""
        kept = [r for r in records if r.get("split") == WATCH_SPLIT and r.get("step") == 0 and not r.get("final")]
        self.before = kept[0] if kept else {"step": 0, **self.evaluate(model)}
        if not kept:
            log({"type": "eval", "split": WATCH_SPLIT, "epoch": 0.0, "run": str(self.run.path), **self.before})

    def results(self, model, log) -> dict:
        """eval.json "transfer": the watched metric before training, on the best model, and the change."""
        after = self.evaluate(model)
        log({"type": "eval", "split": WATCH_SPLIT, "final": True, "run": str(self.run.path), **after})
        before = {k: v for k, v in scalar_metrics(self.before).items() if k not in ("step", "epoch")}
        after = scalar_metrics(after)
        change = None
        if isinstance(before.get(self.metric), float) and isinstance(after.get(self.metric), float):
            change = after[self.metric] - before[self.metric] if math.isfinite(after[self.metric]) else None
        reported = scalar_metrics(self.run.eval.get("validation")).get(self.metric)
        return {"transfer": {"watch": {
            "run": str(self.run.path.resolve()), "task": self.run.task, "how": self.how, "split": "validation",
            "examples": self.examples, "metric": self.metric, "mode": self.task.metric_mode(self.metric),
            "reported": reported, "before": before, "after": after, "change": change}}}


def watch_mode(watched, task, method: str, config) -> str:
    """"direct" or "body" (see the module docstring); a clear RecipeError where neither works."""
    key = f"transfer.watch: {watched.path}"
    if watched.task == "dpo":
        raise RecipeError(f"{key} is a dpo run: its metrics need the reference model's scores of its pairs, "
                          f"which watch does not keep; watch a classification-family, causal_lm or sft run")
    if (watched.task in LM_TASKS) != (task.name in LM_TASKS):
        raise RecipeError(f"{key} is a {watched.task} run and this is a {task.name} run: a language model and a "
                          f"classifier cannot answer each other's task; watch a run of the same family")
    if watched.task in LM_TASKS:
        return "direct"
    labels = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    if watched.task == task.name and watched.id2label == labels:
        return "direct"
    if method in ADAPTER_METHODS:
        raise RecipeError(f"{key}: this run's head differs from the watched run's, so the watched head is put on "
                          f"this body, which a {method} adapter does not train in place; use method full, freeze "
                          f"or bitfit, or keep the head (same task and labels)")
    return "body"


def check_same_body(watched_model, model, path) -> None:
    """The watched model's body must have this model's weights' names and shapes (body mode copies them)."""
    theirs = {k: tuple(v.shape) for k, v in watched_model.base_model.state_dict().items()}
    ours = {k: tuple(v.shape) for k, v in model.base_model.state_dict().items()}
    if theirs != ours:
        differ = sorted(set(theirs.items()) ^ set(ours.items()))[:2]
        raise RecipeError(f"transfer.watch: {path}'s model has another body than this run's (e.g. {differ}); "
                          f"watch a run of the same architecture")


def saved_config(watched, task):
    """The watched model's config, as its task's use_trained reads it (labels, threshold, scaling)."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(watched.model_dir, local_files_only=True,
                                      trust_remote_code=task.recipe.trust_remote_code)
