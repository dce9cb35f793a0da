"""parse_targets on files read by read_table (each error with its file and line), the class-label rule, and the
TargetScaler round trip through a model config."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tunesmith.data.readers import read_table
from tunesmith.data.targets import CONFIG_KEY, TargetScaler, parse_targets
from tunesmith.errors import DataError, ModelError


def read_csv(tmp_path, body: str, columns=None):
    """A csv with a header and rows from line 2, read as the regression task would: targets not required."""
    path = tmp_path / "train.csv"
    path.write_text(body, encoding="utf-8")
    frame = read_table(path, columns=columns or {"text": "text", "label": "score"}, required=("text",))
    return frame, str(path)


def targets(tmp_path, scores: list[str], **kwargs) -> np.ndarray:
    frame, source = read_csv(tmp_path, "text,score\n" + "".join(f"t{i},{s}\n" for i, s in enumerate(scores)))
    return parse_targets(frame, ["label"], source=source, names=["score"], **kwargs)


def error_of(tmp_path, scores: list[str], **kwargs) -> str:
    with pytest.raises(DataError) as caught:
        targets(tmp_path, scores, **kwargs)
    return str(caught.value).replace(str(tmp_path / "train.csv"), "train.csv")


def test_numbers_become_a_float64_column(tmp_path):
    y = targets(tmp_path, ["1.5", " 2 ", "-3e-1", "4.25"])
    assert y.dtype == np.float64 and y.shape == (4, 1)
    assert y.ravel().tolist() == [1.5, 2.0, -0.3, 4.25]


def test_integer_ratings_0_to_5_are_a_regression_target(tmp_path):
    assert targets(tmp_path, ["0", "1", "2", "3", "4", "5", "3"]).ravel().tolist() == [0, 1, 2, 3, 4, 5, 3]
    assert targets(tmp_path, ["1", "3", "2"]).ravel().tolist() == [1, 3, 2]  # three values are enough


def test_empty_cell_names_file_and_line(tmp_path):
    assert error_of(tmp_path, ["1", "2", " ", "4"]) == (
        "train.csv, line 4: empty target 'score'; every row needs a number")


def test_non_numeric_cell_names_file_and_line(tmp_path):
    assert error_of(tmp_path, ["1", "2", "3", "high"]) == "train.csv, line 5: target 'score' is not a number: 'high'"
    assert error_of(tmp_path, ["1", "1_000", "2"]) == "train.csv, line 3: target 'score' is not a number: '1_000'"
    assert error_of(tmp_path, ["1", '"3,5"', "2"]) == (
        "train.csv, line 3: target 'score' is not a number: '3,5' (write decimals with a point: 3.5, not 3,5)")


def test_nan_and_inf_are_one_error_at_the_first(tmp_path):
    assert error_of(tmp_path, ["1", "2", "inf", "nan", "-inf", "3"]) == (
        "train.csv, line 4: target 'score' is inf (3 NaN/inf values in all); targets must be finite numbers: "
        "fix or drop these rows")
    assert error_of(tmp_path, ["NaN", "2", "3"], fit=False).startswith("train.csv, line 2: target 'score' is nan (1 ")


def test_constant_target_has_nothing_to_learn(tmp_path):
    assert error_of(tmp_path, ["3", "3.0", "3.00"]) == (
        "train.csv: target 'score' has one value (3.0) in every row: nothing to learn; check data.columns.label")


def test_two_values_look_like_class_labels(tmp_path):
    assert error_of(tmp_path, ["0", "1", "1", "0"]) == (
        "train.csv: target 'score' has only two values (0.0 and 1.0): it looks like class labels; "
        "for classification set task: classification")


def test_words_look_like_class_labels(tmp_path):
    assert error_of(tmp_path, ["positive", "negative", "", "neutral", "positive", "mixed"]) == (
        "train.csv: target 'score' holds words, not numbers (e.g. 'positive', 'negative', 'neutral'): it looks like "
        "class labels; for classification set task: classification")


def test_held_out_data_may_be_constant_or_binary_but_not_words_or_blank(tmp_path):
    assert targets(tmp_path, ["2", "2"], fit=False).ravel().tolist() == [2, 2]
    assert targets(tmp_path, ["0", "1"], fit=False).ravel().tolist() == [0, 1]
    assert error_of(tmp_path, ["pos", "neg"], fit=False) == "train.csv, line 2: target 'score' is not a number: 'pos'"
    assert error_of(tmp_path, ["1", ""], fit=False) == (
        "train.csv, line 3: empty target 'score'; every row needs a number")


def test_several_targets_and_the_second_ones_error(tmp_path):
    body = "text,a,b\nw,0.5,-1\nx,1,10\ny,2,20\nz,3,oops\n"
    frame, source = read_csv(tmp_path, body, {"text": "text", "a": "a", "b": "b"})
    y = parse_targets(frame.iloc[:3], ["a", "b"], source=source)
    assert y.tolist() == [[0.5, -1.0], [1.0, 10.0], [2.0, 20.0]] and y.shape == (3, 2)
    with pytest.raises(DataError, match=r"train\.csv, line 5: target 'b' is not a number: 'oops'$"):
        parse_targets(frame, ["a", "b"], source=source)


def test_jsonl_null_and_boolean_name_their_line(tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [{"text": "a", "score": 1.5}, {"text": "b", "score": 2}, {"text": "c", "score": None}, {"text": "d"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    frame = read_table(path, columns={"text": "text", "label": "score"}, required=("text",))
    with pytest.raises(DataError, match=rf"^{path}, line 3: empty target 'score'; every row needs a number$"):
        parse_targets(frame, ["label"], source=str(path), names=["score"])
    path.write_text('{"text": "a", "score": 1}\n{"text": "b", "score": true}\n{"text": "c", "score": 3}\n')
    frame = read_table(path, columns={"text": "text", "label": "score"}, required=("text",))
    with pytest.raises(DataError, match=rf"^{path}, line 2: target 'score' is not a number: 'True' \(a boolean\)$"):
        parse_targets(frame, ["label"], source=str(path), names=["score"])


def test_json_array_items_and_frames_without_lines(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps([{"text": "a", "y": 1}, {"text": "b", "y": 2}, {"text": "c", "y": "x"}]))
    frame = read_table(path, columns={"text": "text", "label": "y"}, required=("text",))
    with pytest.raises(DataError, match=rf"^{path}, item 3: target 'y' is not a number: 'x'$"):
        parse_targets(frame, ["label"], source=str(path), names=["y"])
    bare = pd.DataFrame({"label": [1.0, None, 3.0]})
    with pytest.raises(DataError, match=r"^t\.csv, row 2: empty target 'label'"):
        parse_targets(bare, ["label"], source="t.csv")


def test_scaler_standardises_and_inverts():
    y = np.array([[1.0, 100.0], [2.0, 300.0], [3.0, 200.0], [6.0, 400.0]])
    scaler = TargetScaler.fit(y, ["a", "b"])
    z = scaler.transform(y)
    assert np.allclose(z.mean(axis=0), 0) and np.allclose(z.std(axis=0), 1)
    assert scaler.mean == (3.0, 250.0)
    assert scaler.std == pytest.approx((np.std([1, 2, 3, 6]), np.std([100, 300, 200, 400])))
    assert np.allclose(scaler.inverse_transform(z), y)
    one = TargetScaler.fit(y[:, 0], ["a"])
    assert scaler.inverse_transform(z).shape == (4, 2) and one.inverse_transform(np.zeros(3)).tolist() == [[3.0]] * 3


def test_scaler_round_trips_through_a_json_config():
    scaler = TargetScaler.fit(np.array([0.2, 4.8, 2.5, 3.1]), ["score"])
    config = json.loads(json.dumps({CONFIG_KEY: scaler.to_dict()}))
    assert CONFIG_KEY == "tunesmith_target_scaling"
    assert TargetScaler.from_dict(config[CONFIG_KEY]) == scaler
    assert config[CONFIG_KEY]["names"] == ["score"]


def test_scaler_of_a_constant_column_does_not_divide_by_zero():
    assert TargetScaler.fit(np.full(3, 7.0), ["y"]).std == (1.0,)


def test_a_bad_stored_scaling_is_a_model_error():
    with pytest.raises(ModelError, match=r"^the model config's tunesmith_target_scaling must map names, mean and std; "
                                         r"found None: the model directory was edited"):
        TargetScaler.from_dict(None)
    for bad in ({"names": ["a"], "mean": [0.0], "std": [0.0]}, {"names": ["a", "b"], "mean": [0.0], "std": [1.0]},
                {"names": ["a"], "mean": ["x"], "std": [1.0]}, {"names": "a", "mean": [0.0], "std": [1.0]}):
        with pytest.raises(ModelError, match=r"^the model config's tunesmith_target_scaling is malformed \(.*\): it "
                                             r"needs one finite mean and one positive std per target name"):
            TargetScaler.from_dict(bad)
