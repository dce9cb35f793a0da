"""Fine-tuning methods on tiny models: trainable-parameter counts, gradient checkpointing, recipe checks."""

from __future__ import annotations

import pytest
import torch

from tunesmith.errors import RecipeError
from tunesmith.methods import apply_method, count_parameters
from tunesmith.config.method import MethodSpec
from tunesmith.models import load_for_classification
from tunesmith.config.recipe import validate_recipe

LABELS = {0: "neg", 1: "pos"}
H, LAYERS, FF, VOCAB, POSITIONS = 32, 2, 37, 30522, 512  # tiny BERT (tests/tiny_models.py)


def load(model_dir):
    return load_for_classification(model_dir, num_labels=2, id2label=LABELS, label2id={"neg": 0, "pos": 1})


def linear(n_in, n_out, bias=True):
    return n_in * n_out + (n_out if bias else 0)


# tiny BERT, counted by hand from its configuration
EMBEDDINGS = VOCAB * H + POSITIONS * H + 2 * H + 2 * H  # word, position, token type, LayerNorm
LAYER = 4 * linear(H, H) + 2 * H + linear(H, FF) + linear(FF, H) + 2 * H
POOLER = linear(H, H)
HEAD = linear(H, 2)
TOTAL = EMBEDDINGS + LAYERS * LAYER + POOLER + HEAD
BIASES = H + LAYERS * (4 * H + H + FF + H + H) + H + 2  # embedding LayerNorm, per layer: q k v o, LayerNorm, FF in, FF out, LayerNorm; pooler; head


@pytest.mark.parametrize("spec, trainable, extra_total", [
    ({"name": "full"}, TOTAL, 0),
    ({"name": "freeze", "freeze": "embeddings"}, TOTAL - EMBEDDINGS, 0),
    ({"name": "freeze", "freeze": "layers", "layers": 1}, TOTAL - EMBEDDINGS - LAYER, 0),
    ({"name": "freeze", "freeze": "all_but_head"}, HEAD, 0),
    ({"name": "bitfit"}, BIASES + H * 2, 0),
    # r * (in + out) per adapted matrix, query and value in each layer, plus the head (trained copy)
    ({"name": "lora", "r": 4}, LAYERS * 2 * 4 * (H + H) + HEAD, LAYERS * 2 * 4 * (H + H) + HEAD),
    # DoRA adds one magnitude per output feature of each adapted matrix
    ({"name": "dora", "r": 4}, LAYERS * 2 * (4 * (H + H) + H) + HEAD, LAYERS * 2 * (4 * (H + H) + H) + HEAD),
])
def test_trainable_parameter_counts_on_tiny_bert(tiny_bert_dir, spec, trainable, extra_total):
    model, _ = load(tiny_bert_dir)
    assert count_parameters(model) == (TOTAL, TOTAL)
    model, applied = apply_method(model, MethodSpec(**spec))
    assert (applied.trainable, applied.total) == (trainable, TOTAL + extra_total)
    assert count_parameters(model) == (trainable, TOTAL + extra_total)
    summary = applied.summary()
    assert summary["trainable_params"] == trainable and summary["name"] == spec["name"]


def adapted_module(parameter_name: str) -> str:
    return parameter_name.split(".lora_A")[0].rsplit(".", 1)[-1]


def test_lora_defaults_per_architecture(tiny_gpt2_dir, tiny_llama_dir):
    gpt2, _ = load(tiny_gpt2_dir)
    gpt2, applied = apply_method(gpt2, MethodSpec(name="lora", r=4))
    adapted = {adapted_module(n) for n, _ in gpt2.named_parameters() if "lora_A" in n}
    assert adapted == {"c_attn"}
    assert applied.trainable == 2 * 4 * (32 + 96) + 32 * 2  # c_attn 32 -> 96 per layer; score has no bias
    llama, _ = load(tiny_llama_dir)
    llama, applied = apply_method(llama, MethodSpec(name="lora", r=4))
    adapted = {adapted_module(n) for n, _ in llama.named_parameters() if "lora_A" in n}
    assert adapted == {"q_proj", "v_proj"}
    assert applied.trainable == 2 * (4 * (32 + 32) + 4 * (32 + 16)) + 32 * 2  # v_proj: 2 kv heads of 8
    # the head is trained and saved with the adapter
    assert any("score.modules_to_save" in n and p.requires_grad for n, p in llama.named_parameters())


