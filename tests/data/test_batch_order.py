"""The length-grouped training order with shuffled batches: transformers' batches, in a random order."""

from __future__ import annotations

import random

import torch
from transformers.trainer_pt_utils import get_length_grouped_indices

from tunesmith.data.encode import ShuffledLengthGroupedSampler

RANDOM = random.Random(7)
LENGTHS = [RANDOM.randint(1, 60) for _ in range(1_000)]  # 1,000 rows: 31 full batches of 32 + 8


def chunks(indices: list[int], size: int = 32) -> list[list[int]]:
    return [indices[i:i + size] for i in range(0, len(indices), size)]


def test_same_batches_as_transformers_in_another_order_with_the_short_batch_last():
    ours = list(ShuffledLengthGroupedSampler(32, LENGTHS, torch.Generator().manual_seed(3)))
    theirs = get_length_grouped_indices(LENGTHS, 32, generator=torch.Generator().manual_seed(3))
    assert sorted(ours) == list(range(len(LENGTHS)))
    assert sorted(map(tuple, chunks(ours))) == sorted(map(tuple, chunks(theirs)))  # the same batches: same padding
    assert chunks(ours)[-1] == chunks(theirs)[-1] and len(chunks(ours)[-1]) == 8  # batch boundaries kept
    assert chunks(ours) != chunks(theirs)


def test_batch_length_no_longer_falls_step_after_step():
    """transformers' order: inside each mega-batch (here 7 batches: 1,000 // (32 x 4)), batch lengths only fall."""
    def longest(indices):
        return [max(LENGTHS[i] for i in batch) for batch in chunks(indices)[:-1]]

    theirs = longest(get_length_grouped_indices(LENGTHS, 32, generator=torch.Generator().manual_seed(0)))
    ours = longest(list(ShuffledLengthGroupedSampler(32, LENGTHS, torch.Generator().manual_seed(0))))
    rises = lambda seq: sum(b > a for a, b in zip(seq, seq[1:]))  # noqa: E731
    assert rises(theirs) <= 5  # only where a mega-batch starts (4 boundaries) or the longest batch was moved first
    assert rises(ours) >= 10


def test_the_order_follows_the_generator():
    def order(seed):
        return list(ShuffledLengthGroupedSampler(32, LENGTHS, torch.Generator().manual_seed(seed)))

    assert order(5) == order(5) and order(5) != order(6)
    generator = torch.Generator().manual_seed(5)
    sampler = ShuffledLengthGroupedSampler(32, LENGTHS, generator)
    first, second = list(sampler), list(sampler)
    assert first != second  # each epoch draws a new order from the same generator
    generator.manual_seed(5)
    assert list(sampler) == first  # so resetting the generator replays an epoch (resume)
