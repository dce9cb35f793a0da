"""Checkpoint files: atomic saves, verification, damaged and partial checkpoints, pruning, the no-pickle codec.

Unit level (no training): each test takes milliseconds. The end-to-end proofs (SIGKILL, SIGTERM, disk full
during a real run) are in test_resume.py.
"""

from __future__ import annotations

import errno
import json
import random
import tempfile

import numpy as np
import pytest
import torch

from tunesmith.errors import CheckpointError
from tunesmith.train import checkpoint as ckpt
from tunesmith.train import checkpoint_store
from tunesmith.train.checkpoint import CheckpointStore
from tunesmith.train.checkpoint_state import decode_tree, encode_tree, load_model_tensors, model_tensors

FILES = {"model.safetensors": b"m" * 200_000, "state.safetensors": b"s" * 1000, "state.json": b'{"step": 1}'}


def files(step: int) -> dict[str, bytes]:
    return {name: data + str(step).encode() for name, data in FILES.items()}


@pytest.fixture
def store(tmp_path):
    lines: list[str] = []
    store = CheckpointStore(tmp_path / "checkpoints", echo=lines.append)
    store.lines = lines
    return store


def test_save_writes_a_manifest_and_reads_back_verified(store):
    path = store.save(3, files(3))
    assert path.name == "step-00000003"
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["step"] == 3 and set(manifest["files"]) == set(FILES)
    assert manifest["files"]["model.safetensors"]["bytes"] == 200_001
    assert len(manifest["files"]["state.json"]["sha256"]) == 64
    assert store.read(path) == files(3)
    assert [p.name for p in store.root.iterdir()] == ["step-00000003"]  # no temporary directory left


def _truncate(path):
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])


def _flip_a_byte(path):
    data = bytearray((path / "state.safetensors").read_bytes())
    data[10] ^= 0xFF
    (path / "state.safetensors").write_bytes(bytes(data))


def _edit_manifest(change):
    def damage(path):
        manifest = json.loads((path / "manifest.json").read_text())
        change(manifest)
        (path / "manifest.json").write_text(json.dumps(manifest))
    return damage


DAMAGE = {
    "truncated file": (_truncate, "model.safetensors has 100000 bytes, the manifest says 200001"),
    "flipped byte": (_flip_a_byte, "state.safetensors does not match its sha256 checksum"),
    "no manifest (killed while saving)": (lambda p: (p / "manifest.json").unlink(), "no manifest.json"),
    "manifest not JSON": (lambda p: (p / "manifest.json").write_text("{half"), "manifest.json is not valid JSON"),
    "file missing": (lambda p: (p / "state.json").unlink(), "state.json is missing"),
    "path outside the checkpoint": (_edit_manifest(lambda m: m["files"].update({"../../escape": {}})),
                                    "manifest.json names an unexpected file '../../escape'"),
    "file left out of the manifest": (_edit_manifest(lambda m: m["files"].pop("state.json")),
                                      "manifest.json does not list state.json"),
    "foreign manifest": (_edit_manifest(lambda m: m.update(format="other/9")),
                         "manifest.json is not a tunesmith checkpoint manifest"),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_checkpoint_is_reported_and_the_previous_one_used(store, kind):
    damage, reason = DAMAGE[kind]
    store.save(4, files(4))
    newest = store.save(9, files(9))
    damage(newest)
    path, data = store.newest_valid()
    assert path.name == "step-00000004" and data == files(4)
    assert len(store.lines) == 1 and "\n" not in store.lines[0]
    assert f"checkpoint {newest} is damaged ({reason}" in store.lines[0]
    assert (store.root / "damaged-step-00000009").is_dir()  # kept for inspection, never used again
    assert [s for s, _ in store.steps()] == [4]


def test_no_valid_checkpoint_at_all(store):
    (store.save(2, files(2)) / "manifest.json").unlink()
    assert store.newest_valid() is None
    assert "no manifest.json" in store.lines[0]


def test_partial_directories_of_a_killed_save_are_ignored_and_cleaned(store):
    store.save(5, files(5))
    partial = store.root / ".tmp-step-00000007-abc"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half")
    assert store.newest_valid()[0].name == "step-00000005"
    store.remove_partials()
    assert not partial.exists() and (store.root / "step-00000005").is_dir()


def test_disk_full_part_way_through_a_save_keeps_the_previous_checkpoint(store, monkeypatch):
    previous = store.save(6, files(6))
    real_write, written = checkpoint_store._write_chunk, []

    def fills_up(fd, chunk):  # the disk fills after 100 kB: model.safetensors is left half-written
        if sum(written) + len(chunk) > 100_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(len(chunk))
        real_write(fd, chunk)

    monkeypatch.setattr(checkpoint_store, "_write_chunk", fills_up)
    with pytest.raises(CheckpointError) as info:
        store.save(8, files(8))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"cannot save checkpoint {store.root / 'step-00000008'} (writing model.safetensors): "
                              "No space left on device (ENOSPC)")
    assert f"the previous checkpoint {previous} is intact" in message and "--resume" in message
    assert 0 < sum(written) <= 100_000
    assert sorted(p.name for p in store.root.iterdir()) == ["step-00000006"]  # temp dir removed
    assert store.read(previous) == files(6)


