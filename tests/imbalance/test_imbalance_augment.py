"""EDA augmentation: each operation does what it says, draws are seed-determined, only training
rows of the chosen classes change, and validation/test data never go through it."""

import random

import pytest

from imbalance_data import quiet, recipe, skewed_rows, write_csv
from tunesmith.imbalance import augment as augment_module
from tunesmith.imbalance.augment import AugmentedDataset, eda

TEXT = "one two three four five six seven eight nine ten"


def test_delete_drops_words_but_never_all():
    out = eda(TEXT, "delete", random.Random(0), strength=0.3, vocabulary=[])
    words = out.split()
    assert 0 < len(words) < 10 and all(w in TEXT.split() for w in words)
    assert [w for w in TEXT.split() if w in words] == words  # order kept
    assert eda("alone", "delete", random.Random(0), strength=1.0, vocabulary=[]) == "alone"
    assert len(eda("a b c", "delete", random.Random(1), strength=1.0, vocabulary=[]).split()) == 1


def test_swap_keeps_the_words_and_changes_the_order():
    out = eda(TEXT, "swap", random.Random(3), strength=0.2, vocabulary=[])
    assert sorted(out.split()) == sorted(TEXT.split()) and out != TEXT


def test_insert_adds_words_from_the_vocabulary():
    out = eda(TEXT, "insert", random.Random(0), strength=0.2, vocabulary=["zebra", "yak"])
    added = [w for w in out.split() if w not in TEXT.split()]
    assert len(out.split()) == 12 and set(added) <= {"zebra", "yak"} and added


class FakeBase:
    def __init__(self, n):
        self.rows = [{"input_ids": [101, i, 102], "attention_mask": [1, 1, 1], "labels": label}
                     for i, label in enumerate([0, 1] * (n // 2))]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]

    def lengths(self):
        return [3] * len(self.rows)


def fake_tokenizer(text, pair=None, **_):
    return {"input_ids": [101] + [len(w) for w in text.split()] + [102],
            "attention_mask": [1] * (len(text.split()) + 2)}


def dataset(seed, probability=0.5, n=40):
    texts = [f"row {i} with some words in it" for i in range(n)]
    return AugmentedDataset(FakeBase(n), texts, [0, 1] * (n // 2), fake_tokenizer, max_length=32, classes={1},
                            probability=probability, operations=["delete", "swap", "insert"], strength=0.3,
                            seed=seed)


def test_draws_are_seed_determined_and_only_touch_the_chosen_classes():
    a, b, c = dataset(0), dataset(0), dataset(1)
    order = list(range(40)) * 3  # three epochs; a row drawn again gets a fresh rewrite
    first = [a[i] for i in order]
    assert first == [b[i] for i in order]
    assert first != [c[i] for i in order]
    base = FakeBase(40)
    changed = [i for i, row in zip(order, first) if row != base[i]]
    assert changed and all(i % 2 == 1 for i in changed)  # class 1 rows only
    assert 0.3 < len(changed) / 60 < 0.7  # p = 0.5 of the 60 class-1 draws
    assert all(row["labels"] == base[i]["labels"] for i, row in zip(order, first))
    assert a.augmented == len(changed)


def test_probability_zero_returns_the_encoded_rows():
    ds = dataset(0, probability=0.0)
    assert [ds[i] for i in range(40)] == FakeBase(40).rows


@pytest.fixture(scope="module")
def augmented_run(tiny_bert_dir, tmp_path_factory):
    """A run with augmentation p=1 for the minority class, recording every text handed to eda."""
    root = tmp_path_factory.mktemp("augment")
    train = write_csv(root / "train.csv", skewed_rows(80, positive_every=4, seed=2))
    test = write_csv(root / "test.csv", [(label, text.replace(" n", " t")) for label, text in skewed_rows(24, 4, 9)])
    raw = recipe(tiny_bert_dir, train, root / "run", epochs=2,
                 imbalance={"augment": {"probability": 1.0, "operations": ["swap", "insert"]}})
    raw["data"]["test"] = str(test)
    seen = []
    original = augment_module.eda

    def spy(text, *args, **kwargs):
        seen.append(text)
        return original(text, *args, **kwargs)

    from tunesmith.config.recipe import validate_recipe
    from tunesmith.recipes.finetune import finetune

    augment_module.eda = spy
    try:
        result = finetune(validate_recipe(raw), echo=quiet)
    finally:
        augment_module.eda = original
    return result, seen, train, test, raw


def test_augmentation_sees_training_rows_only(augmented_run):
    import pandas as pd

    result, seen, train, test, raw_recipe = augmented_run
    train_texts = set(pd.read_csv(train)["text"])
    test_texts = set(pd.read_csv(test)["text"])
    assert seen, "augmentation never ran"
    assert set(seen) <= train_texts
    assert not set(seen) & test_texts
    # validation is held out of train.csv (same seed, same split): its rows are never augmented either
    from tunesmith.data.prepare import load_labelled_splits
    from tunesmith.config.recipe import validate_recipe

    splits = load_labelled_splits(validate_recipe(raw_recipe).data, seed=0)
    assert set(seen) <= set(splits.train["text"])
    assert not set(seen) & set(splits.validation["text"])
    assert set(seen) == set(splits.train.loc[splits.train["label"] == "pos", "text"])  # p = 1: every pos row
    assert result["imbalance"]["augment_classes"] == ["pos"]
    assert result["validation"]["n"] == 20 and result["test"]["n"] == 24
