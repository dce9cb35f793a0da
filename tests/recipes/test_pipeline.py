"""End to end through run.finetune on tiny random models: artifacts, best-model choice, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from pipeline_helpers import sentiment_rows, tiny_recipe, write_csv
from tunesmith.config.recipe import validate_recipe
from tunesmith.recipes.finetune import finetune


def quiet(*_args, **_kwargs):
    pass


@pytest.fixture(scope="module")
def train_file(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("data") / "train.csv", sentiment_rows(160, seed=1))


@pytest.fixture(scope="module")
def bert_run(tiny_bert_dir, train_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "bert"
    recipe = validate_recipe(tiny_recipe(tiny_bert_dir, train_file, out))
    return recipe, finetune(recipe, echo=quiet)


def test_run_directory_holds_every_artifact(bert_run):
    recipe, result = bert_run
    run = recipe.output
    records = [json.loads(line) for line in open(f"{run}/metrics.jsonl")]
    train_records = [r for r in records if r["type"] == "train"]
    evals = [r for r in records if r["type"] == "eval" and not r.get("final")]
    assert len(train_records) == result["steps"] == 60  # 120 training rows / 8 per batch * 4 epochs
    assert [r["step"] for r in evals] == [15, 30, 45, 60]  # eval_every: epoch
    assert all(np.isfinite(r["loss"]) for r in train_records)
    assert train_records[0]["lr"] > train_records[-1]["lr"] == 0.0  # linear decay to zero
    saved = json.load(open(f"{run}/eval.json"))
    assert saved["validation"]["n"] == 40 and saved["data"] == {"train": 120, "validation": 40}
    assert "majority" in saved["baselines"]["validation"]
    resolved = open(f"{run}/recipe.yaml").read()
    assert "lr: 0.002" in resolved and "optimizer: adamw" in resolved  # defaults filled in


def test_tiny_bert_learns_the_task(bert_run):
    _, result = bert_run
    assert result["validation"]["accuracy"] >= 0.9
    assert result["validation"]["macro_f1"] > result["baselines"]["validation"]["majority"]["macro_f1"] + 0.4


def test_saved_model_loads_with_transformers_and_keeps_labels(bert_run):
    recipe, result = bert_run
    model = AutoModelForSequenceClassification.from_pretrained(f"{recipe.output}/model")
    tokenizer = AutoTokenizer.from_pretrained(f"{recipe.output}/model")
    assert model.config.id2label == {0: "neg", 1: "pos"}
    assert model.config.label2id == {"neg": 0, "pos": 1}
    batch = tokenizer(["it was great and wonderful", "awful and terrible film"], return_tensors="pt", padding=True)
    with torch.no_grad():
        predicted = model(**batch).logits.argmax(-1).tolist()
    assert [model.config.id2label[i] for i in predicted] == ["pos", "neg"]


def test_the_saved_model_is_the_best_evaluation(bert_run):
    recipe, result = bert_run
    evals = [json.loads(line) for line in open(f"{recipe.output}/metrics.jsonl")]
    during = [r for r in evals if r["type"] == "eval" and not r.get("final")]
    best = max(during, key=lambda r: r["macro_f1"])
    assert result["best"]["step"] == best["step"]
    # the final validation metrics are the best evaluation's (a pass over the reloaded best model gives the same:
    # test_the_final_validation_metrics_are_those_of_the_reloaded_best_model)
    assert result["validation"]["macro_f1"] == pytest.approx(best["macro_f1"])
    assert result["validation"]["loss"] == pytest.approx(best["loss"], rel=1e-4)


def test_same_seed_same_run(tiny_bert_dir, train_file, tmp_path):
    def losses(out):
        recipe = validate_recipe(tiny_recipe(tiny_bert_dir, train_file, out, epochs=1))
        finetune(recipe, echo=quiet)
        return [json.loads(line)["loss"] for line in open(out / "metrics.jsonl") if '"train"' in line]

    first, second = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert first == second and len(first) == 15


def test_early_stopping_target_ends_the_run(tiny_bert_dir, train_file, tmp_path):
    raw = tiny_recipe(tiny_bert_dir, train_file, tmp_path / "r", epochs=10, eval_every=5,
                      early_stopping={"metric": "accuracy", "target": 0.8})
    result = finetune(validate_recipe(raw), echo=quiet)
    assert result["steps"] < 150
    assert "reached the target 0.8" in result["stop_reason"]
    assert result["best"]["value"] >= 0.8


def test_gradient_accumulation_matches_a_bigger_batch(tiny_bert_dir, train_file, tmp_path):
    """batch 4 x 2 accumulation == batch 8 (no dropout, same data order): same first updates."""
    def first_losses(out, **settings):
        raw = tiny_recipe(tiny_bert_dir, train_file, out, epochs=1, max_steps=3, group_by_length=False,
                          max_grad_norm=None, **settings)
        finetune(validate_recipe(raw), echo=quiet)
        return [json.loads(line)["loss"] for line in open(out / "metrics.jsonl") if '"train"' in line]

    torch.manual_seed(0)
    big = first_losses(tmp_path / "big", batch_size=8)
    small = first_losses(tmp_path / "small", batch_size=4, grad_accumulation=2)
    assert len(big) == len(small) == 3
    # same step count and, because the loss is averaged per micro-batch, the same mean loss per step
    np.testing.assert_allclose(small, big, rtol=2e-2)


@pytest.mark.parametrize("fixture", ["tiny_gpt2_dir", "tiny_llama_dir"])
def test_decoders_train_as_classifiers(fixture, request, train_file, tmp_path):
    model_dir = request.getfixturevalue(fixture)
    raw = tiny_recipe(model_dir, train_file, tmp_path / "run", epochs=6, lr=3e-3)
    result = finetune(validate_recipe(raw), echo=quiet)
    assert result["validation"]["accuracy"] >= 0.8
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "model")
    assert model.config.pad_token_id is not None
    assert model.config.id2label == {0: "neg", 1: "pos"}


def count_validation_passes(monkeypatch) -> list[str]:
    """Every task.evaluate call's desc, from now on."""
    from tunesmith.tasks.classification import ClassificationTask

    calls, evaluate = [], ClassificationTask.evaluate

    def counted(self, model, loader, accelerator, *, desc="eval"):
        calls.append(desc)
        return evaluate(self, model, loader, accelerator, desc=desc)

    monkeypatch.setattr(ClassificationTask, "evaluate", counted)
    return calls


