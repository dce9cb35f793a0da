"""What a checkpoint holds besides files: training state as JSON plus tensors, the model's own weights, the RNG
states and the data order, per rank (train/checkpoint.py writes them; no pickle anywhere)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import time
from typing import Any, Callable, Iterator

import numpy as np
import torch

from tunesmith.errors import CheckpointError
from tunesmith.train.loop import LoopState

# --- state <-> (JSON, tensors) -------------------------------------------------------------------------------


def encode_tree(value: Any, tensors: dict[str, torch.Tensor], where: str = "state") -> Any:
    """A JSON-able copy of `value` whose tensors are moved into `tensors` (CPU, contiguous, each its own storage,
    as safetensors requires)."""
    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        tensor = value.detach().to("cpu").contiguous()
        storage = tensor.untyped_storage().data_ptr()
        if tensor.numel() and any(t.numel() and t.untyped_storage().data_ptr() == storage for t in tensors.values()):
            tensor = tensor.clone()  # a view of a tensor stored already (safetensors stores each storage once)
        tensors[key] = tensor
        return {"__tensor__": key}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [encode_tree(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [encode_tree(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: encode_tree(v, tensors, f"{where}.{k}") for k, v in value.items()}
        return {"__items__": [[encode_tree(k, tensors, where), encode_tree(v, tensors, f"{where}[{k!r}]")]
                              for k, v in value.items()]}
    raise CheckpointError(f"cannot store {where} (a {type(value).__name__}) in a checkpoint")


def decode_tree(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [decode_tree(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__ndarray__" in value:
        return np.asarray(value["__ndarray__"], dtype=value["dtype"])
    if "__tuple__" in value:
        return tuple(decode_tree(v, tensors) for v in value["__tuple__"])
    if "__items__" in value:
        return {_hashable(decode_tree(k, tensors)): decode_tree(v, tensors) for k, v in value["__items__"]}
    return {k: decode_tree(v, tensors) for k, v in value.items()}


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def model_tensors(model: torch.nn.Module, state: dict | None = None) -> dict[str, torch.Tensor]:
    """The state_dict (or `state`, the model's full one gathered under FSDP) with each shared tensor (tied
    weights) kept once, under its first name, and without the frozen parameters: they never change, and
    resuming rebuilds the model from the same pretrained weights (a LoRA checkpoint holds the adapter, a few MB,
    not a copy of the whole model)."""
    kept, seen = {}, set()
    frozen = {name for name, param in model.named_parameters(remove_duplicate=False) if not param.requires_grad}
    for name, tensor in (model.state_dict() if state is None else state).items():
        key = (tensor.device, tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if name in frozen or (tensor.numel() and key in seen):
            continue
        seen.add(key)
        kept[name] = tensor.detach().to("cpu").contiguous()
    return kept


def load_model_tensors(model: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    expected = model_tensors(model)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(model.state_dict()))
    if missing or unexpected:
        raise CheckpointError(f"{where}: the checkpointed weights do not fit this model (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}); was it saved by another model or task?")
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(expected.get(name, tensor).shape):
            raise CheckpointError(f"{where}: weight {name} has shape {tuple(tensor.shape)}, the model has "
                                  f"{tuple(expected[name].shape)}")
    model.load_state_dict(tensors, strict=False)


# --- RNG and data order -----------------------------------------------------------------------------------------


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def sampler_generators(loader) -> list[torch.Generator]:
    """The torch.Generators that decide a loader's order (its sampler's, its batch sampler's ...)."""
    found: list[torch.Generator] = []
    seen: set[int] = set()

    def visit(obj, depth: int) -> None:
        if obj is None or depth > 5 or id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, torch.Generator):
            found.append(obj)
            return
        for attr in ("base_dataloader", "batch_sampler", "sampler", "generator", "synchronized_generator"):
            visit(getattr(obj, attr, None), depth + 1)

    visit(loader, 0)
    return found



def then_restore(loader, rng: dict, at_end: Callable[[], None]) -> Iterator:
    """Iterate `loader`, putting the RNG states back once its first batch is fetched (creating the iterator and
    ordering the epoch drew from them, as at the start of the interrupted epoch); `at_end` after the pass."""
    iterator = iter(loader)
    try:
        first = next(iterator)
    except StopIteration:
        set_rng_state(rng)
        return
    set_rng_state(rng)
    yield first
    yield from iterator
    at_end()


