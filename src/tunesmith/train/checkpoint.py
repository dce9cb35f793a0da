"""Checkpoints: everything needed to continue a run exactly where it stopped.

    RUN/checkpoints/step-00000042/
        model.safetensors   the model's state_dict (weights tied to another are stored once); when the method
                            freezes weights (LoRA, BitFit, freeze), only the trainable ones and the buffers:
                            the frozen ones are the pretrained weights, loaded again on resume
        state.safetensors   every other tensor: optimizer moments, torch / CUDA / data-order RNG states
        state.json          the rest: loop state and evaluation history, early stopping, scheduler, optimizer
                            hyper-parameters, python and numpy RNG states, the position inside the epoch,
                            the number of processes and every rank's RNG and data-order states, and
                            fingerprints of the recipe and of the training data
        manifest.json       written last: size and sha256 of each file above

No pickle anywhere: tensors go to safetensors and everything else to JSON, so reading a checkpoint can
never run code. The directory is written atomically and verified on reading (train/checkpoint_store.py): a
damaged checkpoint is reported and the next older one is used. What goes in: train/checkpoint_state.py.

When: at each epoch end, every `checkpoint.every_steps` optimizer steps, at the last step, after each
evaluation that is a new best when `checkpoint.on_best` (off by default: RUN/model already holds the
best weights, and a full checkpoint per improvement costs time), and when SIGINT/SIGTERM arrives (saved
at the end of the current step; the run then stops with exit status 130/143). The newest `keep_last`
plus the one of the best evaluation (if there is one) are kept.

Exact resume: the model, optimizer, schedule, grad scaler and Accelerate's accumulation counter are
restored; the data order is restored by resetting the sampler's generator to its state at the start of the
interrupted epoch and skipping the batches already consumed (`accelerator.skip_first_batches`); the global
python / numpy / torch RNG states (dropout) are put back right after the first batch of the resumed iterator
has been fetched, i.e. where the interrupted run stood. metrics.jsonl is cut back to what it held when the
checkpoint was saved, then appended to.

Several processes (train/distributed.py): every rank's RNG and data-order states are gathered into the
checkpoint the main process writes (weights and optimizer states are the same on every rank under DDP; under
FSDP the full ones are gathered, train/sharding.py), and each rank restores its own. DeepSpeed runs write no
checkpoint (their optimizer state is partitioned in DeepSpeed's own format): resuming one is refused. The main process chooses the checkpoint to resume from and the others read that
one. A run resumes with the number of processes it was saved with (another number is refused: each rank's
share of the data and its random states depend on it). A signal seen by any rank stops every rank after the
same step (`agreed_signal`), so they save one checkpoint together.

Test-only hook: with `TUNESMITH_TEST_SIGNAL_AFTER_STEP=STEP:NAME` in the environment (e.g. `11:KILL`,
`5:TERM`), the process sends itself that signal after optimizer step STEP (after any checkpoint due at
that step). `STEP:NAME:launcher` makes rank 0 send it to the launcher instead ($TUNESMITH_LAUNCHER_PID, set by
`tunesmith train --processes`, else the parent process) and wait for it to arrive. The tests use it to stop a
run at a chosen step without timing races.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import torch
from safetensors.torch import load as load_safetensors

from tunesmith.artifacts import RunDir
from tunesmith.errors import CheckpointError, TrainingInterrupted, shown
from tunesmith.train.checkpoint_state import (Resume, dataset_fingerprint, decode_tree, encode_tree, first_difference,
                                              loop_state_from, lookup, next_iteration, own_part, rank_state,
                                              recipe_fingerprint,
                                              rng_state, sampler_generators, set_iteration, set_rng_state,
                                              then_restore)
from tunesmith.train.checkpoint_store import FORMAT, CheckpointStore, Damaged
from tunesmith.train.safetensors_parts import safetensors_parts
from tunesmith.train.distributed import agreed_signal, gather_from_ranks, share_from_main
from tunesmith.train.loop import LoopState
from tunesmith.train.sharding import (DEEPSPEED, checkpoint_optimizer, checkpoint_weights, engine_of,
                                      restore_checkpoint)

_TEST_HOOK = "TUNESMITH_TEST_SIGNAL_AFTER_STEP"
_LAUNCHER_PID = "TUNESMITH_LAUNCHER_PID"
_REPEAT_WINDOW_S = 2.0  # under a launcher, the same signal again this soon is the launcher passing it on


# --- the checkpointer: what the loop calls ----------------------------------------------------------------------


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
        self._resume: Resume | None = None
        self._signal: int | None = None
        self._data_fingerprint: str | None = None
        self._hook = _parse_hook(os.environ.get(_TEST_HOOK))
        self.engine = engine_of(accelerator) or "DDP"  # FSDP / DeepSpeed / DDP (one process included)
        self.writes = self.engine != DEEPSPEED  # DeepSpeed: no checkpoint (train/sharding.py); resume is refused

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
            found = self._choose()
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
        self.accelerator.wait_for_everyone()  # the other ranks go on once RUN is ready
        return False

    def _choose(self) -> tuple[Path, dict[str, bytes]] | None:
        """The checkpoint to resume from, with its files: the main process picks the newest valid one (setting
        damaged ones aside); the other ranks read the one it picked."""
        found = self.store.newest_valid(set_aside=True) if self.accelerator.is_main_process else None
        chosen = share_from_main(self.accelerator, str(found[0]) if found else None)
        if found is not None or chosen is None:
            return found
        try:
            return Path(chosen), self.store.read(Path(chosen))
        except Damaged as exc:
            raise CheckpointError(f"{chosen}: rank {self.accelerator.process_index} cannot read the checkpoint the "
                                  f"main process resumes from ({exc}); every process must see the same run "
                                  f"directory (a file system shared by all machines)") from None

    def restore(self) -> LoopState | None:
        """Load the checkpoint chosen by `start` into the model, optimizer, schedule, scaler, early stopper;
        return the loop state to continue from (None when not resuming)."""
        if self._chosen is None:
            return None
        path, saved, tensors, weights = self._chosen
        self._chosen = None
        tree = decode_tree(saved, tensors)
        restore_checkpoint(self.accelerator, self.model, self.optimizer, weights, tree["optimizer"], str(path))
        self.schedule.load_state_dict(tree["scheduler"])
        if tree.get("scaler") is not None and getattr(self.accelerator, "scaler", None) is not None:
            self.accelerator.scaler.load_state_dict(tree["scaler"])
        self.accelerator.step = tree["accelerator_step"]
        self.stopper.load_state_dict(tree["stopper"])
        state = loop_state_from(tree["loop"], saved["clock"])
        own = own_part(tree, self.accelerator.process_index)  # this rank's RNG and data order
        data = own["data"]
        generators = sampler_generators(self.train_loader)
        if len(generators) != len(data["now"]):
            raise CheckpointError(f"{path}: the checkpoint holds {len(data['now'])} data-order generators, the "
                                  f"training loader has {len(generators)}")
        self._resume = Resume(own["rng"], data["epoch_rng"], data["epoch_start"], data["now"], data["iteration"])
        self.last, self.last_step = path, state.step
        self.echo(f"resuming from {path} (step {state.step} of {self.plan.total_steps}, epoch {state.epoch}"
                  f"{', batch ' + str(state.batches_in_epoch) if state.batches_in_epoch < len(self.train_loader) else ' done'})")
        return state

    def _check_same_run(self, path: Path, saved: dict) -> None:
        if saved.get("engine", "DDP") != self.engine:
            raise CheckpointError(f"cannot resume from {path}: it was saved by a {saved.get('engine', 'DDP')} run, "
                                  f"this run uses {self.engine}; resume with the Accelerate config it was started "
                                  f"with, or start over without --resume")
        was, now_processes = saved.get("processes", 1), self.accelerator.num_processes
        if was != now_processes:
            again = f"--processes {was}" if was > 1 else "one process (no --processes)"
            raise CheckpointError(
                f"cannot resume from {path}: it was saved by a run of {was} process(es), this run has "
                f"{now_processes}; resume with {again}: each process's share of the data and its random states "
                f"depend on the number of processes, so another number would not continue the same run")
        now = recipe_fingerprint(self.recipe)
        key = first_difference(saved.get("recipe", {}), now)
        if key is not None:
            was, is_ = lookup(saved.get("recipe", {}), key), lookup(now, key)
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
        if self.train_data is not None and self._data_fingerprint is None:
            self._data_fingerprint = dataset_fingerprint(self.train_data)
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
            set_iteration(loader, resume.iteration)
            self._epoch_start, self._epoch_rng = list(resume.epoch_start), resume.epoch_rng
            self._epoch_iteration = resume.iteration
            skipped = self.accelerator.skip_first_batches(loader, state.batches_in_epoch)
            return then_restore(skipped, resume.rng, lambda: set_iteration(loader, next_iteration(resume.iteration)))
        if resume is not None:  # resumed at an epoch end: the next epoch starts from the saved states
            for generator, saved in zip(generators, resume.now):
                generator.set_state(saved)
            set_rng_state(resume.rng)
            set_iteration(loader, next_iteration(resume.iteration))
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
            self._send_test_signal()
        self._signal = agreed_signal(self.accelerator, self._signal)  # every rank stops after the same step
        if self._signal is not None:
            before_save()
            self.save(state)
            saved = (f"saved checkpoint {self.last}" if self.writes else
                     f"no checkpoint under {self.engine}: the run cannot be resumed ({self.run.model_dir} holds the "
                     f"best model so far)")
            raise TrainingInterrupted(
                f"stopped by {signal.Signals(self._signal).name} at step {state.step} of {self.plan.total_steps}; "
                f"{saved}", exit_code=128 + self._signal, checkpoint=self.last, resumable=self.writes)

    def save(self, state: LoopState) -> Path | None:
        """Save checkpoint `state.step` (once per step) and prune old ones."""
        if self.last_step == state.step:
            return self.last
        if not self.writes:  # DeepSpeed (module doc)
            self.last_step = state.step
            return None
        weights = checkpoint_weights(self.accelerator, self.model)  # every process: FSDP gathers
        optimizer = checkpoint_optimizer(self.accelerator, self.model, self.optimizer)
        ranks = gather_from_ranks(self.accelerator, rank_state(self.train_loader, self._epoch_start, self._epoch_rng,
                                                               self._epoch_iteration))
        if self.accelerator.is_main_process:
            tensors: dict[str, torch.Tensor] = {}
            saved = {
                "format": FORMAT, "step": state.step, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "clock": time.perf_counter(),
                "loop": encode_tree(dataclasses.asdict(state), tensors, "loop"),
                "stopper": encode_tree(self.stopper.state_dict(), tensors, "stopper"),
                "optimizer": encode_tree(optimizer, tensors, "optimizer"),
                "scheduler": encode_tree(self.schedule.state_dict(), tensors, "scheduler"),
                "scaler": encode_tree(_scaler_state(self.accelerator), tensors, "scaler"),
                "accelerator_step": int(getattr(self.accelerator, "step", 0)),
                "processes": self.accelerator.num_processes,
                "engine": self.engine,
                "rng": encode_tree(ranks[0]["rng"], tensors, "rng"),  # rank 0's (the only one of a single process)
                "data": encode_tree(ranks[0]["data"], tensors, "data"),
                "ranks": encode_tree(ranks[1:], tensors, "ranks"),  # every other rank's {"rng", "data"}
                "metrics_bytes": self.run.metrics_path.stat().st_size if self.run.metrics_path.is_file() else 0,
                "recipe": recipe_fingerprint(self.recipe),
                "plan": _plan(self.plan),
                "data_fingerprint": self.data_fingerprint(),
            }
            files = {
                "model.safetensors": safetensors_parts(weights, metadata={"format": "pt", "step": str(state.step)}),
                "state.safetensors": safetensors_parts(tensors),
                "state.json": json.dumps(saved).encode(),
            }
            path = self.store.save(state.step, files)
            best = {self.stopper.best_step} if self.stopper.best_step is not None else set()
            self.store.prune(self.spec.keep_last, best)
            self.last = path
        self.last_step = state.step
        self.accelerator.wait_for_everyone()
        return self.last

    def _send_test_signal(self) -> None:
        """The test hook (module doc): the signal to this process, or from rank 0 to the launcher, then wait for
        the launcher to pass it back (SIGKILL: to end this process through die_with_parent)."""
        step, signum, target = self._hook
        if target != "launcher":
            os.kill(os.getpid(), signum)
            return
        if not self.accelerator.is_main_process:
            return
        os.kill(int(os.environ.get(_LAUNCHER_PID) or os.getppid()), signum)
        deadline = time.monotonic() + 60
        while self._signal is None and time.monotonic() < deadline:
            time.sleep(0.02)

    def last_good(self) -> str:
        """For messages: the newest checkpoint that can be resumed from."""
        if not self.writes:
            return f"no checkpoint is written under {self.engine}"
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
        first_at = [0.0]
        passed_on = self.accelerator.num_processes > 1  # Ctrl-C reaches a rank from the terminal and the launcher

        def handler(signum, frame):
            if self._signal is not None and passed_on and time.monotonic() - first_at[0] < _REPEAT_WINDOW_S:
                return
            if self._signal is not None:
                raise TrainingInterrupted(
                    f"stopped at once by a second {signal.Signals(signum).name}; {self.last_good()}",
                    exit_code=128 + signum, checkpoint=self.last, resumable=self.writes)
            self._signal, first_at[0] = signum, time.monotonic()

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


def _scaler_state(accelerator) -> dict | None:
    scaler = getattr(accelerator, "scaler", None)
    return scaler.state_dict() if scaler is not None else None


def _plan(plan) -> dict:
    return {k: getattr(plan, k) for k in ("steps_per_epoch", "total_steps")}


def _parse_hook(text: str | None) -> tuple[int, int, str] | None:
    """TUNESMITH_TEST_SIGNAL_AFTER_STEP=STEP:NAME[:launcher] -> (step, signal number, target)."""
    if not text:
        return None
    step, name, target = (text.split(":") + [""])[:3]
    return int(step), int(getattr(signal, f"SIG{name.upper()}")), target
