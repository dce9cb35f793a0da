"""Tokenize tables once, then batch them with dynamic padding (each batch padded to its longest row)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler
from transformers import DataCollatorWithPadding
from transformers.trainer_pt_utils import get_length_grouped_indices


class EncodedDataset(Dataset):
    """A list of tokenized examples (dicts of token-id lists plus an optional label)."""

    def __init__(self, features: list[dict]):
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict:
        return self.features[index]

    def lengths(self) -> list[int]:
        return [len(f["input_ids"]) for f in self.features]


def encode_texts(
    tokenizer, texts: Sequence[str], pairs: Sequence[str] | None = None, *,
    max_length: int, labels: Sequence | None = None,
) -> EncodedDataset:
    """Tokenize with truncation and no padding; padding happens per batch in the collator."""
    encoded = tokenizer(
        list(texts), list(pairs) if pairs is not None else None,
        truncation="longest_first" if pairs is not None else True, max_length=max_length, padding=False,
    )
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded]
    features = [{k: encoded[k][i] for k in keys} for i in range(len(texts))]
    if labels is not None:
        for feature, label in zip(features, labels):
            feature["labels"] = label
    return EncodedDataset(features)


def length_grouped_batches(lengths: list[int], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """One epoch's batches of rows of similar length: transformers' grouping (a random permutation, cut into
    mega-batches of 50 batches, each sorted by length), then the full batches in a random order, the short last
    batch last. Transformers' own order runs each mega-batch from its longest batch to its shortest, so every 50
    steps the last updates come from the shortest rows (SST-2, 3 seeds: 0.8 point of dev accuracy lower at the
    end of an epoch, 7 points after 50 steps; docs/benchmarks.md). Same batches, same padding."""
    indices = get_length_grouped_indices(lengths, batch_size, generator=generator)
    batches = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
    full = [batch for batch in batches if len(batch) == batch_size]
    order = torch.randperm(len(full), generator=generator).tolist()
    return [full[i] for i in order] + [batch for batch in batches if len(batch) < batch_size]


class ShuffledLengthGroupedSampler(Sampler):
    """Row indices in the order of length_grouped_batches (a DataLoader with the same batch_size cuts them back
    into those batches); each epoch draws a new order from `generator`."""

    def __init__(self, batch_size: int, lengths: list[int], generator: torch.Generator):
        self.batch_size, self.lengths, self.generator = batch_size, lengths, generator

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        batches = length_grouped_batches(self.lengths, self.batch_size, self.generator)
        return iter([index for batch in batches for index in batch])


def length_order(dataset: EncodedDataset) -> list[int]:
    """Indices from longest to shortest: evaluation batches then hold rows of similar length."""
    lengths = dataset.lengths()
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def make_loader(
    dataset: EncodedDataset, tokenizer, *, batch_size: int, order: str, seed: int = 0, collate_fn=None,
) -> DataLoader:
    """Batches padded to their longest row (by `collate_fn`, default: the tokenizer's padding). `order`:

    - "grouped": shuffled, but rows of similar length share a batch (random mega-batches of 50
      batches, sorted by length inside; the batches then in random order), which cuts padding;
      seed-determined. For training.
    - "shuffle": plain seeded shuffle. For training when length grouping is off.
    - "by_length": longest first, not shuffled. For evaluation, where order does not matter.
    - "sequential": the dataset's own order. For predictions returned row by row.
    """
    generator = torch.Generator().manual_seed(seed)
    if order == "grouped":
        sampler = ShuffledLengthGroupedSampler(batch_size, lengths=dataset.lengths(), generator=generator)
    elif order == "shuffle":
        sampler = RandomSampler(dataset, generator=generator)
    elif order == "by_length":
        sampler = length_order(dataset)
    elif order == "sequential":
        sampler = None
    else:
        raise ValueError(f"unknown batch order {order!r}")
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler,
        collate_fn=collate_fn or DataCollatorWithPadding(tokenizer, return_tensors="pt"),
    )
