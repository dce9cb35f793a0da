"""Re-sampling: class frequencies reach the target, epochs are seed-determined and differ."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tunesmith.imbalance.sampling import ClassResampler, target_counts

LABELS = [0] * 950 + [1] * 50  # 1:19


def draw(sampler, epochs):
    return [list(sampler) for _ in range(epochs)]


def test_oversampling_balances_classes_and_keeps_the_epoch_length():
    sampler = ClassResampler(LABELS, "oversample", ratio=1.0, seed=3)
    assert len(sampler) == 1000
    assert sampler.class_probabilities().tolist() == pytest.approx([0.5, 0.5])
    epochs = draw(sampler, 5)
    labels = np.asarray(LABELS)[np.concatenate(epochs)]
    assert all(len(e) == 1000 for e in epochs)
    assert labels.mean() == pytest.approx(0.5, abs=0.03)  # 5000 draws: sd ~0.007
    assert len(set(np.concatenate(epochs)[labels == 1])) == 50  # every minority row is drawn


def test_oversampling_to_a_partial_ratio():
    sampler = ClassResampler(LABELS, "oversample", ratio=0.2, seed=0)
    # minority drawn as if it had 0.2 * 950 = 190 rows: 190 / 1140 of the draws
    assert target_counts([950, 50], "oversample", 0.2).tolist() == [950, 190]
    labels = np.asarray(LABELS)[np.concatenate(draw(sampler, 5))]
    assert labels.mean() == pytest.approx(190 / 1140, abs=0.02)


def test_undersampling_keeps_every_minority_row_and_a_fresh_majority_draw():
    sampler = ClassResampler(LABELS, "undersample", ratio=0.5, seed=0)
    assert len(sampler) == 150  # 50 minority + ceil(50 / 0.5) = 100 majority
    first, second = draw(sampler, 2)
    for epoch in (first, second):
        counts = np.bincount(np.asarray(LABELS)[epoch], minlength=2)
        assert counts.tolist() == [100, 50]
        assert len(set(epoch)) == 150  # without replacement
    assert set(first) != set(second)  # another majority draw each epoch


def test_same_seed_same_epochs_other_seed_other_epochs():
    a = draw(ClassResampler(LABELS, "oversample", seed=7), 3)
    b = draw(ClassResampler(LABELS, "oversample", seed=7), 3)
    c = draw(ClassResampler(LABELS, "oversample", seed=8), 3)
    assert a == b
    assert a[0] != a[1] != a[2]
    assert a[0] != c[0]


def test_restoring_the_generator_replays_an_epoch():
    """What a checkpoint does on resume: it finds the sampler's generator and puts its state back."""
    from tunesmith.train.checkpoint import sampler_generators

    sampler = ClassResampler(LABELS, "oversample", seed=1)
    loader = DataLoader(list(range(len(LABELS))), batch_size=10, sampler=sampler)
    assert sampler_generators(loader) == [sampler.generator]
    list(sampler)  # epoch 1
    saved = sampler.generator.get_state()
    second = list(sampler)
    sampler.generator.set_state(saved)
    assert list(sampler) == second


def test_accelerate_prepared_loader_follows_the_sampler():
    from accelerate import Accelerator

    dataset = [{"x": torch.tensor(float(i))} for i in range(len(LABELS))]
    sampler = ClassResampler(LABELS, "undersample", ratio=1.0, seed=2)
    loader = Accelerator(cpu=True).prepare(DataLoader(dataset, batch_size=20, sampler=sampler))
    seen = [[int(v) for batch in loader for v in batch["x"]] for _ in range(2)]
    assert seen == draw(ClassResampler(LABELS, "undersample", ratio=1.0, seed=2), 2)
    assert all(np.bincount(np.asarray(LABELS)[s]).tolist() == [50, 50] for s in seen)
