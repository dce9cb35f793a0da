"""Checkpoints: everything needed to continue a run exactly where it stopped.

    RUN/checkpoints/step-00000042/
        model.safetensors   the model's state_dict (weights tied to another are stored once); when the method
                            freezes weights (LoRA, BitFit, freeze), only the trainable ones and the buffers:
                            the frozen ones are the pretrained weights, loaded again on resume
        state.safetensors   every other tensor: optimizer moments, torch / CUDA / data-order RNG states
        state.json          the rest: loop state and evaluation history, early stopping, scheduler, optimizer
                            hyper-parameters, python and numpy RNG states, the position inside the epoch,
                            and fingerprints of the recipe and of the training data
        manifest.json       written last: size and sha256 of each file above

No pickle anywhere: tensors go to safetensors and everything else to JSON, so reading a checkpoint can
never run code. A checkpoint is written into a temporary directory, each file fsync'ed, then renamed
into place; a directory without a manifest, or whose files do not match it, is reported as damaged and
the next older checkpoint is used.

When: at each epoch end, every `checkpoint.every_steps` optimizer steps, at the last step, after each
evaluation that is a new best when `checkpoint.on_best` (off by default: RUN/model already holds the
best weights, and a full checkpoint per improvement costs time), and when SIGINT/SIGTERM arrives (saved
at the end of the current step; the run then stops with exit status 130/143). The newest `keep_last`
plus the one of the best evaluation (if there is one) are kept.

Exact resume (single process): the model, optimizer, schedule, grad scaler and Accelerate's
accumulation counter are restored; the data order is restored by resetting the sampler's generator to
its state at the start of the interrupted epoch and skipping the batches already consumed
(`accelerator.skip_first_batches`); the global python / numpy / torch RNG states (dropout) are put back
right after the first batch of the resumed iterator has been fetched, i.e. where the interrupted run
stood. metrics.jsonl is cut back to what it held when the checkpoint was saved, then appended to.

Test-only hook: with `TUNESMITH_TEST_SIGNAL_AFTER_STEP=STEP:NAME` in the environment (e.g. `11:KILL`,
`5:TERM`), the process sends itself that signal after optimizer step STEP (after any checkpoint due at
that step). The tests use it to kill a run at a chosen step without timing races.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import re
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from tunesmith.artifacts import RunDir, fsync_dir, os_reason, replace_dir
from tunesmith.errors import CheckpointError, TrainingInterrupted, shown
from tunesmith.train.loop import LoopState

FORMAT = "tunesmith-checkpoint/1"
FILES = ("model.safetensors", "state.safetensors", "state.json")
_STEP_DIR = re.compile(r"^step-(\d{8})$")
_CHUNK = 1 << 16
_TEST_HOOK = "TUNESMITH_TEST_SIGNAL_AFTER_STEP"
# recipe keys that may change between a run and its resumption
_NOT_FINGERPRINTED = ("resume", "overwrite", "checkpoint", "output", "tune")


# --- the directory of checkpoints ----------------------------------------------------------------------------


class Damaged(Exception):
    """A checkpoint directory that is incomplete or does not match its manifest (the message says how)."""


class CheckpointStore:
    """RUN/checkpoints: atomic saves, verified reads, pruning. Knows nothing about training."""

    def __init__(self, root: Path, echo: Callable[[str], None] = print):
        self.root = Path(root)
        self.echo = echo

    def steps(self) -> list[tuple[int, Path]]:
        """(step, directory) of every checkpoint directory, newest first (damaged ones included)."""
        if not self.root.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.root.iterdir() if (m := _STEP_DIR.match(p.name))]
        return sorted(found, reverse=True)

    def save(self, step: int, files: dict[str, bytes]) -> Path:
        """Write `files` as checkpoint `step`: temporary directory, fsync, manifest, rename. An OSError (disk
        full, permission denied) becomes a one-line CheckpointError; the older checkpoints are untouched."""
        target = self.root / f"step-{step:08d}"
        tmp: Path | None = None
        writing = "the checkpoint directory"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=self.root))
            manifest = {"format": FORMAT, "step": step, "files": {}}
            for name, data in files.items():
                writing = name
                _write_file(tmp / name, data)
                manifest["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            writing = "manifest.json"
            _write_file(tmp / "manifest.json", json.dumps(manifest, indent=1).encode())
            fsync_dir(tmp)
            writing = "the checkpoint directory"
            replace_dir(tmp, target)
            tmp = None
        except OSError as exc:
            previous = next((p for s, p in self.steps() if s != step and self.problem(p, quick=True) is None), None)
            kept = f"the previous checkpoint {previous} is intact" if previous else "there is no earlier checkpoint"
            raise CheckpointError(
                f"cannot save checkpoint {target} (writing {writing}): {os_reason(exc)}; {kept}. "
                f"Free space or fix permissions, then continue with --resume") from None
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    def read(self, path: Path) -> dict[str, bytes]:
        """The files of checkpoint `path`, each checked against the manifest; raises Damaged."""
        path = Path(path)
        if path.is_symlink() or not path.is_dir():
            raise Damaged("not a directory")
        manifest = self._manifest(path)
        out = {}
        for name, meta in manifest["files"].items():
            file = path / name
            try:
                if file.is_symlink() or not file.is_file():
                    raise Damaged(f"{name} is missing")
                data = file.read_bytes()
            except OSError as exc:
                raise Damaged(f"cannot read {name}: {os_reason(exc)}") from None
            if len(data) != meta.get("bytes"):
                raise Damaged(f"{name} has {len(data)} bytes, the manifest says {meta.get('bytes')}")
            if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
                raise Damaged(f"{name} does not match its sha256 checksum")
            out[name] = data
        return out

    def problem(self, path: Path, quick: bool = False) -> str | None:
        """Why checkpoint `path` cannot be used, or None. `quick`: manifest and sizes only, no checksums."""
        try:
            if quick:
                manifest = self._manifest(path)
                for name, meta in manifest["files"].items():
                    if not (path / name).is_file() or (path / name).stat().st_size != meta.get("bytes"):
                        return f"{name} is missing or has the wrong size"
            else:
                self.read(path)
        except Damaged as exc:
            return str(exc)
        except OSError as exc:
            return os_reason(exc)
        return None

    def newest_valid(self, set_aside: bool = True) -> tuple[Path, dict[str, bytes]] | None:
        """The newest checkpoint that verifies, with its files. Each damaged newer one is reported in one
        line and (`set_aside`) renamed `damaged-step-N`: kept for inspection, never used."""
        for step, path in self.steps():
            try:
                return path, self.read(path)
            except Damaged as exc:
                aside = self.root / f"damaged-{path.name}"
                if set_aside:
                    with contextlib.suppress(OSError):
                        if aside.exists():
                            shutil.rmtree(aside, ignore_errors=True)
                        os.replace(path, aside)
                self.echo(f"warning: checkpoint {path} is damaged ({exc}); moved to {aside.name}, "
                          f"trying the one before")
        return None

    def prune(self, keep_last: int, keep_steps: set[int] = frozenset()) -> None:
        """Remove all but the newest `keep_last` checkpoints and those at `keep_steps` (the best one)."""
        for index, (step, path) in enumerate(self.steps()):
            if index >= keep_last and step not in keep_steps:
                _remove(path)

    def remove_partials(self) -> None:
        """Temporary directories left by a save that was killed half-way."""
        if self.root.is_dir():
            for path in self.root.glob(".tmp-step-*"):
                _remove(path)

    def clear(self) -> None:
        if self.root.is_symlink():
            self.root.unlink()
        elif self.root.is_dir():
            shutil.rmtree(self.root)

    @staticmethod
    def _manifest(path: Path) -> dict:
        file = path / "manifest.json"
        if not file.is_file():
            raise Damaged("no manifest.json: the save did not finish")
        try:
            manifest = json.loads(file.read_bytes())
        except (ValueError, UnicodeDecodeError):
            raise Damaged("manifest.json is not valid JSON") from None
        files = manifest.get("files") if isinstance(manifest, dict) else None
        if not isinstance(files, dict) or manifest.get("format") != FORMAT:
            raise Damaged("manifest.json is not a tunesmith checkpoint manifest")
        for name in files:
            if name not in FILES:  # also keeps every read inside the checkpoint directory
                raise Damaged(f"manifest.json names an unexpected file {name!r}")
        missing = [name for name in FILES if name not in files]
        if missing:
            raise Damaged(f"manifest.json does not list {missing[0]}")
        return manifest


def _write_file(path: Path, data: bytes) -> None:
    """Write `data` to a new file and fsync it (in chunks, so a full disk fails part-way like a real one)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        for start in range(0, len(view), _CHUNK):
            _write_chunk(fd, view[start:start + _CHUNK])
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_chunk(fd: int, chunk: memoryview) -> None:
    while chunk:
        written = os.write(fd, chunk)
        chunk = chunk[written:]


