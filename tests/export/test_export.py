"""tunesmith export on tiny runs: ONNX and int8 outputs close to torch, the merged LoRA model equal to the
adapter model, the re-evaluation report, the --max-drop gate, and predict on export directories."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from pipeline_helpers import sentiment_rows, tiny_recipe, write_csv
from tunesmith import export as export_module
from tunesmith.cli import main
from tunesmith.export import ExportRefused
from tunesmith.recipes.export import export_run
from tunesmith.export import onnx as onnx_export
from tunesmith.methods.lora import load_adapter_model
from tunesmith.models import load_tokenizer
from tunesmith.recipes.predict import TrainedRun
from tunesmith.config.recipe import validate_recipe
from tunesmith.recipes.finetune import finetune

TEXTS = ["the movie was great and wonderful", "awful, boring and sad", "a film", "best acting, love it really"]


def quiet(*_args, **_kwargs):
    pass


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export_data")
    return write_csv(folder / "train.csv", sentiment_rows(160, seed=1))


@pytest.fixture(scope="module")
def full_run(tiny_bert_dir, data, tmp_path_factory):
    """Full fine-tuning that learns the task (validation accuracy >= 0.9), so a broken export shows."""
    out = tmp_path_factory.mktemp("runs") / "full"
    result = finetune(validate_recipe(tiny_recipe(tiny_bert_dir, data, out)), echo=quiet)
    assert result["validation"]["accuracy"] >= 0.9
    return out


@pytest.fixture(scope="module")
def lora_run(tiny_bert_dir, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "lora"
    raw = tiny_recipe(tiny_bert_dir, data, out, epochs=1, lr=5e-2)
    raw["method"] = {"name": "lora", "r": 4}
    finetune(validate_recipe(raw), echo=quiet)
    return out


def torch_logits(model_dir, texts=TEXTS):
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = load_tokenizer(model_dir)
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits.numpy(), batch


def onnx_logits(export_dir, batch):
    session = ort.InferenceSession(str(export_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, {n: batch[n].numpy() for n in names})[0]


def test_onnx_export_matches_torch_and_predict_uses_it(full_run, data, tmp_path, capsys):
    report = export_run(full_run, "onnx", output=tmp_path / "onnx", max_drop=0.01, echo=quiet)
    out = tmp_path / "onnx"
    assert {"model.onnx", "export.json", "report.json", "config.json", "recipe.yaml", "tokenizer.json"} <= {
        p.name for p in out.iterdir()}
    expected, batch = torch_logits(full_run / "model")
    np.testing.assert_allclose(onnx_logits(out, batch), expected, atol=1e-4)  # another batch shape than traced

    assert report["passed"] and report["delta"]["macro_f1"] == 0.0 and report["prediction_agreement"] == 1.0
    assert report["max_abs_logit_diff"] < 1e-4
    for side in ("reference", "export"):
        row = report[side]
        assert row["size_mb"] > 0 and row["latency_ms_b1"] > 0 and row["throughput_b32"] > 0
        assert row["metrics"]["accuracy"] >= 0.9
    assert json.loads((out / "report.json").read_text())["format"] == "onnx"

    exported = TrainedRun(out).predict_texts(TEXTS)
    original = TrainedRun(full_run).predict_texts(TEXTS)
    assert list(exported["prediction"]) == list(original["prediction"])
    np.testing.assert_allclose(exported[["prob_neg", "prob_pos"]].to_numpy(),
                               original[["prob_neg", "prob_pos"]].to_numpy(), atol=1e-5)
    capsys.readouterr()
    assert main(["predict", str(out), "--text", "great wonderful film"]) == 0
    assert "prediction" in capsys.readouterr().out
    evaluated = TrainedRun(out).evaluate_file(str(data))  # evaluate on an export: same metrics as the run
    assert evaluated["accuracy"] == TrainedRun(full_run).evaluate_file(str(data))["accuracy"]


def test_int8_export_is_smaller_and_close_to_torch(full_run, tmp_path):
    report = export_run(full_run, "int8", output=tmp_path / "int8", echo=quiet)
    out = tmp_path / "int8"
    fp32_bytes = (full_run / "model" / "model.safetensors").stat().st_size
    assert (out / "model.onnx").stat().st_size < 0.4 * fp32_bytes
    assert report["export"]["size_mb"] < 0.4 * report["reference"]["size_mb"]
    expected, batch = torch_logits(full_run / "model")
    got = onnx_logits(out, batch)
    assert np.abs(got - expected).max() < 0.05 * np.abs(expected).max() + 1e-3  # int8 rounding, not a broken graph
    assert (got.argmax(-1) == expected.argmax(-1)).all()
    assert report["prediction_agreement"] >= 0.95 and report["max_drop"] is None and report["passed"]
    assert json.loads((out / "export.json").read_text())["format"] == "int8"


def test_merged_lora_export_equals_the_adapter_model(lora_run, tmp_path):
    report = export_run(lora_run, "merged", output=tmp_path / "merged", echo=quiet)
    out = tmp_path / "merged"
    assert report["manifest"]["merged_from"] == "base model + RUN/adapter"
    merged, batch = torch_logits(out)
    adapter_model, _ = load_adapter_model(lora_run)
    with torch.no_grad():
        adapter = adapter_model(**batch).logits.numpy()
    np.testing.assert_allclose(merged, adapter, atol=1e-5)
    assert not np.allclose(merged[0], merged[1])
    assert report["max_abs_logit_diff"] < 1e-5 and report["prediction_agreement"] == 1.0
    assert TrainedRun(out).predict_texts(TEXTS)["prediction"].tolist() == \
        TrainedRun(lora_run).predict_texts(TEXTS)["prediction"].tolist()


def test_max_drop_gate_refuses_a_worse_export(full_run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "gated"
    export_run(full_run, "onnx", output=out, max_drop=0.01, echo=quiet)  # a good export is in place

    def swapped_labels(source, folder):
        """A broken export: the classifier's two rows swapped, so every prediction flips."""
        model = onnx_export.load_eager(source.model_dir)
        with torch.no_grad():
            model.classifier.weight.copy_(model.classifier.weight.flip(0))
            model.classifier.bias.copy_(model.classifier.bias.flip(0))
        return onnx_export.export_onnx(model, source.tokenizer, folder / "model.onnx", source.max_length)

    monkeypatch.setitem(export_module.FORMATS, "onnx", swapped_labels)
    with pytest.raises(ExportRefused, match=r"macro_f1 drops by \d\.\d+ \(1\.0000 -> 0\.\d+\), more than --max-drop 0.01"):
        export_run(full_run, "onnx", output=out, max_drop=0.01, echo=quiet)
    capsys.readouterr()
    assert main(["export", str(full_run), "--format", "onnx", "--max-drop", "0.01", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "onnx export refused" in err and "nothing written to" in err
    rejected = json.loads((tmp_path / "gated.rejected.json").read_text())
    assert rejected["passed"] is False and rejected["drop"] > 0.5
    assert json.loads((out / "report.json").read_text())["passed"] is True  # the good export was kept


def test_export_refuses_bad_requests(full_run, tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    assert main(["export", str(full_run), "--format", "onnx", "--output", str(tmp_path / "notes")]) == 2
    assert "exists and is not an export directory" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing"), "--format", "int8"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_prediction_agreement_compares_what_the_task_decides():
    """A multi-label export whose top label agrees but whose label set differs does not agree."""
    from tunesmith.export.report import compare

    reference = {"metrics": {"micro_f1": 1.0}, "logits": np.array([[3.0, 1.0], [2.0, -2.0]])}
    exported = {"metrics": {"micro_f1": 0.5}, "logits": np.array([[3.0, -1.0], [2.0, -3.0]])}
    label_sets = lambda logits: (logits > 0).astype(int)  # noqa: E731 - sigmoid at 0.5
    assert compare(reference, exported, metric="micro_f1", mode="max", max_drop=None)["prediction_agreement"] == 1.0
    verdict = compare(reference, exported, metric="micro_f1", mode="max", max_drop=None, decisions=label_sets)
    assert verdict["prediction_agreement"] == 0.5 and verdict["drop"] == 0.5
