"""The loss probe's copy of the trainable weights, parked in a temporary file (preflight/loss_probe.py)."""

import tempfile

import torch

from tunesmith.preflight import loss_probe
from tunesmith.preflight.loss_probe import ParkedWeights


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
