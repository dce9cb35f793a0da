"""Where the language-model tasks keep their Arrow files, and how those files are written, published and read.

Everything lives under the token cache directory (`token_cache_dir()`: `$TUNESMITH_TOKEN_CACHE`, else
`$TUNESMITH_CACHE/tokenized`, else `~/.cache/tunesmith/tokenized`):

    documents/<key>/      the documents (causal_lm) or conversations (sft) of one data file, as read and checked
    <task>-<key>.arrow/   one tokenized split (written by data/token_cache.py)
    .work/<random>/       being built; renamed into place when complete, else removed (a killed process may
                          leave one behind: delete .work at any time no run is building)

A directory is built under .work and renamed into place in one step, so a reader never sees half of one; two
processes building the same entry both finish and the second one's copy is dropped. Arrow files are IPC
streams (what `datasets.Dataset.from_file` memory-maps). Reading one here goes through ordinary buffered reads,
one record batch at a time: a pass over a file larger than memory keeps only one batch in memory (a memory map
would leave every page it touched counted in the process's resident memory).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path

from tunesmith.artifacts import cache_dir

log = logging.getLogger("tunesmith.data")

ENV = "TUNESMITH_TOKEN_CACHE"
WORK = ".work"


def token_cache_dir() -> Path:
    """$TUNESMITH_TOKEN_CACHE, else the tunesmith cache (artifacts.cache_dir: $TUNESMITH_CACHE or
    ~/.cache/tunesmith) + /tokenized."""
    override = os.environ.get(ENV)
    return Path(override).expanduser().absolute() if override else cache_dir() / "tokenized"


def new_work_dir() -> Path:
    """A fresh, empty directory under the token cache's .work (or the system's temporary directory when the
    cache cannot be written); the caller renames it into place or removes it."""
    root = token_cache_dir() / WORK
    try:
        root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="build-", dir=root))
    except OSError as exc:
        log.warning("cannot write under %s (%s); building in the temporary directory", root, exc)
        return Path(tempfile.mkdtemp(prefix="tunesmith-build-"))


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class TemporaryTree:
    """A directory removed once this object is garbage-collected (or when the interpreter exits); whatever
    reads files in it keeps a reference to it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.finalizer = weakref.finalize(self, remove_tree, self.path)

    def keep(self) -> None:
        """Do not remove the directory (it was moved into the cache)."""
        self.finalizer.detach()


def publish(built: Path, target: Path) -> Path:
    """Rename the finished directory `built` to `target`; when `target` appeared meanwhile (another process
    built the same entry), `built` is removed and `target` kept. Returns the directory that now holds the data:
    `target`, or `built` when the rename failed for another reason (then the caller keeps using it)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(built, target)
        return target
    except OSError:
        if target.is_dir():
            remove_tree(built)
            return target
    try:
        shutil.move(str(built), str(target))  # another file system
        return target
    except OSError as exc:
        log.warning("cannot move %s to %s (%s); using it where it is", built, target, exc)
        return built


def file_sha256(path: Path, chunk: int = 4 * 2**20) -> str:
    """sha256 of a file's bytes, read in chunks (no more than `chunk` bytes in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def source_fingerprint(module_names) -> str:
    """sha256 over the source code of the named (imported) modules: a key part that changes with the code."""
    import inspect
    import sys

    digest = hashlib.sha256()
    for name in sorted(set(module_names)):
        module = sys.modules.get(name)
        try:
            source = inspect.getsource(module) if module is not None else ""
        except (OSError, TypeError):
            source = ""
        digest.update(f"{name}\x00{source}\x00".encode())
    return digest.hexdigest()


def stream_batches(path: Path, columns: list[str] | None = None) -> Iterator:
    """The record batches of an Arrow IPC stream file, one at a time, through buffered reads (no memory map)."""
    import pyarrow as pa

    with pa.OSFile(str(path), "rb") as source:
        reader = pa.ipc.open_stream(source)
        for batch in reader:
            yield batch.select(columns) if columns is not None else batch


class StreamWriter:
    """Record batches appended to an Arrow IPC stream file."""

    def __init__(self, path: Path, schema):
        import pyarrow as pa

        self.path, self.schema = Path(path), schema
        self.sink = pa.OSFile(str(path), "wb")
        self.writer = pa.ipc.new_stream(self.sink, schema)
        self.rows = 0

    def write(self, columns: dict) -> None:
        """Append one batch: {column: list or Arrow array}, in the schema's columns."""
        import pyarrow as pa

        arrays = [value if isinstance(value, pa.Array) else pa.array(value, type=field.type)
                  for field, value in ((field, columns[field.name]) for field in self.schema)]
        batch = pa.record_batch(arrays, schema=self.schema)
        self.writer.write_batch(batch)
        self.rows += batch.num_rows

    def close(self) -> None:
        self.writer.close()
        self.sink.close()

    def __enter__(self) -> "StreamWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