def _remove(path: Path) -> None:
    """Remove a checkpoint directory; a symlink is unlinked, never followed."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


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


def model_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state_dict with each shared tensor (tied weights) kept once, under its first name, and without the
    frozen parameters: they never change, and resuming rebuilds the model from the same pretrained weights
    (a LoRA checkpoint holds the adapter, a few MB, not a copy of the whole model)."""
    kept, seen = {}, set()
    frozen = {name for name, param in model.named_parameters(remove_duplicate=False) if not param.requires_grad}
    for name, tensor in model.state_dict().items():
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


# --- the checkpointer: what the loop calls ----------------------------------------------------------------------


@dataclasses.dataclass
class _Resume:
    rng: dict                         # global RNG states when the checkpoint was saved
    epoch_rng: dict                   # ... and at the start of its epoch
    epoch_start: list[torch.Tensor]   # sampler generators at the start of the epoch
    now: list[torch.Tensor]           # ... and when the checkpoint was saved
    iteration: int | None             # the loader's pass counter (Accelerate's set_epoch) at the start of the epoch


class Checkpointer:
    """Saves and restores the training state of one run; the loop calls `batches` once per epoch and
    `after_step` after every optimizer step. Task-agnostic: it sees a model, an optimizer, a schedule, a
    loader, an EarlyStopper and a LoopState."""

    def __init__(self, run: RunDir, recipe, *, model, optimizer, schedule, accelerator, stopper, plan,
                 train_loader, train_data=None, echo: Callable[[str], None] = print):
        self.run, self.recipe, self.spec = run, recipe, recipe.checkpoint
        self.model, self.optimizer, self.schedule = model, optimizer, schedule
        self.accelerator, self.stopper, self.plan = accelerator, stopper, plan
        self.train_loader, self.train_data = train_loader, train_data
        self.echo = echo
        self.store = CheckpointStore(run.path / "checkpoints", echo=echo)
        self.last: Path | None = None          # the newest good checkpoint of this run
        self.last_step: int | None = None
        self._epoch_start: list[torch.Tensor] = []
        self._epoch_rng: dict | None = None
        self._epoch_iteration: int | None = None
        self._chosen: tuple[Path, dict, dict[str, torch.Tensor], dict[str, torch.Tensor]] | None = None
        self._resume: _Resume | None = None
        self._signal: int | None = None
        self._data_fingerprint: str | None = None
        self._hook = _parse_hook(os.environ.get(_TEST_HOOK))

    # ---- start: fresh or resumed ----------------------------------------------------------------------------
    def start(self, resume) -> bool:
        """Prepare the run directory. `resume` false: start over (old checkpoints removed); true: continue from
        the newest valid checkpoint (CheckpointError when there is none); "auto": continue if there is one.
        Resuming, the checkpoint is chosen and checked against the recipe and data here, metrics.jsonl is cut
        back to it, and `restore()` later loads it into the model, optimizer, ... Returns whether it resumes."""
        main = self.accelerator.is_main_process
        if main:
            self.store.remove_partials()
        if resume:
            found = self.store.newest_valid(set_aside=main)
            if found is not None:
                path, files = found
                try:
                    saved = json.loads(files["state.json"])
                    tensors = load_safetensors(files["state.safetensors"])
                    weights = load_safetensors(files["model.safetensors"])
                except Exception as exc:  # the checksums matched, so a foreign or future format
                    raise CheckpointError(f"{path}: cannot read the checkpoint ({type(exc).__name__}: {exc})") from None
                self._check_same_run(path, saved)
                self._chosen = (path, saved, tensors, weights)
                if main:
                    self._cut_metrics(saved["metrics_bytes"])
                return True
            if resume != "auto":
                raise CheckpointError(f"{self.store.root}: no valid checkpoint to resume from; "
                                      f"run without --resume to start over")
            self.echo(f"note: no checkpoint in {self.store.root}: starting from the beginning")
        if main:
            if self.store.steps():
                self.echo(f"note: {self.store.root} held checkpoints of an earlier run: removed, starting over "
                          f"(--resume would have continued it)")
            self.store.clear()
            self.run.create()
            with contextlib.suppress(FileNotFoundError):
                self.run.eval_path.unlink()  # results of an earlier run in this directory are stale now
        return False

    def restore(self) -> LoopState | None:
        """Load the checkpoint chosen by `start` into the model, optimizer, schedule, scaler, early stopper;
        return the loop state to continue from (None when not resuming)."""
        if self._chosen is None:
            return None
        path, saved, tensors, weights = self._chosen
        self._chosen = None
        tree = decode_tree(saved, tensors)
        load_model_tensors(self.accelerator.unwrap_model(self.model), weights, str(path))
        self.optimizer.load_state_dict(tree["optimizer"])
        self.schedule.load_state_dict(tree["scheduler"])
        if tree.get("scaler") is not None and getattr(self.accelerator, "scaler", None) is not None:
            self.accelerator.scaler.load_state_dict(tree["scaler"])
        self.accelerator.step = tree["accelerator_step"]
        self.stopper.load_state_dict(tree["stopper"])
        state = _loop_state(tree["loop"], saved["clock"])
        data = tree["data"]
        generators = sampler_generators(self.train_loader)
        if len(generators) != len(data["now"]):
            raise CheckpointError(f"{path}: the checkpoint holds {len(data['now'])} data-order generators, the "
                                  f"training loader has {len(generators)}")
        self._resume = _Resume(tree["rng"], data["epoch_rng"], data["epoch_start"], data["now"], data["iteration"])
        self.last, self.last_step = path, state.step
        self.echo(f"resuming from {path} (step {state.step} of {self.plan.total_steps}, epoch {state.epoch}"
                  f"{', batch ' + str(state.batches_in_epoch) if state.batches_in_epoch < len(self.train_loader) else ' done'})")
        return state

    def _check_same_run(self, path: Path, saved: dict) -> None:
        now = _fingerprint(self.recipe)
        key = _first_difference(saved.get("recipe", {}), now)
        if key is not None:
            was, is_ = _lookup(saved.get("recipe", {}), key), _lookup(now, key)
            raise CheckpointError(f"cannot resume from {path}: recipe key '{key}' is {shown(is_)} now but was {shown(was)} "
                                  f"when the checkpoint was saved; resume with the same recipe, or start over "
                                  f"without --resume")
        if saved.get("plan") != _plan(self.plan):
            raise CheckpointError(f"cannot resume from {path}: the step plan changed ({saved.get('plan')} then, "
                                  f"{_plan(self.plan)} now); the training data must have changed")
        if saved.get("data") is not None and saved.get("data_fingerprint") != self.data_fingerprint():
            raise CheckpointError(f"cannot resume from {path}: the training data differs from the data the run "
                                  f"started with (data.train {self.recipe.data.train}); resume with the same "
                                  f"data, or start over without --resume")

    def _cut_metrics(self, size: int) -> None:
        """metrics.jsonl back to what it held at the checkpoint: records logged after it are logged again."""
        self.run.create(keep_metrics=True)
        path = self.run.metrics_path
        current = path.stat().st_size if path.is_file() else 0
        if current < size:
            self.echo(f"warning: {path} is shorter than when the checkpoint was saved; appending to it as it is")
            return
        with open(path, "r+b") as handle:
            handle.truncate(size)

    def data_fingerprint(self) -> str | None:
        if self.train_data is None:
            return None
        own = getattr(self.train_data, "content_fingerprint", None)  # an Arrow dataset: its file's sha256
        if self._data_fingerprint is None and callable(own):
            self._data_fingerprint = f"{len(self.train_data)}:{own()}"
        if self._data_fingerprint is None:
            digest = hashlib.sha256()
            for index in range(len(self.train_data)):
                item = self.train_data[index]
                digest.update(json.dumps(item, sort_keys=True, default=_plain).encode())
            self._data_fingerprint = f"{len(self.train_data)}:{digest.hexdigest()}"
        return self._data_fingerprint

    # ---- the loop's hooks -------------------------------------------------------------------------------------
    def batches(self, loader, state: LoopState) -> Iterator:
        """This epoch's batches. Resuming inside an epoch: the same order without the batches already consumed,
        and the RNG states as they were at the checkpoint."""
        generators = sampler_generators(loader)
        resume, self._resume = self._resume, None
        if resume is not None and state.batches_in_epoch:
            # replay the start of the interrupted epoch: its RNG, generators and pass number, then skip
            set_rng_state(resume.epoch_rng)
            for generator, saved in zip(generators, resume.epoch_start):
                generator.set_state(saved)
            _set_iteration(loader, resume.iteration)
            self._epoch_start, self._epoch_rng = list(resume.epoch_start), resume.epoch_rng
            self._epoch_iteration = resume.iteration
            skipped = self.accelerator.skip_first_batches(loader, state.batches_in_epoch)
            return _then_restore(skipped, resume.rng, lambda: _set_iteration(loader, _next(resume.iteration)))
        if resume is not None:  # resumed at an epoch end: the next epoch starts from the saved states
            for generator, saved in zip(generators, resume.now):
                generator.set_state(saved)
            set_rng_state(resume.rng)
            _set_iteration(loader, _next(resume.iteration))
        self._epoch_start = [g.get_state() for g in generators]
        self._epoch_rng = rng_state()
        self._epoch_iteration = getattr(loader, "iteration", None)
        return iter(loader)

    def after_step(self, state: LoopState, before_save: Callable[[], None] = lambda: None) -> None:
        """After optimizer step `state.step` (logged and evaluated): save when due, then honour signals.
        `before_save` brings `state` up to date first (the loop's pending losses; raises on a NaN loss)."""
        due = (
            (self.spec.every_steps and state.step % self.spec.every_steps == 0)
            or state.batches_in_epoch >= len(self.train_loader)       # epoch end
            or (self.spec.on_best and _new_best(state))               # checkpoint.on_best
            or state.step >= self.plan.total_steps or state.stop_reason is not None  # the last one
        )
        if due:
            before_save()
            self.save(state)
        if self._hook and self._hook[0] == state.step:
            os.kill(os.getpid(), self._hook[1])
        if self._signal is not None:
            before_save()
            self.save(state)
            raise TrainingInterrupted(
                f"stopped by {signal.Signals(self._signal).name} at step {state.step} of {self.plan.total_steps}; "
                f"saved checkpoint {self.last}", exit_code=128 + self._signal, checkpoint=self.last)

    def save(self, state: LoopState) -> Path | None:
        """Save checkpoint `state.step` (once per step) and prune old ones."""
        if self.last_step == state.step:
            return self.last
        if self.accelerator.is_main_process:
            tensors: dict[str, torch.Tensor] = {}
            saved = {
                "format": FORMAT, "step": state.step, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "clock": time.perf_counter(),
                "loop": encode_tree(dataclasses.asdict(state), tensors, "loop"),
                "stopper": encode_tree(self.stopper.state_dict(), tensors, "stopper"),
                "optimizer": encode_tree(self.optimizer.state_dict(), tensors, "optimizer"),
                "scheduler": encode_tree(self.schedule.state_dict(), tensors, "scheduler"),
                "scaler": encode_tree(_scaler_state(self.accelerator), tensors, "scaler"),
                "accelerator_step": int(getattr(self.accelerator, "step", 0)),
                "rng": encode_tree(rng_state(), tensors, "rng"),
                "data": encode_tree({"epoch_start": self._epoch_start, "epoch_rng": self._epoch_rng,
                                     "iteration": self._epoch_iteration,
                                     "now": [g.get_state() for g in sampler_generators(self.train_loader)]},
                                    tensors, "data"),
                "metrics_bytes": self.run.metrics_path.stat().st_size if self.run.metrics_path.is_file() else 0,
                "recipe": _fingerprint(self.recipe),
                "plan": _plan(self.plan),
                "data_fingerprint": self.data_fingerprint(),
            }
            files = {
                "model.safetensors": save_safetensors(model_tensors(self.accelerator.unwrap_model(self.model)),
                                                      metadata={"format": "pt", "step": str(state.step)}),
                "state.safetensors": save_safetensors(tensors),
                "state.json": json.dumps(saved).encode(),
            }
            path = self.store.save(state.step, files)
            best = {self.stopper.best_step} if self.stopper.best_step is not None else set()
            self.store.prune(self.spec.keep_last, best)
            self.last = path
        self.last_step = state.step
        self.accelerator.wait_for_everyone()
        return self.last

    def last_good(self) -> str:
        """For messages: the newest checkpoint that can be resumed from."""
        if self.last is None:
            return "there is no checkpoint yet"
        return f"the last good checkpoint is {self.last} (continue from it with --resume)"

    def finish(self) -> None:
        """The run finished and wrote eval.json: checkpoints are no longer needed unless asked to keep them."""
        if self.accelerator.is_main_process and not self.spec.keep_on_finish:
            self.store.clear()

    @contextlib.contextmanager
    def signals(self):
        """While training: SIGINT/SIGTERM ask for a checkpoint at the end of the current step and a clean stop;
        a second one stops at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {}

        def handler(signum, frame):
            if self._signal is not None:
                raise TrainingInterrupted(
                    f"stopped at once by a second {signal.Signals(signum).name}; {self.last_good()}",
                    exit_code=128 + signum, checkpoint=self.last)
            self._signal = signum

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)



def _new_best(state: LoopState) -> bool:
    """Whether the evaluation at this step (if any) was a new best."""
    return bool(state.history and state.history[-1]["step"] == state.step and state.history[-1].get("is_best"))


def _then_restore(loader, rng: dict, at_end: Callable[[], None]) -> Iterator:
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


def _set_iteration(loader, value: int | None) -> None:
    """Accelerate's pass counter, which it hands to `sampler.set_epoch` (epoch-seeded samplers)."""
    if value is not None and hasattr(loader, "iteration"):
        loader.iteration = value


