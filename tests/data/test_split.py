"""split_frame: stratified, seed-determined hold-out splits."""

from pathlib import Path

import pandas as pd
import pytest

from tunesmith.data.readers import read_table
from tunesmith.data.split import split_frame
from tunesmith.errors import DataError

SMS = Path(__file__).resolve().parents[2] / "data" / "sms_spam" / "SMSSpamCollection"


def labelled(counts: dict) -> pd.DataFrame:
    labels = [label for label, n in counts.items() for _ in range(n)]
    return pd.DataFrame({"text": [f"t{i}" for i in range(len(labels))], "label": labels,
                         "line": range(1, len(labels) + 1)})


@pytest.fixture(scope="module")
def sms() -> pd.DataFrame:
    return read_table(SMS, format="tsv", header=False, columns={"label": 0, "text": 1})


def test_stratified_split_keeps_class_proportions(sms):
    train, held = split_frame(sms, 0.1, seed=13)
    assert len(held) == 558 and len(train) == 5574 - 558  # ceil(0.1 * 5574)
    for part in (train, held):
        share = part["label"].value_counts()["spam"]
        assert abs(share - 747 * len(part) / 5574) <= 1
    assert sorted(pd.concat([train, held])["line"]) == list(range(1, 5575))
    assert list(train.index) == list(range(len(train)))
    assert list(held.index) == list(range(len(held)))


def test_split_is_seed_deterministic(sms):
    first = split_frame(sms, 0.2, seed=7)
    again = split_frame(sms, 0.2, seed=7)
    other = split_frame(sms, 0.2, seed=8)
    pd.testing.assert_frame_equal(first[1], again[1])
    pd.testing.assert_frame_equal(first[0], again[0])
    assert set(first[1]["line"]) != set(other[1]["line"])


def test_small_stratified_counts():
    df = labelled({"a": 8, "b": 4, "c": 2})
    train, held = split_frame(df, 0.5, seed=0)
    assert held["label"].value_counts().to_dict() == {"a": 4, "b": 2, "c": 1}
    assert train["label"].value_counts().to_dict() == {"a": 4, "b": 2, "c": 1}


def test_unstratified_split():
    df = labelled({"a": 9, "b": 1})
    train, held = split_frame(df, 0.3, seed=1, stratify=False)
    assert (len(train), len(held)) == (7, 3)
    assert set(train["line"]) | set(held["line"]) == set(range(1, 11))


def test_class_with_one_example_names_it():
    df = labelled({"ham": 10, "spam": 5, "eggs": 1})
    with pytest.raises(DataError) as info:
        split_frame(df, 0.25, seed=0)
    message = str(info.value)
    assert "label 'eggs' has only 1 example" in message
    assert "data.validation.stratify: false" in message


def test_held_out_part_too_small_for_every_class():
    df = labelled({"a": 10, "b": 2, "c": 2, "d": 2})
    with pytest.raises(DataError, match="held-out part, which would have only 2 rows"):
        split_frame(df, 0.1, seed=0)


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1])
def test_bad_fraction(fraction):
    with pytest.raises(DataError, match="between 0 and 1"):
        split_frame(labelled({"a": 5, "b": 5}), fraction, seed=0)


def test_too_few_rows():
    with pytest.raises(DataError, match="cannot hold out 0.5 of 1 rows"):
        split_frame(labelled({"a": 1}), 0.5, seed=0, stratify=False)


def test_custom_label_column():
    df = labelled({"a": 6, "b": 6}).rename(columns={"label": "y"})
    train, held = split_frame(df, 0.5, seed=3, label_column="y")
    assert held["y"].value_counts().to_dict() == {"a": 3, "b": 3}
