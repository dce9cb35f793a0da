"""LabelMap: deterministic class order, names, config round trip and encoding errors."""

import numpy as np
import pandas as pd
import pytest

from tunesmith.data.labels import LabelMap, canonical_label
from tunesmith.errors import DataError, ModelError


def frame(labels, lines=None):
    return pd.DataFrame({"label": labels, "line": lines or list(range(2, len(labels) + 2))})


def test_str_labels_sort_by_name():
    labels = LabelMap.fit(["spam", "ham", "spam", "eggs"])
    assert labels.names == ["eggs", "ham", "spam"]
    assert labels.id2label == {0: "eggs", 1: "ham", 2: "spam"}
    assert labels.label2id == {"eggs": 0, "ham": 1, "spam": 2}
    assert len(labels) == 3


def test_int_labels_sort_numerically_not_as_strings():
    labels = LabelMap.fit([10, 2, 1, 2, 10])
    assert labels.names == ["1", "2", "10"]
    assert LabelMap.fit(["10", "2", "1"]).names == ["1", "2", "10"]  # numbers as strings are numbers
    assert LabelMap.fit(["10", "2", "b"]).names == ["10", "2", "b"]  # with a word, all sort by name


def test_bool_labels():
    labels = LabelMap.fit([True, False, True])
    assert labels.names == ["False", "True"]
    assert labels.encode(frame([True, False]), "f.jsonl").tolist() == [1, 0]


def test_integral_floats_are_named_like_ints():
    assert LabelMap.fit([1.0, 0.0, 2.0]).names == ["0", "1", "2"]
    assert LabelMap.fit(pd.Series([1, None, 0]).dropna()).names == ["0", "1"]
    assert LabelMap.fit([0.5, 1.0]).names == ["0.5", "1"]


def test_order_does_not_depend_on_input_order():
    values = ["b", "a", "c", "a"]
    assert LabelMap.fit(values) == LabelMap.fit(list(reversed(values)))
    assert LabelMap.fit(np.array([3, 1, 2])).names == ["1", "2", "3"]


def test_fewer_than_two_classes(tmp_path):
    with pytest.raises(DataError) as info:
        LabelMap.fit(["ham", "ham"], source="train.tsv")
    assert str(info.value) == "train.tsv: classification needs at least 2 classes, found 1: 'ham'"
    with pytest.raises(DataError, match="found 0"):
        LabelMap.fit([], source="train.tsv")


def test_blank_label_in_training_data():
    with pytest.raises(DataError, match="train.csv: found an empty label"):
        LabelMap.fit(["a", " ", "b"], source="train.csv")


def test_from_config_with_str_or_int_keys():
    saved = LabelMap.fit(["neg", "pos"])
    assert LabelMap.from_config({"1": "pos", "0": "neg"}) == saved
    assert LabelMap.from_config({0: "neg", 1: "pos"}) == saved
    assert LabelMap.from_config(saved.id2label).label2id == {"neg": 0, "pos": 1}
    with pytest.raises(ModelError, match="not 0..1"):
        LabelMap.from_config({0: "neg", 2: "pos"})


def test_encode_str_labels():
    labels = LabelMap.fit(["ham", "spam"])
    ids = labels.encode(frame(["spam", "ham", "ham", " spam "]), "val.tsv")
    assert ids.dtype == np.int64
    assert ids.tolist() == [1, 0, 0, 1]


def test_encode_matches_by_name_across_types():
    labels = LabelMap.fit([0, 1, 2])
    assert labels.encode(frame(["2", 1.0, 0]), "test.csv").tolist() == [2, 1, 0]


def test_encode_unseen_label_names_the_line():
    labels = LabelMap.fit(["a", "b"])
    with pytest.raises(DataError) as info:
        labels.encode(frame(["a", "b", "foo", "bar"], [3, 4, 7, 9]), "data/val.csv")
    assert str(info.value) == ("data/val.csv, line 7: label 'foo' was not seen in the training data "
                               "(known labels: a, b)")


def test_encode_empty_label_names_the_line():
    labels = LabelMap.fit(["a", "b"])
    with pytest.raises(DataError, match=r"^v.csv, line 3: empty label$"):
        labels.encode(frame(["a", None]), "v.csv")


def test_immutable():
    labels = LabelMap.fit(["a", "b"])
    with pytest.raises(AttributeError):
        labels.names = ["x"]
    labels.names.append("c")
    labels.label2id["c"] = 2
    assert labels.names == ["a", "b"] and len(labels) == 2


@pytest.mark.parametrize("value, canonical", [
    (1, 1), ("1", 1), (1.0, 1), ("1.0", 1), (" 1 ", 1), ("+1", 1), ("1e0", 1), ("007", 7), (np.int64(3), 3),
    (np.float32(2.5), 2.5), (2.5, 2.5), ("2.50", 2.5), (".5", 0.5), ("-0.0", 0),
    ("12345678901234567890", 12345678901234567890), (" pos ", "pos"), ("1,000", "1,000"), ("nan", "nan"),
    ("1e999", "1e999"), (True, True), (None, None),
])
def test_canonical_label(value, canonical):
    out = canonical_label(value)
    assert out == canonical and type(out) is type(canonical)


def test_labels_equal_as_numbers_are_one_class():
    labels = LabelMap.fit([1, "1", 1.0, "1.0", 2.5, "2.5"])
    assert labels.names == ["1", "2.5"]
    assert labels.encode(frame(["1.0", 1, " 1", 2.5, "2.50"]), "v.jsonl").tolist() == [0, 0, 0, 1, 1]
    assert LabelMap.fit(["1", "pos", 1]).names == ["1", "pos"]  # a word among numbers: sorted by name


def test_a_model_saved_with_float_names_still_matches():
    saved = LabelMap.from_config({0: "0.0", 1: "1.0"})
    assert [saved.id_of(v) for v in (1, "1", 1.0, "1.0", 0)] == [1, 1, 1, 1, 0]


def test_huge_numeric_labels_do_not_overflow():
    big = "1" + "0" * 400
    assert LabelMap.fit([big, "2"]).names == ["2", big]
