"""Task registry: a new task is one module plus one line here (tests/tasks/test_task_matrix.py tests it)."""

from __future__ import annotations

import difflib

from tunesmith.errors import RecipeError
from tunesmith.tasks.base import Task
from tunesmith.tasks.causal_lm import CausalLMTask
from tunesmith.tasks.classification import ClassificationTask
from tunesmith.tasks.dpo import DPOTask
from tunesmith.tasks.multi_label import MultiLabelTask
from tunesmith.tasks.regression import RegressionTask
from tunesmith.tasks.sft import SFTTask
from tunesmith.tasks.token_classification import TokenClassificationTask

TASKS: dict[str, type[Task]] = {
    "classification": ClassificationTask,
    "causal_lm": CausalLMTask,
    "sft": SFTTask,
    "regression": RegressionTask,
    "multi_label": MultiLabelTask,
    "token_classification": TokenClassificationTask,
    "dpo": DPOTask,
}


def task_class(name: str) -> type[Task]:
    """The registered task class, or a RecipeError naming the key with a close match."""
    if name == "multi_task":  # config/multi_task.py: trained by recipes/multi_task.py, used through RUN/tasks/<name>
        raise RecipeError("task: multi_task recipes are run by tunesmith train only; use a finished multi-task run "
                          "with predict/evaluate RUN --task NAME (RUN/tasks/NAME is an ordinary run)")
    if name not in TASKS:
        close = difflib.get_close_matches(str(name), list(TASKS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise RecipeError(f"key 'task': unknown task '{name}'{hint}; choose one of {', '.join(TASKS)}")
    return TASKS[name]


def make_task(recipe) -> Task:
    return task_class(recipe.task)(recipe)
