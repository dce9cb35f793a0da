"""What every preflight check reads: the run as set up, before its first step."""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np
import torch


@dataclass
class PreflightContext:
    recipe: object  # the validated recipe (read only)
    task: object  # tunesmith.tasks.Task, after load_model and encode
    model: object  # the model to train, method applied (a PeftModel under lora/dora), not wrapped for DDP
    tokenizer: object
    method: object  # the applied tunesmith.methods Method (save / load_best)
    splits: object  # the task's splits (frames(), train, validation)
    datasets: dict  # {split: encoded dataset}
    total_steps: int  # optimizer steps the run plans

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def fixed_batch(self, split: str = "train", rows: int | None = None) -> dict:
        """One batch of the first `rows` (default: train.batch_size) examples of `split`, as the task batches
        them (its own loader; the run's loaders and their samplers are not touched), on the model's device."""
        dataset = self.datasets[split]
        size = min(rows or self.recipe.train.batch_size, len(dataset))
        subset = torch.utils.data.Subset(dataset, range(size))
        loader = self.task.make_loader(subset, self.tokenizer, batch_size=size, order="sequential")
        batch = next(iter(loader))
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def sample_rows(self, split: str = "train", limit: int = 2000) -> list[dict]:
        """Up to `limit` encoded examples of `split`, spread evenly over it."""
        dataset = self.datasets[split]
        n = len(dataset)
        index = range(n) if n <= limit else np.linspace(0, n - 1, limit).astype(int).tolist()
        return [dataset[i] for i in index]

