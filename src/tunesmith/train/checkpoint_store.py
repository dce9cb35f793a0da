"""RUN/checkpoints: the directory of checkpoints, each written atomically and verified on reading.

    RUN/checkpoints/step-00000042/{model.safetensors, state.safetensors, state.json, manifest.json}

A checkpoint is written into a temporary directory, each file fsync'ed, then renamed into place; manifest.json
(written last) holds the size and sha256 of each file, so a directory without a manifest, or whose files do not
match it, is reported as damaged. Knows nothing about training: train/checkpoint.py decides what goes in.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from tunesmith.artifacts import fsync_dir, os_reason, replace_dir
from tunesmith.errors import CheckpointError

FORMAT = "tunesmith-checkpoint/1"
FILES = ("model.safetensors", "state.safetensors", "state.json")
_STEP_DIR = re.compile(r"^step-(\d{8})$")
_CHUNK = 1 << 16


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

    def save(self, step: int, files: dict[str, bytes | list]) -> Path:
        """Write `files` as checkpoint `step`: temporary directory, fsync, manifest, rename. A file is bytes or a
        list of buffers written one after the other (train/safetensors_parts.py: no copy of the tensors). An
        OSError (disk full, permission denied) becomes a one-line CheckpointError; the older checkpoints are
        untouched."""
        target = self.root / f"step-{step:08d}"
        tmp: Path | None = None
        writing = "the checkpoint directory"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=self.root))
            manifest = {"format": FORMAT, "step": step, "files": {}}
            for name, data in files.items():
                writing = name
                size, digest = _write_file(tmp / name, data)
                manifest["files"][name] = {"bytes": size, "sha256": digest}
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


def _write_file(path: Path, data: bytes | list) -> tuple[int, str]:
    """Write `data` (bytes, or a list of buffers one after the other) to a new file and fsync it, in chunks (so
    a full disk fails part-way like a real one); its size and sha256."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    digest, size = hashlib.sha256(), 0
    try:
        for part in [data] if isinstance(data, (bytes, bytearray, memoryview)) else data:
            view = memoryview(part).cast("B")
            for start in range(0, len(view), _CHUNK):
                chunk = view[start:start + _CHUNK]
                _write_chunk(fd, chunk)
                digest.update(chunk)
            size += len(view)
        os.fsync(fd)
    finally:
        os.close(fd)
    return size, digest.hexdigest()


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


def finished_result(run) -> dict | None:
    """The results of a run that already finished (eval.json written, no checkpoint left), else None."""
    if not run.eval_path.is_file() or CheckpointStore(run.path / "checkpoints").steps():
        return None
    try:
        return json.loads(run.eval_path.read_text())
    except (OSError, ValueError):
        return None