def set_iteration(loader, value: int | None) -> None:
    """Accelerate's pass counter, which it hands to `sampler.set_epoch` (epoch-seeded samplers)."""
    if value is not None and hasattr(loader, "iteration"):
        loader.iteration = value


def next_iteration(iteration: int | None) -> int | None:
    return None if iteration is None else iteration + 1


@dataclasses.dataclass
class Resume:
    """Where a resumed run picks up the data order and the RNG states (this rank's)."""

    rng: dict                         # global RNG states when the checkpoint was saved
    epoch_rng: dict                   # ... and at the start of its epoch
    epoch_start: list[torch.Tensor]   # sampler generators at the start of the epoch
    now: list[torch.Tensor]           # ... and when the checkpoint was saved
    iteration: int | None             # the loader's pass counter (Accelerate's set_epoch) at the start of the epoch


def rank_state(loader, epoch_start: list[torch.Tensor], epoch_rng: dict | None, iteration: int | None) -> dict:
    """This rank's part of a checkpoint: its RNG states now and at the start of the epoch, and the data order
    (its loader's generators at the start of the epoch and now, the loader's pass number)."""
    return {"rng": rng_state(),
            "data": {"epoch_start": epoch_start, "epoch_rng": epoch_rng, "iteration": iteration,
                     "now": [g.get_state() for g in sampler_generators(loader)]}}


def own_part(tree: dict, rank: int) -> dict:
    """Rank `rank`'s {"rng", "data"} of a decoded checkpoint: rank 0's at the top level (as a single process
    saves it), the others' in "ranks"."""
    if rank == 0:
        return {"rng": tree["rng"], "data": tree["data"]}
    others = tree.get("ranks") or []
    if rank - 1 >= len(others):
        raise CheckpointError(f"the checkpoint holds the states of {len(others) + 1} processes, not of rank {rank}")
    return others[rank - 1]


# --- what identifies a run --------------------------------------------------------------------------------------

# recipe keys that may change between a run and its resumption
NOT_FINGERPRINTED = ("resume", "overwrite", "checkpoint", "output", "tune", "preflight")
MISSING = "(not set)"


def recipe_fingerprint(recipe) -> dict:
    dumped = recipe.model_dump(mode="json")
    return {k: v for k, v in dumped.items() if k not in NOT_FINGERPRINTED}


def first_difference(a: Any, b: Any, prefix: str = "") -> str | None:
    """The dotted key of the first value that differs between two nested dicts, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            found = first_difference(a.get(key, MISSING), b.get(key, MISSING), f"{prefix}{key}.")
            if found is not None:
                return found
        return None
    return None if a == b else prefix.rstrip(".")


def lookup(tree: dict, key: str) -> Any:
    node: Any = tree
    for part in key.split("."):
        node = node.get(part, MISSING) if isinstance(node, dict) else MISSING
    return node


def dataset_fingerprint(data) -> str:
    """"<rows>:<sha256 of every row as JSON>" (a memory-mapped Arrow dataset: of its file, content_fingerprint):
    what resuming checks the training data against."""
    own = getattr(data, "content_fingerprint", None)
    if callable(own):
        return f"{len(data)}:{own()}"
    digest = hashlib.sha256()
    for index in range(len(data)):
        digest.update(json.dumps(data[index], sort_keys=True, default=plain).encode())
    return f"{len(data)}:{digest.hexdigest()}"


def plain(value: Any) -> Any:
    """A JSON-able stand-in for a value json cannot write (arrays as lists, the rest as text)."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def loop_state_from(saved: dict, clock: float) -> LoopState:
    """The LoopState a checkpoint saved; its start time moved to this process's clock."""
    names = {f.name for f in dataclasses.fields(LoopState)}
    state = LoopState(**{k: v for k, v in saved.items() if k in names})
    if isinstance(saved.get("started"), (int, float)):  # a time.perf_counter() of the interrupted process
        state.started = time.perf_counter() - (clock - saved["started"])
    return state
