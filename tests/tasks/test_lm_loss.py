"""The chunked language-model loss (tasks/lm_loss.py) equals the model's own loss and gradient, fp32, within 1e-6."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from tunesmith.data.packing import IGNORE_INDEX
from tunesmith.tasks.lm_loss import can_chunk, chunked_lm_loss, projection_set_aside, row_loss_sums


def batch_of(model, rows: int = 3, length: int = 17, seed: int = 0) -> dict:
    """Random ids; labels with a masked prompt, a padded tail on one row and a row-end target mix."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.config.vocab_size, (rows, length), generator=generator)
    attention = torch.ones_like(ids)
    attention[1, -5:] = 0  # padded tail
    labels = ids.clone()
    labels[:, :4] = IGNORE_INDEX  # the prompt
    labels[attention == 0] = IGNORE_INDEX
    labels[2, 9] = IGNORE_INDEX  # a hole in the middle
    return {"input_ids": ids, "attention_mask": attention, "labels": labels}


def loss_and_grads(model, compute) -> tuple[float, dict]:
    model.zero_grad(set_to_none=True)
    loss = compute()
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.fixture(params=["gpt2", "llama"])
def model(request, tiny_gpt2_dir, tiny_llama_dir):
    directory = {"gpt2": tiny_gpt2_dir, "llama": tiny_llama_dir}[request.param]
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    model.config.attn_implementation = "eager"
    model.eval()  # dropout off: both forwards see the same network
    return model


@pytest.mark.parametrize("chunk", [1, 7, 256])
def test_the_chunked_loss_and_its_gradient_equal_the_models_own(model, chunk):
    batch = batch_of(model)
    assert can_chunk(model)
    reference, reference_grads = loss_and_grads(model, lambda: model(**batch, use_cache=False).loss)
    chunked, chunked_grads = loss_and_grads(model, lambda: chunked_lm_loss(model, batch, chunk))
    assert abs(chunked - reference) <= 1e-6 * max(1.0, abs(reference))
    assert chunked_grads.keys() == reference_grads.keys() and reference_grads
    for name, grad in reference_grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, rtol=1e-5, atol=1e-6, msg=name)
    assert model.lm_head is not None and not isinstance(model.lm_head, torch.nn.Identity)  # put back


def test_evaluation_row_sums_equal_the_full_logits_ones(model):
    batch = batch_of(model, rows=4, seed=3)
    with torch.no_grad():
        chunked, counts = row_loss_sums(model, batch, 5)
        full, full_counts = row_loss_sums(model, batch, 0)
    assert counts.tolist() == full_counts.tolist() == (batch["labels"][:, 1:] != IGNORE_INDEX).sum(1).tolist()
    torch.testing.assert_close(chunked, full, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("chunk", [1, 4, 256])
def test_under_lora_the_adapter_gradients_match(tiny_llama_dir, chunk, monkeypatch):
    """The projection is frozen: the loss takes the fused path (gradient in the forward pass, nothing recomputed)."""
    from peft import LoraConfig, get_peft_model

    from tunesmith.tasks import lm_loss

    fused = []
    apply = lm_loss.FrozenProjectionCrossEntropy.apply
    monkeypatch.setattr(lm_loss.FrozenProjectionCrossEntropy, "apply", lambda *a: fused.append(1) or apply(*a))

    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.eval()
    batch = batch_of(model, seed=5)
    reference, reference_grads = loss_and_grads(model, lambda: model(**batch, use_cache=False).loss)
    chunked, chunked_grads = loss_and_grads(model, lambda: chunked_lm_loss(model, batch, chunk))
    assert fused == [1]
    assert abs(chunked - reference) <= 1e-6 * max(1.0, abs(reference))
    assert reference_grads and all("lora_" in name for name in reference_grads)
    for name, grad in reference_grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, rtol=1e-5, atol=1e-6, msg=name)


def test_the_projection_is_put_back_when_the_forward_fails(model):
    head = model.lm_head
    with pytest.raises(RuntimeError, match="boom"):
        with projection_set_aside(model):
            assert isinstance(model.lm_head, torch.nn.Identity)
            raise RuntimeError("boom")
    assert model.lm_head is head


def test_a_batch_without_targets_is_nan_like_the_models_own(model):
    batch = batch_of(model)
    batch["labels"] = torch.full_like(batch["labels"], IGNORE_INDEX)
    with torch.no_grad():
        assert torch.isnan(chunked_lm_loss(model, batch, 8)) and torch.isnan(model(**batch).loss)


def test_architectures_whose_logits_are_more_than_the_projection_keep_their_own_loss(model):
    model.config.final_logit_softcapping = 30.0
    assert not can_chunk(model)
