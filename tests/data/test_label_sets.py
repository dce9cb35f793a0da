"""Label sets read from every format (data/label_sets.py): JSON lists, delimited strings, empty sets; each bad
cell is one DataError naming the file and line, and through the CLI one `error:` line with exit status 2."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from tunesmith.cli import main
from tunesmith.config.recipe import validate_recipe
from tunesmith.data.label_sets import ROLE, join_labels, load_label_set_splits, multi_hot, read_label_set_file
from tunesmith.errors import DataError, RecipeError
from tunesmith.tasks import make_task


def spec(train, **data):
    raw = {"model": "m", "task": "multi_label",
           "data": {"train": str(train), "columns": {"text": "text", "label": "labels"}, **data}}
    return validate_recipe(raw)


def jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_jsonl_lists_are_sorted_deduplicated_sets(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [{"text": "a", "labels": ["b", "a", "b"]}, {"text": "c", "labels": []},
                                        {"text": "d", "labels": [" x "]}, {"text": "e"}])
    frame = read_label_set_file(spec(path).data, str(path))
    assert frame[ROLE].tolist() == [("a", "b"), (), ("x",), ()]
    assert frame["line"].tolist() == [1, 2, 3, 4]


def test_csv_cells_split_on_the_separator_with_whitespace_stripped(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('text,labels\none," sport , music"\ntwo,\nthree,food\nfour,"[""a"", ""b""]"\n')
    frame = read_label_set_file(spec(path).data, str(path))
    assert frame[ROLE].tolist() == [("music", "sport"), (), ("food",), ("a", "b")]
    tsv = tmp_path / "d.tsv"
    tsv.write_text("text\tlabels\none\tsport|music\ntwo\t\n")
    frame = read_label_set_file(spec(tsv, label_separator="|").data, str(tsv))
    assert frame[ROLE].tolist() == [("music", "sport"), ()]


def test_parquet_lists(tmp_path):
    path = tmp_path / "d.parquet"
    pd.DataFrame({"text": ["a", "b"], "labels": [["y", "x"], []]}).to_parquet(path)
    assert read_label_set_file(spec(path).data, str(path))[ROLE].tolist() == [("x", "y"), ()]


@pytest.mark.parametrize("cell, message", [
    (3, "labels must be a list of label names (or names joined by data.label_separator ','), found a number (3)"),
    ({"a": 1}, "labels must be a list of label names (or names joined by data.label_separator ','), found an "
               "object ({'a': 1})"),
    (["a", 2], "labels must be label names (strings); the list holds a number (2)"),
])
def test_a_bad_cell_is_one_error_naming_file_and_line(tmp_path, cell, message):
    path = jsonl(tmp_path / "d.jsonl", [{"text": "a", "labels": ["x"]}, {"text": "b", "labels": cell}])
    with pytest.raises(DataError) as caught:
        read_label_set_file(spec(path).data, str(path))
    assert str(caught.value) == f"{path}, line 2: {message}"


def test_every_training_set_empty_is_refused(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [{"text": f"t{i}", "labels": []} for i in range(8)])
    with pytest.raises(DataError, match="every training row has an empty label set"):
        load_label_set_splits(spec(path).data, seed=0)


def test_labels_are_the_sorted_union_and_unseen_labels_in_evaluate_files_are_errors(tmp_path):
    train = jsonl(tmp_path / "t.jsonl", [{"text": f"t{i}", "labels": ["b"] if i % 2 else ["a"]} for i in range(8)])
    test = jsonl(tmp_path / "test.jsonl", [{"text": "x", "labels": ["c"]}])
    splits = load_label_set_splits(spec(train, test=str(test)).data, seed=0)
    assert splits.names == ["a", "b", "c"]  # c only in test: kept, scored, warned about by the inspection
    y = multi_hot(splits.train, ["a", "b"], "t.jsonl")
    assert y.dtype == np.float32 and y.sum() == 6 and set(y.sum(axis=1)) == {1.0}
    with pytest.raises(DataError) as caught:
        multi_hot(splits.test, ["a", "b"], str(test))
    assert str(caught.value) == f"{test}, line 1: label 'c' is not one of the model's 2 labels (a, b)"
    assert join_labels(np.array([[1, 0, 1], [0, 0, 0]]), ["a", "b", "c"], ";") == ["a;c", ""]


def test_stratify_set_explicitly_is_refused_and_a_label_list_of_columns_too(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [{"text": "a", "labels": ["x"]}])
    with pytest.raises(RecipeError, match="data.validation.stratify: label sets are not classes to stratify by"):
        make_task(spec(path, validation={"split": 0.2, "stratify": True})).load_data()
    recipe = validate_recipe({"model": "m", "task": "multi_label",
                              "data": {"train": str(path), "columns": {"text": "text", "label": ["a", "b"]}}})
    with pytest.raises(DataError, match="multi_label takes one column holding the label set"):
        make_task(recipe).load_data()


def test_through_the_cli_a_bad_cell_is_one_line_and_exit_2(tmp_path, capsys):
    path = jsonl(tmp_path / "d.jsonl", [{"text": "a", "labels": ["x"]}, {"text": "b", "labels": 7}])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"model": "no-such-model", "task": "multi_label", "output": str(tmp_path / "run"),
                                      "data": {"train": str(path), "columns": {"text": "text", "label": "labels"}}}))
    capsys.readouterr()
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {path}, line 2: labels must be a list of label names (or names joined by "
                   f"data.label_separator ','), found a number (7)")
