"""The run directory: everything a finished run leaves behind.

    RUN/recipe.yaml      the resolved recipe (defaults filled in, overrides applied)
    RUN/metrics.jsonl    one JSON object per logged training step and per evaluation
    RUN/eval.json        final validation/test metrics, the best step and why training stopped
    RUN/model/           the best model: safetensors + config (with id2label) + tokenizer

The model directory is replaced atomically: written under a temporary name, then renamed, so a
crash while saving never leaves a half-written model where a good one was.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from safetensors import SafetensorError

from tunesmith.errors import RunError


RUN_MARKER = ".tunesmith-run.json"  # written first into every run directory (train/run_claim.py)
# everything `train` writes into RUN (train/run_claim.py moves them in in this order: eval.json last)
RUN_ARTIFACTS = ("model", "adapter", "checkpoints", "recipe.yaml", "metrics.jsonl", "inspect.json",
                 "predictions_validation.csv", "predictions_test.csv", "report.html", "tensorboard", "baselines/scratch",
                 "eval.json")


def is_run_dir(path: Path) -> bool:
    """A tunesmith run directory: the marker, or recipe.yaml + metrics.jsonl (runs from before the marker)."""
    path = Path(path)
    return (path / RUN_MARKER).is_file() or ((path / "recipe.yaml").is_file() and (path / "metrics.jsonl").is_file())


def run_owning(path: Path) -> Path | None:
    """The run directory one of whose own artifacts `path` is (RUN/eval.json, RUN/model/config.json, ...), else None."""
    path = Path(os.path.abspath(path))
    for parent in list(path.parents)[:3]:
        if is_run_dir(parent):
            inside = path.relative_to(parent)
            if any(inside == Path(a) or Path(a) in inside.parents for a in RUN_ARTIFACTS):
                return parent
    return None


def cache_dir() -> Path:
    """tunesmith's cache (converted models, tokenized splits): $TUNESMITH_CACHE or ~/.cache/tunesmith."""
    return Path(os.environ.get("TUNESMITH_CACHE") or Path.home() / ".cache" / "tunesmith").expanduser().absolute()


class RunDir:
    read_only = False  # SharedRunDir (below): the view of RUN the non-main processes of a multi-process run hold

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def recipe_path(self) -> Path:
        return self.path / "recipe.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def eval_path(self) -> Path:
        return self.path / "eval.json"

    def create(self, *, keep_metrics: bool = False) -> "RunDir":
        """Make the directory; metrics.jsonl starts empty unless `keep_metrics` (a resumed run appends)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            if not keep_metrics or not self.metrics_path.exists():
                self.metrics_path.write_text("")
        except OSError as exc:
            raise RunError(f"{self.path}: cannot create the run directory ({os_reason(exc)})") from None
        return self

    def write_recipe(self, recipe, header: str | None = None) -> None:
        """RUN/recipe.yaml; `header` becomes a comment line above it (e.g. where train.lr comes from)."""
        write_text_atomic(self.recipe_path, (f"# {header}\n" if header else "") + recipe.to_yaml())

    def log(self, record: dict) -> None:
        try:
            with self.metrics_path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(_finite(record)) + "\n")
        except OSError as exc:
            raise RunError(f"cannot write {self.metrics_path} ({os_reason(exc)})") from None

    def write_eval(self, result: dict) -> None:
        write_text_atomic(self.eval_path, json.dumps(_finite(result), indent=2) + "\n")

    def save_model(self, model, tokenizer, state_dict=None) -> None:
        """Write model + tokenizer to a temporary directory, then swap it in for RUN/model. `state_dict`: the
        model's full weights, gathered, when the model itself holds shards (FSDP, train/sharding.py)."""
        staging = None
        try:
            staging = Path(tempfile.mkdtemp(prefix=".model-", dir=self.path))
            model.save_pretrained(staging, safe_serialization=True, state_dict=state_dict)
            tokenizer.save_pretrained(staging)
            replace_dir(staging, self.model_dir)
        except BaseException as exc:
            failure = save_failure(exc, self.model_dir)
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            if failure is not None:
                raise failure from None
            raise

    def require_model(self) -> Path:
        if not self.path.is_dir():
            raise RunError(f"{self.path}: run directory does not exist")
        if not (self.model_dir / "config.json").is_file():
            raise RunError(f"{self.path}: no trained model in {self.model_dir} (did training finish?)")
        return self.model_dir

    def read_metrics(self) -> list[dict]:
        if not self.metrics_path.is_file():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]


class SharedRunDir(RunDir):
    """RUN as the other processes of a multi-process run hold it: read like any RunDir; its writers write
    nothing, since one process (the main one, train/run_claim.py) writes RUN and the others must never race it."""

    read_only = True

    def create(self, *, keep_metrics: bool = False) -> "RunDir":
        return self

    def write_recipe(self, recipe, header: str | None = None) -> None:
        pass

    def log(self, record: dict) -> None:
        pass

    def write_eval(self, result: dict) -> None:
        pass

    def save_model(self, model, tokenizer, state_dict=None) -> None:
        pass


def replace_dir(new: Path, target: Path) -> None:
    """Put `new` at `target`; the old `target` (if any) is removed only after the swap."""
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` writes a temporary file beside `path`; it is fsync'ed, then renamed over `path`. Readers
    see the old file or the new one, never half of one; a failure leaves the old file as it was."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise RunError(f"cannot write {path} ({os_reason(exc)})") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def os_reason(exc: OSError) -> str:
    """'No space left on device (ENOSPC)': the system's words and the errno name."""
    code = errno.errorcode.get(exc.errno or -1)
    text = exc.strerror or str(exc) or type(exc).__name__
    return f"{text} ({code})" if code else text


def save_failure(exc: BaseException, target: Path) -> RunError | None:
    """A failed save of a model into `target` as one line naming the file and the errno, or None when `exc` is
    not an I/O failure. safetensors reports I/O failures as SafetensorError ('... No space left on device
    (os error 28)'), not OSError; a failure of the model's own code is a bug and raised as it is."""
    if isinstance(exc, OSError):
        reason, file = os_reason(exc), Path(exc.filename).name if exc.filename else None
    elif isinstance(exc, SafetensorError):  # it writes a temporary file, gone by now: no name worth showing
        found = re.search(r"\(os error (\d+)\)", str(exc))
        code = int(found.group(1)) if found else None
        reason = os_reason(OSError(code, os.strerror(code))) if code else " ".join(str(exc).split())
        file = "the weights (.safetensors)"
    else:
        return None
    written = f"writing {file}: " if file else ""
    kept = "the model saved there before is intact" if target.exists() else "no model had been saved there yet"
    return RunError(f"cannot save the model to {target} ({written}{reason}); {kept}")


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _finite(value):
    """JSON has no NaN/Infinity: write them as null rather than produce invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
