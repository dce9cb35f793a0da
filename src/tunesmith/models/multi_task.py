"""One shared encoder body with one head per task: each task's own sequence-classification model (built as its
single-task run builds it), all holding the same body module. A task's model is then a plain Hugging Face model
(body + its head) that `save_pretrained` writes and `from_pretrained` / `tunesmith predict` load."""

from __future__ import annotations

import torch

from tunesmith.errors import ModelError


class MultiTaskModel(torch.nn.Module):
    """`models[name]` is task `name`'s model; the body is one module shared by all of them (saved once in a
    checkpoint: tied tensors are stored once)."""

    def __init__(self, models: dict):
        super().__init__()
        self.models = torch.nn.ModuleDict(models)
        first = next(iter(models.values()))
        prefix = getattr(first, "base_model_prefix", "")
        body = getattr(first, prefix, None) if prefix else None
        if body is None:
            raise ModelError(f"{type(first).__name__} has no body to share (no base_model_prefix module)")
        for name, model in models.items():
            if type(getattr(model, prefix, None)) is not type(body):
                raise ModelError(f"task {name}: its model's body is not a {type(body).__name__}; the tasks of a "
                                 f"multi-task run share one body")
            setattr(model, prefix, body)

    def forward(self, task: str, **batch):
        return self.models[task](**batch)
