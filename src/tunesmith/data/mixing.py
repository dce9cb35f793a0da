"""Multi-task batches: each batch holds rows of one task, the task drawn by a mixing rule (as T5 and MT-DNN mix).

    weights = mixing_weights({"a": 6000, "b": 1000}, "temperature", 2.0)   # p ~ rows ** (1 / T)
    sampler = MixedBatchSampler(offsets, sizes, weights, batch_size, seed)  # index batches into one dataset
    loader = DataLoader(MixedDataset(parts), batch_sampler=sampler, collate_fn=MixedCollate(collates))

Every random choice of an epoch (each task's shuffle and the task of every batch) comes from the sampler's one
torch.Generator (`sampler.generator`), so train/checkpoint.py saves and restores it like any sampler's: a resumed
run draws the same tasks and rows. An epoch has as many batches as the tasks' batches together; a task drawn more
often than its rows last starts a new shuffle of them.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, Sampler

from tunesmith.data.encode import length_grouped_batches

TASK_KEY = "task_id"  # each feature's (and each batch's) task index


def mixing_weights(sizes: dict[str, int], rule: str, temperature: float = 1.0) -> dict[str, float]:
    """{task: probability that a batch is that task's}: proportional to its rows, to rows ** (1 / temperature),
    or equal."""
    if rule == "equal":
        raw = {name: 1.0 for name in sizes}
    elif rule == "proportional":
        raw = {name: float(n) for name, n in sizes.items()}
    elif rule == "temperature":
        raw = {name: float(n) ** (1.0 / temperature) for name, n in sizes.items()}
    else:
        raise ValueError(f"unknown mixing rule {rule!r}")
    total = sum(raw.values())
    return {name: value / total for name, value in raw.items()}


def draw_tasks(weights: list[float], count: int, generator: torch.Generator) -> list[int]:
    """`count` task indices drawn independently with probabilities `weights`."""
    if count <= 0:
        return []
    return torch.multinomial(torch.tensor(weights, dtype=torch.float64), count, replacement=True,
                             generator=generator).tolist()


class MixedDataset(Dataset):
    """The tasks' encoded datasets end to end; each feature carries its task's index under TASK_KEY."""

    def __init__(self, parts: list):
        self.parts = parts
        self.offsets = [0]
        for part in parts:
            self.offsets.append(self.offsets[-1] + len(part))

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getitem__(self, index: int) -> dict:
        for task, (start, end) in enumerate(zip(self.offsets, self.offsets[1:])):
            if start <= index < end:
                return {**self.parts[task][index - start], TASK_KEY: task}
        raise IndexError(index)


class MixedBatchSampler(Sampler):
    """Index batches into a MixedDataset, one task per batch, tasks drawn with `weights` from `generator`.
    With `lengths` (each task's row lengths; train.group_by_length) a task's rows are shuffled and then grouped by
    length as a single-task run's are (data.encode.length_grouped_batches: less padding)."""

    def __init__(self, offsets: list[int], weights: list[float], batch_size: int, seed: int,
                 lengths: list[list[int]] | None = None):
        self.offsets, self.weights, self.batch_size = offsets, weights, batch_size
        self.sizes = [end - start for start, end in zip(offsets, offsets[1:])]
        if lengths is not None and [len(x) for x in lengths] != self.sizes:
            raise ValueError("MixedBatchSampler: one length per row of each task")
        self.lengths = lengths
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return sum(-(-size // self.batch_size) for size in self.sizes)

    def _shuffled_batches(self, task: int) -> list[list[int]]:
        start = self.offsets[task]
        if self.lengths is not None:
            batches = length_grouped_batches(self.lengths[task], self.batch_size, self.generator)
            return [[start + i for i in batch] for batch in batches]
        order = torch.randperm(self.sizes[task], generator=self.generator).tolist()
        return [[start + i for i in order[j:j + self.batch_size]] for j in range(0, len(order), self.batch_size)]

    def __iter__(self):
        tasks = draw_tasks(self.weights, len(self), self.generator)
        queues = [self._shuffled_batches(task) for task in range(len(self.sizes))]
        for task in tasks:
            if not queues[task]:
                queues[task] = self._shuffled_batches(task)
            yield queues[task].pop(0)


class MixedCollate:
    """Pads a one-task batch with that task's collate function and adds its task index (a 0-d tensor)."""

    def __init__(self, collates: list):
        self.collates = collates

    def __call__(self, features: list[dict]) -> dict:
        task = features[0][TASK_KEY]
        batch = self.collates[task]([{k: v for k, v in f.items() if k != TASK_KEY} for f in features])
        batch[TASK_KEY] = torch.tensor(task)
        return batch
