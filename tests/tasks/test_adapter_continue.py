"""`model: <a LoRA/DoRA run>` with `init.adapter: continue`, on tiny random models: the run starts from the parent's
own adapter and head on the parent's base (its first step's weights and outputs are the parent's), trains it
further, and can then be switched with the parent on one base; a new head keeps only the adapter's matrices;
`init.adapter: new` (the default) is a fresh adapter on the parent's merged model; mismatches are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from adapter_helpers import TEXTS, adapter_tensors, alone, bitwise_equal, lora_recipe, quiet, train_lora
from tunesmith.config.recipe import validate_recipe
from tunesmith.errors import ModelError, RecipeError
from tunesmith.recipes.adapters import SwitchedRuns
from tunesmith.recipes.finetune import finetune, prepare_data, prepare_model
from tunesmith.recipes.predict import TrainedRun, prediction_columns


@pytest.fixture(scope="module")
def parent(tiny_bert_dir, tmp_path_factory) -> Path:
    return train_lora(tiny_bert_dir, tmp_path_factory.mktemp("continue"), "sent")


def child(parent: Path, root: Path, name: str = "child", **changes) -> dict:
    changes.setdefault("init", {"adapter": "continue"})
    raw = lora_recipe(parent, root, name, rows=changes.pop("rows", "sent"), **changes)
    raw["method"] = changes.get("method", {"name": "lora"})  # rank, scale and targets: the parent's
    return raw


def prepared(raw: dict):
    recipe = validate_recipe(raw)
    task, _ = prepare_data(recipe, echo=quiet)
    model, tokenizer, method = prepare_model(recipe, task, echo=quiet)
    return task, model, tokenizer, method


def peft_key(saved_key: str) -> str:
    """A saved adapter key as the PEFT model's state_dict names it (adapter "default")."""
    if ".lora_" in saved_key:
        return saved_key.replace(".weight", ".default.weight")
    return saved_key.replace("classifier.", "classifier.modules_to_save.default.")


@pytest.fixture(scope="module")
def dora_parent(tiny_bert_dir, tmp_path_factory) -> Path:
    return train_lora(tiny_bert_dir, tmp_path_factory.mktemp("continue-dora"), "sent", method="dora")


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_the_continued_adapter_starts_as_the_parents(request, tmp_path, method):
    from peft import get_peft_model_state_dict

    parent = request.getfixturevalue("parent" if method == "lora" else "dora_parent")
    task, model, tokenizer, applied = prepared(child(parent, tmp_path, method={"name": method}))
    saved, state = adapter_tensors(parent), get_peft_model_state_dict(model)  # PEFT's saved form of the model's
    assert any(".lora_B." in k and v.abs().sum() > 0 for k, v in saved.items())  # the parent's adapter moved
    assert state.keys() == saved.keys() and all(torch.equal(state[k], saved[k]) for k in saved)
    assert any("magnitude" in k for k in saved) == (method == "dora")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == sum(t.numel() for t in saved.values())  # that adapter and head train, nothing else
    assert applied.summary()["adapter_start"] == {"run": str(parent.resolve()), "head": "kept",
                                                  "base": json.loads((parent / "adapter" / "adapter_config.json")
                                                                     .read_text())["base_model_name_or_path"]}
    assert applied.summary()["description"] == f"{method} r=4"  # the parent's rank, not the recipe's default 8
    import pandas as pd

    task.use_trained(model)
    before = prediction_columns(task, model, tokenizer, pd.DataFrame({"text": TEXTS}))
    for column, values in alone(parent).items():  # its first step starts from the parent's outputs, bit for bit
        assert bitwise_equal(before[column], values), column


def test_lora_and_dora_runs_switch_on_one_base(parent, dora_parent, tmp_path):
    dora = tmp_path / "dora"
    shutil.copytree(dora_parent, dora)
    frame = SwitchedRuns([parent, dora]).predict_texts(TEXTS)
    for name, run in (("sent", parent), ("dora", dora)):
        for column, values in alone(run).items():
            assert bitwise_equal(frame[f"{name}.{column}"], values), (name, column)


def test_a_continued_run_trains_the_adapter_further_on_the_parents_base(parent, tmp_path):
    finetune(validate_recipe(child(parent, tmp_path)), echo=quiet)
    run = tmp_path / "child"
    config, theirs = (json.loads((r / "adapter" / "adapter_config.json").read_text()) for r in (run, parent))
    assert config["base_model_name_or_path"] == theirs["base_model_name_or_path"] and config["r"] == theirs["r"] == 4
    assert (run / "adapter" / "tunesmith_base.json").read_text() == (parent / "adapter" / "tunesmith_base.json").read_text()
    mine, saved = adapter_tensors(run), adapter_tensors(parent)
    assert mine.keys() == saved.keys() and any(not torch.equal(mine[k], saved[k]) for k in mine)  # it trained
    result = json.loads((run / "eval.json").read_text())
    assert result["method"]["adapter_start"]["run"] == str(parent.resolve()) and result["lineage"]["head"] == "kept"
    frame = SwitchedRuns([parent, run]).predict_texts(TEXTS)  # same base: the two switch on one model
    assert not np.array_equal(frame["sent.prob_pos"], frame["child.prob_pos"])
    for column, values in alone(run).items():
        assert bitwise_equal(frame[f"child.{column}"], values)
    merged = TrainedRun(run).predict_texts(TEXTS)  # RUN/model: base + the continued adapter, merged
    np.testing.assert_allclose(merged["prob_pos"], frame["child.prob_pos"], atol=1e-5)


