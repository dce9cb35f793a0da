"""Task registry: a new task is one module plus one line here."""

from __future__ import annotations

from tunesmith.tasks.causal_lm import CausalLMTask
from tunesmith.tasks.classification import ClassificationTask
from tunesmith.tasks.sft import SFTTask

TASKS = {
    "classification": ClassificationTask,
    "causal_lm": CausalLMTask,
    "sft": SFTTask,
}


def make_task(recipe):
    return TASKS[recipe.task](recipe)