def test_the_final_validation_metrics_are_those_of_the_reloaded_best_model(tiny_bert_dir, train_file, tmp_path,
                                                                           monkeypatch):
    """method full: the best step's validation metrics stand for the final ones (no second pass), and they are
    exactly what evaluating the reloaded best model gives (the same run with the final pass forced)."""
    from tunesmith.recipes.finetune import FineTune

    raw = dict(epochs=4, eval_every=5, early_stopping={"metric": "accuracy"})  # ties keep the first best
    calls = count_validation_passes(monkeypatch)
    reused = finetune(validate_recipe(tiny_recipe(tiny_bert_dir, train_file, tmp_path / "a", **raw)), echo=quiet)
    assert calls.count("validation") == 12  # 60 steps / 5: no final pass
    assert 0 < reused["best"]["step"] < reused["steps"]  # the best model is an earlier one: it is reloaded
    monkeypatch.setattr(FineTune, "_best_validation_metrics", lambda self: None)
    calls.clear()
    evaluated = finetune(validate_recipe(tiny_recipe(tiny_bert_dir, train_file, tmp_path / "b", **raw)), echo=quiet)
    assert calls.count("validation") == 13
    assert evaluated["validation"] == reused["validation"]  # every metric, exactly
    assert reused["validation"]["accuracy"] == reused["best"]["value"]


def test_a_merged_adapter_is_evaluated_again(tiny_bert_dir, train_file, tmp_path, monkeypatch):
    """method lora: the merged model rounds the trained weights, so the final validation pass runs."""
    calls = count_validation_passes(monkeypatch)
    raw = tiny_recipe(tiny_bert_dir, train_file, tmp_path / "r", epochs=1, eval_every=5)
    finetune(validate_recipe({**raw, "method": {"name": "lora"}}), echo=quiet)
    assert calls.count("validation") == 4  # 15 steps: evaluations at 5, 10, 15, and the final pass
