"""Several LoRA runs on one base (`tunesmith predict RUN_A RUN_B`), on tiny random models: each run's
predictions through switching are bit for bit those of its adapter loaded alone on the base, for heads of
different label counts and in either order; they match RUN/model's (the merged single-run predict) up to float
rounding; runs on another base, or without an adapter, are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adapter_helpers import TEXTS, alone, bitwise_equal, train_lora
from tunesmith.cli import main
from tunesmith.errors import RunError
from tunesmith.recipes.adapters import SwitchedRuns
from tunesmith.recipes.predict import TrainedRun


@pytest.fixture(scope="module")
def runs(tiny_bert_dir, tmp_path_factory) -> dict[str, Path]:
    """Two LoRA runs on one tiny BERT: sentiment (neg/pos) and topic (money/science/sport)."""
    root = tmp_path_factory.mktemp("switch")
    return {name: train_lora(tiny_bert_dir, root, name) for name in ("sent", "topic")}


@pytest.mark.parametrize("order", [("sent", "topic"), ("topic", "sent")])
def test_switched_adapters_predict_bit_for_bit_as_each_adapter_alone(runs, order):
    switched = SwitchedRuns([runs[name] for name in order])
    frame = switched.predict_texts(TEXTS)
    for name in order:
        own = alone(runs[name])
        assert set(own) == {"prediction", *(f"prob_{label}" for label in TrainedRun(runs[name]).task.labels.names)}
        for column, values in own.items():
            assert bitwise_equal(frame[f"{name}.{column}"].to_numpy(), np.asarray(values)), (name, column)
    assert [c for c in frame.columns if c.startswith("topic.prob_")] == \
        ["topic.prob_money", "topic.prob_science", "topic.prob_sport"]  # the 3-label head, whatever came first
    assert not np.allclose(frame["sent.prob_pos"], frame["sent.prob_pos"].iloc[0])  # inputs give different outputs


def test_switched_predictions_match_each_runs_merged_model(runs):
    frame = SwitchedRuns([runs["sent"], runs["topic"]]).predict_texts(TEXTS)
    for name, run in runs.items():
        merged = TrainedRun(run).predict_texts(TEXTS)  # RUN/model: what `tunesmith predict RUN` uses
        assert list(frame[f"{name}.prediction"]) == list(merged["prediction"])
        for column in (c for c in merged.columns if c.startswith("prob_")):
            np.testing.assert_allclose(frame[f"{name}.{column}"], merged[column], atol=1e-5)


def test_predict_command_writes_one_column_set_per_run(runs, tmp_path, capsys):
    out = tmp_path / "predictions.csv"
    data = runs["sent"].parent / "sent-data" / "validation.csv"
    assert main(["predict", str(runs["sent"]), str(runs["topic"]), "--input", str(data), "--output", str(out)]) == 0
    written = pd.read_csv(out)
    texts = pd.read_csv(data)["text"].tolist()
    assert written["text"].tolist() == texts and len(written) == 24
    for name, run in runs.items():
        for column, values in alone(run, texts).items():
            got = written[f"{name}.{column}"]
            if column == "prediction":
                assert got.tolist() == list(values)
            else:  # the CSV holds the float32 probabilities as decimal text
                np.testing.assert_allclose(got, values, rtol=1e-6)
    assert main(["predict", str(runs["sent"]), str(runs["topic"]), "--text", "the team won"]) == 0
    shown = capsys.readouterr().out  # one table per run
    assert "predictions of sent" in shown and "predictions of topic" in shown and "prob_sport" in shown


def copy_run(run: Path, where: Path) -> Path:
    shutil.copytree(run, where)
    return where


def set_recorded_hash(run: Path, sha: str) -> None:
    record = run / "adapter" / "tunesmith_base.json"
    value = json.loads(record.read_text())
    value["weights_sha256"] = sha
    record.write_text(json.dumps(value))


def test_runs_on_another_base_are_refused(runs, tmp_path, capsys):
    other = copy_run(runs["topic"], tmp_path / "other")
    set_recorded_hash(other, "0" * 64)  # trained on another base, as far as its record says
    with pytest.raises(RunError, match=r"do not share a base model .* adapters switch only on the base they were "
                                       r"trained on"):
        SwitchedRuns([runs["sent"], other])
    assert main(["predict", str(runs["sent"]), str(other), "--text", "hello"]) == 2
    assert "do not share a base model" in capsys.readouterr().err


def test_a_base_changed_since_training_is_refused(runs, tmp_path):
    a, b = copy_run(runs["sent"], tmp_path / "a"), copy_run(runs["topic"], tmp_path / "b")
    for run in (a, b):
        set_recorded_hash(run, "f" * 64)  # both agree, but the weights at the base path are not those
    with pytest.raises(RunError, match=r"the base model at .* has changed since the adapter was trained"):
        SwitchedRuns([a, b])


def test_runs_without_an_adapter_or_given_once_are_refused(runs, tmp_path):
    full = copy_run(runs["topic"], tmp_path / "full")
    shutil.rmtree(full / "adapter")  # what a full fine-tuning run looks like
    with pytest.raises(RunError, match=r"full: no adapter \(RUN/adapter/adapter_config.json\): only LoRA/DoRA runs"):
        SwitchedRuns([runs["sent"], full])
    with pytest.raises(RunError, match="is given twice"):
        SwitchedRuns([runs["sent"], runs["sent"]])
    with pytest.raises(RunError, match="needs two runs or more"):
        SwitchedRuns([runs["sent"]])