def _next(iteration: int | None) -> int | None:
    return None if iteration is None else iteration + 1


def _loop_state(saved: dict, clock: float) -> LoopState:
    names = {f.name for f in dataclasses.fields(LoopState)}
    state = LoopState(**{k: v for k, v in saved.items() if k in names})
    if isinstance(saved.get("started"), (int, float)):  # a time.perf_counter() of the interrupted process
        state.started = time.perf_counter() - (clock - saved["started"])
    return state


def _scaler_state(accelerator) -> dict | None:
    scaler = getattr(accelerator, "scaler", None)
    return scaler.state_dict() if scaler is not None else None


def _fingerprint(recipe) -> dict:
    dumped = recipe.model_dump(mode="json")
    return {k: v for k, v in dumped.items() if k not in _NOT_FINGERPRINTED}


def _plan(plan) -> dict:
    return {k: getattr(plan, k) for k in ("steps_per_epoch", "total_steps")}


def _first_difference(a: Any, b: Any, prefix: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            found = _first_difference(a.get(key, _MISSING), b.get(key, _MISSING), f"{prefix}{key}.")
            if found is not None:
                return found
        return None
    return None if a == b else prefix.rstrip(".")


_MISSING = "(not set)"


def _lookup(tree: dict, key: str) -> Any:
    node: Any = tree
    for part in key.split("."):
        node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
    return node


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else str(value)


def _parse_hook(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    step, _, name = text.partition(":")
    return int(step), int(getattr(signal, f"SIG{name.upper()}"))


def finished_result(run: RunDir) -> dict | None:
    """The results of a run that already finished (eval.json written, no checkpoint left), else None."""
    if not run.eval_path.is_file() or CheckpointStore(run.path / "checkpoints").steps():
        return None
    try:
        return json.loads(run.eval_path.read_text())
    except (OSError, ValueError):
        return None
