"""`task: multi_task`: one shared body, one head per task, trained on batches drawn task by task.

    task: multi_task
    model: minilm
    tasks:                       # name -> that task's part of a recipe
      sentiment: {task: classification, data: {train: sst2.csv}}
      spam: {task: classification, data: {train: spam.csv, columns: {text: sms}}, metric: accuracy}
    multi_task: {mixing: temperature, temperature: 2.0}
    train: {...}                 # shared: model, method, train, output, checkpoint, ... at the top

Each task's part is validated as the recipe it would be on its own (recipes/multi_task.py: sub_recipes): the top
level without `tasks`/`multi_task`, with the task's `task`, `data` and task sections (imbalance, regression,
multi_label) and its own early-stopping metric (`metric`, default: the task's).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MULTI_TASK = "multi_task"
HEAD_TASKS = ("classification", "regression", "multi_label")  # one head on the body's pooled output
ENTRY_KEYS = ("task", "data", "metric", "imbalance", "regression", "multi_label")
NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
# top-level sections a multi-task run does not run (they are per-task or single-task features)
NOT_SUPPORTED = ("init", "transfer", "tune", "quality_gate", "baselines", "preflight", "inspect", "imbalance",
                 "regression", "multi_label", "lm", "token_classification", "preference", "report")


class MultiTaskSpec(BaseModel):
    """How each training batch's task is drawn: p(task) proportional to its training rows n, to n ** (1 / T)
    (temperature T; 1 is proportional, larger flattens towards equal), or 1 / (number of tasks)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    mixing: Literal["proportional", "temperature", "equal"] = "proportional"
    temperature: float = Field(2.0, gt=0, description="mixing: temperature: p(task) ~ rows ** (1 / temperature)")


def check_tasks(tasks: dict, fields_set: set[str]) -> None:
    """The shape of a multi-task recipe (the tasks' own parts are validated as recipes later); ValueError."""
    if not isinstance(tasks, dict) or len(tasks) < 2:
        raise ValueError("task: multi_task needs 'tasks': a mapping of at least two task names to their "
                         "parts (task, data, ...)")
    for name, entry in tasks.items():
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise ValueError(f"tasks: name {name!r} must start with a letter and hold only letters, digits, '_' "
                             f"or '-' (it names RUN/tasks/<name> and predict --task)")
        if not isinstance(entry, dict):
            raise ValueError(f"tasks.{name}: expected a mapping with task and data")
        unknown = sorted(set(entry) - set(ENTRY_KEYS))
        if unknown:
            raise ValueError(f"tasks.{name}: unknown key '{unknown[0]}'; a task's part holds {', '.join(ENTRY_KEYS)}")
        if entry.get("task") not in HEAD_TASKS:
            raise ValueError(f"tasks.{name}.task: {entry.get('task')!r} is not supported in a multi-task recipe; "
                             f"choose one of {', '.join(HEAD_TASKS)} (heads on one shared encoder body)")
        if "data" not in entry:
            raise ValueError(f"tasks.{name}: missing key 'data'")
    refused = [key for key in NOT_SUPPORTED if key in fields_set]
    if "data" in fields_set:
        raise ValueError("data: a multi-task recipe gives each task its data under tasks.<name>.data")
    if refused:
        where = "tasks.<name>." if refused[0] in ENTRY_KEYS else ""
        raise ValueError(f"{refused[0]}: not supported at the top of a multi-task recipe"
                         f"{' (give it per task: ' + where + refused[0] + ')' if where else ''}")
