"""What the loss probe holds (preflight/loss_probe.py): its copy of the trainable weights, parked in a temporary
file, and the activations of a step under method.gradient_checkpointing."""

import tempfile

import torch
from transformers import AutoModelForCausalLM
from transformers.modeling_layers import GradientCheckpointingLayer

from tunesmith.methods import enable_gradient_checkpointing
from tunesmith.preflight import loss_probe
from tunesmith.preflight.loss_probe import ParkedWeights, eval_but_checkpointed


def weights() -> list[torch.nn.Parameter]:
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(64, 32)), torch.nn.Parameter(torch.randn(17).bfloat16()),
            torch.nn.Parameter(torch.randn(8, 4).t()), torch.nn.Parameter(torch.zeros(0))]  # a transposed view


def test_restore_puts_back_the_exact_bytes_and_keeps_no_copy_of_contiguous_weights():
    params = weights()
    before = [p.detach().clone() for p in params]
    parked = ParkedWeights(params)
    assert sorted(parked.in_memory) == [2, 3]  # the transposed view and the empty one
    storages = [p.untyped_storage().data_ptr() for p in params]
    with torch.no_grad():
        for p in params:
            p.add_(1.5)
    parked.restore()
    assert all(torch.equal(p, b) and p.dtype == b.dtype for p, b in zip(params, before))
    assert [p.untyped_storage().data_ptr() for p in params] == storages  # read back into the same memory


def test_a_file_that_cannot_be_written_keeps_the_copy_in_memory(monkeypatch):
    real_file = tempfile.TemporaryFile

    class FillsUp:  # the disk is full after the first weight
        def __init__(self, *args, **kwargs):
            self.file, self.writes, self.closed = real_file(*args, **kwargs), 0, False

        def write(self, data):
            self.writes += 1
            if self.writes > 1:
                raise OSError(28, "No space left on device")
            return self.file.write(data)

        def close(self):
            self.closed = True
            self.file.close()

    monkeypatch.setattr(loss_probe.tempfile, "TemporaryFile", FillsUp)
    params = weights()
    before = [p.detach().clone() for p in params]
    parked = ParkedWeights(params)
    assert sorted(parked.in_memory) == [0, 1, 2, 3] and parked.file is None
    with torch.no_grad():
        params[0].zero_()
    parked.restore()
    assert all(torch.equal(p, b) for p, b in zip(params, before))


def test_the_probe_step_recomputes_checkpointed_layers_with_dropout_off(tiny_llama_dir):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, attention_dropout=0.5)
    enable_gradient_checkpointing(model)
    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    assert len(layers) == model.config.num_hidden_layers
    calls = []
    for layer in layers:
        real = layer._gradient_checkpointing_func
        layer._gradient_checkpointing_func = lambda *a, _real=real, **k: (calls.append(1), _real(*a, **k))[1]
    ids = torch.randint(0, model.config.vocab_size, (2, 12))
    eval_but_checkpointed(model)
    assert all(layer.training for layer in layers)
    assert not any(m.training for m in model.modules() if m not in layers)  # dropout and the rest: eval mode
    first = model(input_ids=ids, labels=ids, use_cache=False).loss
    second = model(input_ids=ids, labels=ids, use_cache=False).loss
    assert torch.equal(first, second)  # no dropout: the same batch gives the same loss
    second.backward()
    assert len(calls) == 2 * len(layers)  # every layer of both forwards ran under the checkpoint