def test_permission_denied_is_one_clear_line(store, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    with pytest.raises(CheckpointError, match=r"Permission denied \(EACCES\); there is no earlier checkpoint"):
        store.save(1, files(1))


def test_prune_keeps_the_newest_k_plus_the_best(store):
    for step in (2, 4, 6, 8, 10):
        store.save(step, files(step))
    store.prune(keep_last=2, keep_steps={4})
    assert [s for s, _ in store.steps()] == [10, 8, 4]


def test_prune_never_follows_a_symlink_out_of_the_run(store, tmp_path):
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "data.txt").write_text("keep me")
    for step in (2, 4, 6):
        store.save(step, files(step))
    (store.root / "step-00000001").symlink_to(outside, target_is_directory=True)
    store.prune(keep_last=1)
    assert (outside / "data.txt").read_text() == "keep me"
    assert [s for s, _ in store.steps()] == [6]
    (store.root / "step-00000009").symlink_to(outside, target_is_directory=True)  # nor read through a symlink
    assert store.newest_valid()[0].name == "step-00000006"


def test_the_codec_round_trips_optimizer_and_rng_state_without_pickle():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    generator = torch.Generator().manual_seed(7)
    tree = {"optimizer": optimizer.state_dict(), "python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(), "generator": generator.get_state(), "inf": float("inf"), "none": None,
            "__odd_key": 1, 5: "int key"}
    tensors: dict = {}
    encoded = encode_tree(tree, tensors)
    text = json.dumps(encoded)  # JSON and tensors only
    decoded = decode_tree(json.loads(text), tensors)
    assert decoded["python"] == tree["python"] and decoded[5] == "int key" and decoded["__odd_key"] == 1
    assert decoded["numpy"][0] == "MT19937" and np.array_equal(decoded["numpy"][1], tree["numpy"][1])
    np.random.set_state(decoded["numpy"])
    random.setstate(decoded["python"])
    assert torch.equal(decoded["generator"], tree["generator"])
    restored = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=0.5)
    restored.load_state_dict(decoded["optimizer"])
    assert restored.state_dict()["param_groups"] == optimizer.state_dict()["param_groups"]
    for index, state in optimizer.state_dict()["state"].items():
        assert torch.equal(restored.state_dict()["state"][index]["exp_avg"], state["exp_avg"])
    with pytest.raises(CheckpointError, match=r"cannot store state.thing \(a object\)"):
        encode_tree({"thing": object()}, {})


class Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(5, 3)
        self.head = torch.nn.Linear(3, 5, bias=False)
        self.head.weight = self.embed.weight


def test_tied_weights_are_stored_once_and_restored():
    torch.manual_seed(0)
    source, target = Tied(), Tied()
    tensors = model_tensors(source)
    assert set(tensors) == {"embed.weight"}
    load_model_tensors(target, tensors, "ckpt")
    assert torch.equal(target.head.weight, source.embed.weight) and target.head.weight is target.embed.weight
    with pytest.raises(CheckpointError, match="do not fit this model"):
        load_model_tensors(torch.nn.Linear(3, 5), tensors, "ckpt")


def test_frozen_weights_are_left_out_and_the_trainable_ones_restored():
    """A LoRA/BitFit/freeze checkpoint holds the trainable weights and buffers, not a copy of the frozen model."""
    torch.manual_seed(0)

    def model():
        net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
        net[0].requires_grad_(False)
        return net

    source, target = model(), model()
    target[0].load_state_dict(source[0].state_dict())  # the same pretrained frozen layer
    with torch.no_grad():
        source[2].weight.add_(1.0)
        source[1].running_mean.add_(0.5)
    tensors = model_tensors(source)
    assert "0.weight" not in tensors and "0.bias" not in tensors
    assert {"2.weight", "2.bias", "1.weight", "1.running_mean", "1.num_batches_tracked"} <= set(tensors)
    load_model_tensors(target, tensors, "ckpt")
    for (name, a), b in zip(source.state_dict().items(), target.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(CheckpointError, match=r"missing \['2.bias'"):
        load_model_tensors(model(), {k: v for k, v in tensors.items() if k != "2.bias"}, "ckpt")
