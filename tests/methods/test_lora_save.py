"""LoRA/DoRA runs: the head is trained and saved; reloading gives the same predictions as before saving.

RUN/adapter (PEFT) reloads to bit-identical logits; RUN/model (merged, plain HF) to the same predictions
with logits equal up to the float rounding of the merge."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from pipeline_helpers import sentiment_rows, tiny_recipe, write_csv
from tunesmith.artifacts import RunDir
from tunesmith.methods import apply_method
from tunesmith.methods.lora import load_adapter_model
from tunesmith.config.method import MethodSpec
from tunesmith.models import load_for_classification
from tunesmith.recipes.predict import TrainedRun
from tunesmith.config.recipe import validate_recipe
from tunesmith.recipes.finetune import finetune, load_best_weights as _load_best_weights

LABELS = {0: "neg", 1: "pos"}
TEXTS = ["the movie was great and wonderful", "awful, boring and sad", "a film", "best acting, love it really"]


def quiet(*_args, **_kwargs):
    pass


def logits(model, tokenizer, texts=TEXTS):
    model.eval()
    with torch.no_grad():
        return model(**tokenizer(texts, padding=True, return_tensors="pt")).logits


def train_a_little(model, tokenizer, steps=5):
    """A few AdamW steps on made-up labels, so that lora_B and the head move away from their init."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    model.train()
    for _ in range(steps):
        model(**batch, labels=torch.tensor([1, 0, 0, 1])).loss.backward()
        optimizer.step()
        optimizer.zero_grad()


@pytest.mark.parametrize("method", ["lora", "dora"])
@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama"])
def test_saved_adapter_and_merged_model_reload_to_the_same_predictions(arch, method, request, tmp_path):
    model_dir = request.getfixturevalue(f"tiny_{arch}_dir")
    model, tokenizer = load_for_classification(model_dir, num_labels=2, id2label=LABELS,
                                               label2id={"neg": 0, "pos": 1})
    head_name = "classifier" if arch == "bert" else "score"
    initial_head = getattr(model, head_name).weight.detach().clone()
    model, applied = apply_method(model, MethodSpec(name=method, r=4))
    train_a_little(model, tokenizer)
    assert any(p.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)  # the adapter moved
    before = logits(model, tokenizer)
    assert not torch.allclose(before[0], before[1])  # inputs give different outputs: the comparison means something

    run = RunDir(tmp_path / "run").create()
    applied.save(model, tokenizer, run)  # during training: the adapter only
    assert (run.path / "adapter" / "adapter_model.safetensors").is_file()
    assert not run.model_dir.exists()

    # 1. RUN/adapter on the base model: exactly the same logits
    reloaded, reloaded_tokenizer = load_adapter_model_after(run, model, tokenizer, applied)
    assert torch.equal(logits(reloaded, reloaded_tokenizer), before)

    # 2. the best-weights reload at the end of training restores the saved adapter, merged in place
    train_a_little(model, tokenizer, steps=2)
    assert not torch.equal(logits(model, tokenizer), before)
    best = applied.load_best(model, run, _load_best_weights, tokenizer)
    assert not any("lora" in n for n, _ in best.named_parameters())
    torch.testing.assert_close(logits(best, tokenizer), before, atol=1e-5, rtol=1e-5)

    # 3. RUN/model is a plain HF model (no PEFT), with the trained head, giving the merged logits
    plain = AutoModelForSequenceClassification.from_pretrained(run.model_dir)
    assert not any("lora" in n for n, _ in plain.named_parameters())
    trained_head = getattr(plain, head_name).weight
    assert not torch.allclose(trained_head, initial_head)  # the head was trained and saved
    torch.testing.assert_close(trained_head, getattr(best, head_name).weight)
    merged = logits(plain, tokenizer)
    torch.testing.assert_close(merged, before, atol=1e-5, rtol=1e-5)
    assert torch.equal(merged.argmax(-1), before.argmax(-1))


def load_adapter_model_after(run, model, tokenizer, applied):
    """RUN/adapter reloaded on a fresh base model; load_adapter_model reads the label map from RUN/model,
    which the best-model reload writes at the end: give it the config now."""
    run.model_dir.mkdir()
    model.get_base_model().config.save_pretrained(run.model_dir)
    try:
        return load_adapter_model(run.path)
    finally:
        import shutil

        shutil.rmtree(run.model_dir)


def test_lora_run_end_to_end_reloads_to_its_final_metrics(tiny_bert_dir, tmp_path):
    """A LoRA run's eval.json numbers are those of what it saved: evaluate/predict on RUN reproduce them."""
    train = write_csv(tmp_path / "train.csv", sentiment_rows(48, seed=3))
    validation = write_csv(tmp_path / "validation.csv", sentiment_rows(24, seed=4))
    raw = tiny_recipe(tiny_bert_dir, train, tmp_path / "run", epochs=2, lr=5e-2, eval_precision="fp32")  # as evaluate
    raw["data"]["validation"] = str(validation)
    raw["method"] = {"name": "lora", "r": 4}
    result = finetune(validate_recipe(raw), echo=quiet)

    saved = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert saved["method"]["name"] == "lora" and 0 < saved["method"]["trainable_params"] < saved["method"][
        "total_params"]
    assert saved["memory"]["peak_rss_mb"] > 100
    run = TrainedRun(tmp_path / "run")  # RUN/model, merged, through the normal predict path
    again = run.evaluate_file(str(validation))
    assert again["accuracy"] == result["validation"]["accuracy"]
    assert again["loss"] == pytest.approx(result["validation"]["loss"], abs=1e-5)
    adapter_model, tokenizer = load_adapter_model(tmp_path / "run")
    probs = run.predict_texts(TEXTS)[["prob_neg", "prob_pos"]].to_numpy()
    expected = torch.softmax(logits(adapter_model, tokenizer), -1).numpy()
    assert abs(probs - expected).max() < 1e-5