def test_bitfit_on_a_model_without_biases_trains_only_the_head(tiny_llama_dir):
    model, _ = load(tiny_llama_dir)
    model, applied = apply_method(model, MethodSpec(name="bitfit"))
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["score.weight"]


@pytest.mark.parametrize("spec", [{"name": "full"}, {"name": "lora", "r": 4}, {"name": "freeze", "freeze": "layers",
                                                                             "layers": 1}])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tiny_bert_dir, spec):
    batch = {"input_ids": torch.tensor([[101, 2307, 3185, 102, 0], [101, 6659, 2143, 2001, 102]]),
             "attention_mask": torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]), "labels": torch.tensor([1, 0])}
    results = []
    for checkpointing in (False, True):
        model, _ = load(tiny_bert_dir)
        torch.manual_seed(0)
        for p in model.classifier.parameters():
            torch.nn.init.normal_(p, std=0.5)
        model, applied = apply_method(model, MethodSpec(**spec, gradient_checkpointing=checkpointing))
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        flag = getattr(base, "is_activation_checkpointing", None)
        assert (flag if flag is not None else base.is_gradient_checkpointing) is checkpointing
        model.train()
        torch.manual_seed(1)  # same dropout masks (checkpointing replays the RNG state)
        loss = model(**batch).loss
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        assert len(grads) > 0 and all(g is not None for g in grads.values())
        results.append((loss.item(), grads))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert loss_a == pytest.approx(loss_b, abs=1e-6)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], atol=1e-6, rtol=1e-4)


def recipe_with(method):
    return validate_recipe({"model": "minilm", "data": {"train": "x.csv"}, "method": method})


def test_method_section_in_the_recipe():
    assert recipe_with("lora").method.name == "lora"  # shorthand
    recipe = recipe_with({"name": "freeze", "freeze": "layers", "layers": 3, "gradient_checkpointing": True})
    saved = recipe.model_dump(mode="json")["method"]
    assert saved == {"name": "freeze", "gradient_checkpointing": True, "freeze": "layers", "layers": 3}
    assert "  layers: 3\n" in recipe.to_yaml()
    assert validate_recipe(recipe.model_dump(mode="json")).method == recipe.method  # round trip
    assert set(recipe_with({"name": "dora"}).model_dump()["method"]) == {
        "name", "gradient_checkpointing", "r", "alpha", "dropout", "target_modules", "frozen_precision"}


@pytest.mark.parametrize("method, message", [
    ({"name": "full", "r": 4}, "'r' is an option of lora and dora, not of method 'full'"),
    ("lorra", "unknown method 'lorra' (did you mean 'lora'?)"),
    ({"name": "freeze", "freeze": "layers"}, "freeze: layers needs 'layers'"),
    ({"name": "freeze", "layers": 2}, "'layers' goes with freeze: layers"),
    ({"name": "lora", "rank": 4}, "unknown key 'method.rank'"),
    ({"name": "lora", "r": 0}, "method.r"),
])
def test_bad_method_options_are_one_line_errors(method, message):
    with pytest.raises(RecipeError, match=None) as error:
        recipe_with(method)
    assert message in str(error.value)


def test_freezing_every_layer_or_unknown_targets_is_refused(tiny_bert_dir):
    model, _ = load(tiny_bert_dir)
    with pytest.raises(RecipeError, match="freezes every layer"):
        apply_method(model, MethodSpec(name="freeze", freeze="layers", layers=2))
    with pytest.raises(RecipeError, match="no module named q_proj"):
        apply_method(model, MethodSpec(name="lora", target_modules=["q_proj"]))
