"""Which directory a training run may write, and how it writes it without losing anyone's files.

`tunesmith train` writes its run directory RUN (the recipe's `output`, or --output) only when RUN is

    new or empty                         a fresh run
    an unfinished tunesmith run          continued with --resume / resume: true|auto, else started over
    a finished tunesmith run             only with --overwrite (recipe: overwrite: true), see below; with
                                         --resume its results are printed again

and refuses anything else in one line (exit 2) before reading any data: a directory holding other files is
never written, whatever the flags (--overwrite replaces tunesmith runs only), nor a RUN whose recipe.yaml is
the recipe being read (the resolved recipe would replace it).

A tunesmith run is recognised by RUN/.tunesmith-run.json, written first by every run (format, version,
creation time); a run written before that file existed is recognised by recipe.yaml and metrics.jsonl.
Finished means RUN/eval.json exists.

Inside RUN tunesmith owns ARTIFACTS (recipe.yaml, metrics.jsonl, eval.json, model/, adapter/, checkpoints/,
inspect.json, predictions_<split>.csv (regression), report.html, tensorboard/, baselines/scratch/) and its own
hidden files (the marker, the lock, temporary names); it never deletes or rewrites anything else found there.

Overwriting a finished run: the new run trains in RUN/.overwrite (a run directory of its own, inside RUN so
that the final renames stay on one file system) while the finished run stays as it was and usable. Only when
the new run has finished are its artifacts renamed into RUN one by one, eval.json last (removed first), and
the old run's artifacts the new one did not write (an adapter/, a report.html ...) removed. A new run that
fails leaves the finished run byte-identical: RUN/.overwrite is removed, or kept when it holds a checkpoint,
so that `--overwrite --resume` continues it (the next --overwrite without --resume starts it over).

While it runs, RUN is locked (train/run_lock.py). In a multi-process run (train/distributed.py) only the main
process (rank 0) checks, creates, locks, writes and moves RUN; the other ranks get a SharedRunDir view of the same
directory, whose writers write nothing, and read from it only (checkpoints, the best model). A nested run under a run being overwritten (the
scratch baseline, RUN/baselines/scratch) is written inside RUN/.overwrite as well.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterator

from tunesmith import __version__
from tunesmith.artifacts import (RUN_ARTIFACTS, RUN_MARKER, RunDir, SharedRunDir, fsync_dir, is_run_dir, os_reason,
                                  replace_dir, write_text_atomic)
from tunesmith.errors import RunError
from tunesmith.train.distributed import main_process
from tunesmith.train.run_lock import LOCK_NAME, RunLock

MARKER = RUN_MARKER
STAGING = ".overwrite"
ARTIFACTS = RUN_ARTIFACTS  # in the order a staged run moves them in: eval.json last
_OWN_HIDDEN = (MARKER, LOCK_NAME, STAGING)  # not counted when deciding whether RUN is empty
_SHOWN = 3
_staged: dict[Path, Path] = {}  # RUN being overwritten -> its staging directory (for nested runs)


@dataclasses.dataclass
class OutputState:
    path: Path
    is_dir: bool
    entries: list[str]       # what RUN holds, tunesmith's hidden files aside
    marker: bool             # RUN/.tunesmith-run.json
    is_run: bool             # the marker, or recipe.yaml + metrics.jsonl (a run from before it): artifacts.is_run_dir
    finished: bool           # RUN/eval.json


def inspect_output(path: Path) -> OutputState:
    path = Path(path)
    is_dir = path.is_dir()
    try:
        entries = sorted(name for name in os.listdir(path) if name not in _OWN_HIDDEN) if is_dir else []
    except OSError as exc:
        raise RunError(f"{path}: cannot read the run directory ({os_reason(exc)})") from None
    return OutputState(
        path=path, is_dir=is_dir, entries=entries,
        marker=(path / MARKER).is_file(), is_run=is_run_dir(path),
        finished=(path / "eval.json").is_file())


def plan_output(recipe, state: OutputState) -> str:
    """How the run writes RUN: "fresh", "continue" (in place) or "staged" (overwriting a finished run);
    RunError for a directory it must not write."""
    if not state.is_dir or not state.entries:
        return "fresh"  # (a file in the way: creating the directory reports it)
    if not state.is_run:
        shown = ", ".join(state.entries[:_SHOWN]) + (", ..." if len(state.entries) > _SHOWN else "")
        extra = "; --overwrite replaces tunesmith runs only, never other files" if recipe.overwrite else ""
        raise RunError(f"{state.path} is not empty and is not a tunesmith run directory (it holds {shown}): "
                       f"choose another --output, a new or empty directory{extra}")
    if not state.finished:
        return "continue"
    if recipe.overwrite and (not recipe.resume or has_checkpoint(state.path / STAGING)):
        return "staged"  # resuming: continues an --overwrite run that was interrupted
    if recipe.resume:
        return "continue"  # finetune prints its results (or resumes from a checkpoint kept on finish)
    raise RunError(f"{state.path} already holds a finished run (eval.json): choose another --output, or add "
                   f"--overwrite to replace it (the finished run stays as it is until the new one finishes)")


def check_output(recipe, recipe_path: str | Path | None = None) -> None:
    """Refuse, before any data or model is read, an output the run must not write (see the module doc)."""
    output = Path(recipe.output)
    if recipe_path is not None:
        resolved = output / "recipe.yaml"
        with contextlib.suppress(OSError):
            if resolved.exists() and os.path.samefile(recipe_path, resolved):
                raise RunError(f"{resolved} is the recipe being read: the run would replace it with the resolved "
                               f"recipe; choose another --output (or copy the recipe out of {output})")
    plan_output(recipe, inspect_output(_redirected(output)))


@contextlib.contextmanager
def claim_run_dir(recipe, *, echo: Callable[[str], None] = print) -> Iterator[RunDir]:
    """Check, create and lock the recipe's output for one run; yield the RunDir to write (RUN itself, or
    RUN/.overwrite when overwriting a finished run, moved in when the body returns). Released on every exit."""
    target = _redirected(Path(recipe.output))
    if not main_process():  # the other ranks of a multi-process run: the main one claims, locks, writes and moves
        mode = plan_output(recipe, inspect_output(target))
        yield SharedRunDir(target / STAGING if mode == "staged" else target)
        return
    plan_output(recipe, inspect_output(target))  # refuse before creating or locking anything
    created = _make_dir(target)
    wrote_marker = False
    try:
        with RunLock(target, echo=echo):
            mode = plan_output(recipe, inspect_output(target))  # again, now that no other run can change it
            if not (target / MARKER).is_file():
                write_text_atomic(target / MARKER, json.dumps(
                    {"format": "tunesmith-run/1", "tunesmith": __version__,
                     "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n")
                wrote_marker = True
            if mode == "staged":
                with _staged_run(recipe, target, echo) as staging:
                    yield staging
            else:
                yield RunDir(target)
    finally:
        _remove_if_unused(target, created, wrote_marker)


@contextlib.contextmanager
def _staged_run(recipe, target: Path, echo: Callable[[str], None]) -> Iterator[RunDir]:
    staging = target / STAGING
    if not recipe.resume:
        _remove(staging)  # an earlier --overwrite that did not finish: started over
    try:
        staging.mkdir(exist_ok=True)
    except OSError as exc:
        raise RunError(f"{staging}: cannot create the run directory ({os_reason(exc)})") from None
    echo(f"note: {target} holds a finished run: the new run trains in {staging} and replaces the finished "
         f"run's files only once it has finished")
    _staged[_key(target)] = staging
    try:
        yield RunDir(staging)
    except BaseException:
        if not has_checkpoint(staging):
            _remove(staging)  # nothing to resume: as if the run had never started
        raise
    else:
        commit_staged(staging, target, echo)
    finally:
        _staged.pop(_key(target), None)


def commit_staged(staging: Path, target: Path, echo: Callable[[str], None] = print) -> None:
    """Move a finished staged run's artifacts into `target` (eval.json removed first, moved in last: RUN never
    looks finished with a mix of two runs' files); remove those of the old run the new one did not write."""
    try:
        (target / "eval.json").unlink(missing_ok=True)
        for name in ARTIFACTS:
            new, old = staging / name, target / name
            if new.is_dir():
                old.parent.mkdir(parents=True, exist_ok=True)
                replace_dir(new, old)
            elif new.exists():
                os.replace(new, old)
            elif old.exists() or old.is_symlink():
                _remove(old)
        with contextlib.suppress(OSError):
            (target / "baselines").rmdir()  # only when empty: it held nothing but the old scratch run
        fsync_dir(target)
    except OSError as exc:
        raise RunError(f"cannot move the new run from {staging} into {target} ({os_reason(exc)}); the new run's "
                       f"remaining files are in {staging}") from None
    _remove(staging)
    if (target / "exports").is_dir():
        echo(f"note: {target / 'exports'} holds exports of the replaced model: export again")


def has_checkpoint(run_path: Path) -> bool:
    return any((run_path / "checkpoints").glob("step-*"))


def _redirected(output: Path) -> Path:
    """`output` itself, or its place inside the staging directory of a run being overwritten above it."""
    key = _key(output)
    for run, staging in _staged.items():
        if key != run and key.is_relative_to(run):
            return staging / key.relative_to(run)
    return output


def _key(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _make_dir(path: Path) -> bool:
    """Create the run directory; whether it was created (rather than already there)."""
    existed = path.is_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{path}: cannot create the run directory ({os_reason(exc)})") from None
    return not existed


def _remove_if_unused(path: Path, created: bool, wrote_marker: bool) -> None:
    """A run that failed before writing anything leaves the directory as it found it."""
    with contextlib.suppress(OSError):
        if wrote_marker and os.listdir(path) == [MARKER]:
            (path / MARKER).unlink()
            if created:
                path.rmdir()


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)