def test_a_new_head_keeps_only_the_adapters_matrices(parent, tiny_bert_dir, tmp_path):
    task, model, _, method = prepared(child(parent, tmp_path, rows="topic"))  # other labels: head auto -> new
    assert task.head_start == "new" and method.summary()["adapter_start"]["head"] == "new"
    saved, state = adapter_tensors(parent), model.state_dict()
    for key in (k for k in saved if ".lora_" in k):
        assert torch.equal(state[peft_key(key)], saved[key]), key
    head = state["base_model.model.classifier.modules_to_save.default.weight"]
    assert head.shape == (3, 32) and 0.005 < float(head.std()) < 0.05  # freshly initialised, for 3 labels
    from safetensors.torch import load_file

    base = load_file(str(tiny_bert_dir / "model.safetensors"))  # a bare BertModel: keys without "bert."
    assert torch.equal(state["base_model.model.bert.encoder.layer.1.output.dense.weight"],
                       base["encoder.layer.1.output.dense.weight"])  # the body is the base's


def test_the_default_is_a_new_adapter_on_the_parents_merged_model(parent, tmp_path):
    raw = child(parent, tmp_path, init=None)
    raw.pop("init")
    _, model, _, method = prepared(raw)
    assert "adapter_start" not in method.summary() and method.summary()["description"] == "lora r=8"
    assert all(not p.any() for n, p in model.named_parameters() if ".lora_B." in n)  # PEFT's fresh start: B = 0
    from safetensors.torch import load_file

    merged = load_file(str(parent / "model" / "model.safetensors"))  # the parent's adapter is in the base now
    key = "bert.encoder.layer.0.attention.self.query.weight"
    assert torch.equal(model.state_dict()[f"base_model.model.{key.replace('.weight', '.base_layer.weight')}"],
                       merged[key])


def test_continue_with_another_method_or_rank_is_refused(parent, tmp_path):
    raw = child(parent, tmp_path)
    raw["method"] = {"name": "full"}
    with pytest.raises(RecipeError, match=r"init.adapter: continue trains a LoRA/DoRA run's adapter further: it needs "
                                          r"method lora or dora \(method is full\)"):
        validate_recipe(raw)
    raw["method"] = {"name": "dora"}
    with pytest.raises(RecipeError, match=r"trained a lora adapter and this run's method is dora: use method lora"):
        prepared(raw)
    raw["method"] = {"name": "lora", "r": 8, "alpha": 16}
    with pytest.raises(RecipeError, match=r"method.r: 8 \(the adapter's: 4\); a continued adapter keeps its rank"):
        prepared(raw)


def test_continue_from_a_run_without_an_adapter_is_refused(parent, tmp_path):
    full = tmp_path / "full"
    shutil.copytree(parent, full)
    shutil.rmtree(full / "adapter")  # what a full fine-tuning run holds
    with pytest.raises(ModelError, match=r"init.adapter: continue: .*full has no adapter to continue"):
        prepared(child(full, tmp_path))


def test_a_causal_lm_adapter_is_continued_too(tiny_llama_dir, tmp_path):
    """A language model's adapter has no head to keep: its matrices are loaded on the parent's base decoder."""
    from peft import get_peft_model_state_dict

    from lm_helpers import lm_recipe, shakespeare_slice

    text = shakespeare_slice(tmp_path / "shakespeare.txt", 3_000)
    raw = lm_recipe(tiny_llama_dir, "causal_lm", text, tmp_path / "parent", lm={"validation_by": "tail"},
                    data={"validation": {"split": 0.2}}, epochs=1, lr=1e-2, max_length=32)
    raw.update(method={"name": "lora", "r": 4}, report={"html": False})
    finetune(validate_recipe(raw), echo=quiet)
    raw.update(model=str(tmp_path / "parent"), output=str(tmp_path / "child"), init={"adapter": "continue"},
               method={"name": "lora"})
    _, model, _, applied = prepared(raw)
    saved, state = adapter_tensors(tmp_path / "parent"), get_peft_model_state_dict(model)
    assert state.keys() == saved.keys() and all(torch.equal(state[k], saved[k]) for k in saved)
    assert applied.summary()["adapter_start"]["base"] == str(tiny_llama_dir)
