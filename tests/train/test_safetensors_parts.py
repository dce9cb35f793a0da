"""Checkpoint files streamed from the tensors' own memory (train/safetensors_parts.py)."""

import json
import struct

import pytest
import torch
from safetensors.torch import load, save

from tunesmith.train import checkpoint_store
from tunesmith.train.checkpoint_store import CheckpointStore
from tunesmith.train.safetensors_parts import safetensors_parts


def mixed_tensors() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"b.weight": torch.randn(3, 4), "a": torch.arange(5), "mask": torch.tensor([True, False, True]),
            "half": torch.randn(7).bfloat16(), "scalar": torch.tensor(3.0), "empty": torch.zeros(0),
            "rng": torch.randint(0, 255, (9,), dtype=torch.uint8), "f16": torch.randn(2, 2).half()}


def header_of(data: bytes) -> dict:
    size = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + size])


def test_parts_are_the_bytes_safetensors_writes():
    tensors = mixed_tensors()
    assert b"".join(safetensors_parts(tensors)) == save(tensors)
    assert b"".join(safetensors_parts(tensors, {"format": "pt"})) == save(tensors, metadata={"format": "pt"})
    # with several metadata keys safetensors orders them as its hash map does (not the same in every process)
    metadata = {"format": "pt", "step": "3"}
    ours, theirs = b"".join(safetensors_parts(tensors, metadata)), save(tensors, metadata=metadata)
    assert len(ours) == len(theirs) and header_of(ours) == header_of(theirs)
    assert ours[-sum(t.numel() * t.element_size() for t in tensors.values()):] == \
        theirs[-sum(t.numel() * t.element_size() for t in tensors.values()):]
    loaded = load(ours)
    assert loaded.keys() == tensors.keys()
    assert all(torch.equal(loaded[name], tensor) for name, tensor in tensors.items())


def test_parts_are_views_of_the_tensors_not_copies():
    weight = torch.randn(1000)
    view = safetensors_parts({"w": weight})[1]
    weight[0] = 42.0  # the part shows the tensor's memory
    assert torch.frombuffer(bytearray(view), dtype=torch.float32)[0] == 42.0


@pytest.mark.parametrize("tensor, problem", [(torch.randn(4, 4).t(), "contiguous"),
                                             (torch.zeros(2, dtype=torch.complex64), "dtype")])
def test_what_cannot_be_written_is_refused_by_name(tensor, problem):
    with pytest.raises((TypeError, ValueError), match=f"bad: .*{problem}"):
        safetensors_parts({"bad": tensor})


def test_a_checkpoint_of_parts_is_verified_and_read_back_like_bytes(tmp_path, monkeypatch):
    tensors = mixed_tensors()
    chunks = []
    real_write = checkpoint_store._write_chunk
    monkeypatch.setattr(checkpoint_store, "_write_chunk", lambda fd, chunk: (chunks.append(len(chunk)),
                                                                             real_write(fd, chunk)))
    store = CheckpointStore(tmp_path / "checkpoints")
    parts = safetensors_parts(tensors)
    path = store.save(4, {"model.safetensors": parts, "state.safetensors": save({}), "state.json": b"{}"})
    files = store.read(path)
    assert store.problem(path) is None
    assert files["model.safetensors"] == save(tensors)
    assert chunks[:len(parts)] == [len(part) for part in parts]  # written part by part, never joined
