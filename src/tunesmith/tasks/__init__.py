"""Task registry: a new task is one module plus one line here."""

from __future__ import annotations

from tunesmith.tasks.classification import ClassificationTask

TASKS = {
    "classification": ClassificationTask,
}


def make_task(recipe):
    return TASKS[recipe.task](recipe)
