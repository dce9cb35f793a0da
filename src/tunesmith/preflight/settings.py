"""The training settings against the method and the data: a learning rate far from the method's own, a warm-up
that never ends, a run of a handful of steps, a batch larger than the training set."""

from __future__ import annotations

from tunesmith.config.method import LOW_LR_FACTOR, default_lr
from tunesmith.data.findings import Finding
from tunesmith.train.optim import warmup_steps

HIGH_LR_FACTOR = 100  # 100x the method's default: a pretrained model diverges or forgets at such rates
FEW_STEPS = 10


def check_training_settings(context) -> list[Finding]:
    recipe = context.recipe
    settings, method = recipe.train, recipe.method
    own = default_lr(method)
    found = []
    if settings.lr * LOW_LR_FACTOR <= own:
        found.append(Finding("lr_below_method", "warning", f"train.lr {settings.lr:g} is {own / settings.lr:.0f}x "
                             f"below method {method.name}'s default ({own:g}): the run may learn little; leave "
                             f"train.lr out or try --set train.lr={own:g}"))
    elif settings.lr >= HIGH_LR_FACTOR * own:
        found.append(Finding("lr_above_method", "warning", f"train.lr {settings.lr:g} is {settings.lr / own:.0f}x "
                             f"above method {method.name}'s default ({own:g}): fine-tuning at this rate often "
                             f"diverges or forgets the pretrained model; try --set train.lr={own:g}"))
    warmup = warmup_steps(settings, context.total_steps)
    if warmup >= context.total_steps and context.total_steps > 0:
        found.append(Finding("warmup_too_long", "warning", f"{warmup} warm-up steps for a {context.total_steps}-step "
                             f"run: the learning rate never reaches train.lr; lower train.warmup (e.g. 0.06)"))
    if context.total_steps < FEW_STEPS:
        found.append(Finding("few_steps", "info", f"the run plans {context.total_steps} optimizer steps: too few "
                             f"for most models to learn a task (raise train.epochs or lower train.batch_size)"))
    rows = len(context.datasets["train"])
    if settings.batch_size > rows:
        found.append(Finding("batch_over_rows", "info", f"train.batch_size {settings.batch_size} is more than the "
                             f"{rows} training examples: every step sees the whole set"))
    return found
