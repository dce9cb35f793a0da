"""Tokenize once: encoded splits cached on disk, keyed by the data, the tokenizer and the encoding settings.

`encode_splits(task, frames, tokenizer)` is what run.py calls instead of `task.encode` per split. A split is
looked up by a sha256 key over:

- the format version, tunesmith's, transformers' and tokenizers' versions, and the source of the code that
  encodes (the task's classes, data/encode.py, packing.py, chat.py, labels.py, this module): editing it
  invalidates the cache, so a development checkout never reads features an older encoder wrote;
- the task name and `task.encode_settings(tokenizer)` (max_length, block_size, packing, label names, chat
  template, ...). A task returning None there (the default in tasks/base.py) is never cached;
- the split's rows: `pandas.util.hash_pandas_object` over every column and the index, plus the column names
  and dtypes (non-string objects are hashed as tagged JSON); for the language-model tasks' DocumentTables
  (data/doc_table.py), the data file's sha256, how it was read and which rows the split keeps;
- the tokenizer: its class, its whole `tokenizer.json` (minus the per-call truncation/padding state), special
  tokens, padding and truncation sides, model_max_length and chat template. A tokenizer without a
  `backend_tokenizer` (a "slow" Python tokenizer) cannot be identified that way and is not cached.

Storage is one `.npz` per split, no pickle: each list-valued feature is a flat integer array plus row offsets,
each scalar feature (labels) a plain array, and a JSON header records the feature names, their Python/numpy
types and what the task noted while encoding (`Task.encode_extras`: the LM token counts in eval.json). A
dataset holding anything else (strings, nested lists, mixed types) is encoded as usual and not cached. Files
are written atomically (temp file in the same directory, fsync, os.replace) and read with
`allow_pickle=False`; a damaged file is reported in one line and rewritten; a cache directory that cannot be
written (read-only, full) is reported once and the run goes on without the cache.

The language-model tasks (causal_lm, sft) encode into Arrow instead (data/arrow_encode.py): an entry is a
directory `<task>-<key>.arrow/` holding `data.arrow` (memory-mapped when used) and `header.json` (key, row
count, encode extras), moved into place in one rename once complete; a damaged entry is reported, removed
and rewritten. Their documents themselves are kept under `documents/` (data/doc_table.py).

The directory is `$TUNESMITH_TOKEN_CACHE`, else `$TUNESMITH_CACHE/tokenized`, else
`~/.cache/tunesmith/tokenized`. Nothing evicts old entries: delete the directory to reclaim the space.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import tempfile
from itertools import chain
from pathlib import Path
from typing import Callable

import numpy as np

from tunesmith.artifacts import os_reason
from tunesmith.data.arrow_dataset import ArrowDataset
from tunesmith.data.arrow_files import ENV, publish, remove_tree, source_fingerprint, token_cache_dir  # noqa: F401
from tunesmith.data.encode import EncodedDataset
from tunesmith.errors import one_line

log = logging.getLogger("tunesmith.data")

FORMAT_VERSION = 1
# modules whose code decides what `task.encode` returns, besides the task's own classes
ENCODER_MODULES = ("tunesmith.data.encode", "tunesmith.data.packing", "tunesmith.data.chat",
                   "tunesmith.data.labels", "tunesmith.data.arrow_encode", "tunesmith.data.arrow_dataset",
                   "tunesmith.data.doc_table", __name__)


# ---- the key -------------------------------------------------------------------------------------------------

def tokenizer_fingerprint(tokenizer) -> str | None:
    """sha256 of what makes this tokenizer tokenize the way it does; None when it cannot be told (slow tokenizer)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not hasattr(backend, "to_str"):
        return None
    spec = json.loads(backend.to_str())
    spec.pop("truncation", None)  # set per call by transformers (state left by the last call), not identity
    spec.pop("padding", None)
    about = {
        "class": type(tokenizer).__name__,
        "special_tokens": {k: str(v) for k, v in (tokenizer.special_tokens_map or {}).items()},
        "padding_side": getattr(tokenizer, "padding_side", None),
        "truncation_side": getattr(tokenizer, "truncation_side", None),
        "model_max_length": getattr(tokenizer, "model_max_length", None),
        "split_special_tokens": getattr(tokenizer, "split_special_tokens", None),
        "chat_template": getattr(tokenizer, "chat_template", None),
    }
    digest = hashlib.sha256(json.dumps(about, sort_keys=True, default=str).encode())
    digest.update(json.dumps(spec).encode())  # to_str's order is fixed for a tokenizers version (in the key)
    return digest.hexdigest()


def frame_fingerprint(frame) -> str:
    """sha256 over every value, the index, the column names and the dtypes of a split's frame; a table that
    names its own content (data/doc_table.py DocumentTable: the file's sha256, how it was read, the rows
    kept) gives that instead."""
    own = getattr(frame, "content_fingerprint", None)
    if callable(own):
        return own()
    import pandas as pd

    hashed = frame.copy(deep=False)
    for column in frame.columns:
        values = frame[column]
        if values.dtype == object and not all(type(v) is str for v in values.tolist()):
            hashed[column] = [_tagged(v) for v in values.tolist()]
    digest = hashlib.sha256(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    digest.update(str(len(frame)).encode())
    digest.update(np.ascontiguousarray(pd.util.hash_pandas_object(hashed, index=True).to_numpy()).tobytes())
    return digest.hexdigest()


def _tagged(value) -> str:
    """A string for any value that differs between types (1 vs "1") and between unequal values."""
    if type(value) is str:
        return value
    try:
        text = json.dumps(value, sort_keys=True, default=repr)
    except (TypeError, ValueError):  # e.g. a dict with keys of mixed types
        text = repr(value)
    return f"\x00{type(value).__name__}\x00{text}"


def _code_fingerprint(task) -> str:
    modules = [cls.__module__ for cls in type(task).__mro__ if cls.__module__.startswith("tunesmith")]
    return source_fingerprint(set(modules) | set(ENCODER_MODULES))


def cache_key(task, frame, tokenizer, tokenizer_id: str | None = None) -> str | None:
    """The hex sha256 naming `task.encode(frame, tokenizer)`'s result, or None when it must not be cached.
    `tokenizer_id`: the tokenizer's fingerprint when already computed."""
    settings = task.encode_settings(tokenizer)
    tokenizer_id = tokenizer_id or tokenizer_fingerprint(tokenizer)
    if settings is None or tokenizer_id is None:
        return None
    import tokenizers
    import transformers

    from tunesmith import __version__

    try:
        header = json.dumps({
            "format": FORMAT_VERSION, "tunesmith": __version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "task": task.name, "settings": settings,
        }, sort_keys=True)
    except (TypeError, ValueError):
        log.debug("encode settings of %s are not JSON: not cached", task.name)
        return None
    digest = hashlib.sha256(header.encode())
    for part in (_code_fingerprint(task), tokenizer_id, frame_fingerprint(frame)):
        digest.update(part.encode())
    return digest.hexdigest()


# ---- features <-> arrays -------------------------------------------------------------------------------------

def to_arrays(dataset, extras: dict, key: str | None = None) -> dict[str, np.ndarray] | None:
    """{name: array} for np.savez, or None when the dataset holds something these arrays cannot give back
    exactly (another dataset class, extra attributes, rows with other keys, strings, nested lists, ...)."""
    if type(dataset) is not EncodedDataset or set(vars(dataset)) != {"features"} or type(dataset.features) is not list:
        return None
    features = dataset.features
    names = list(features[0]) if features else []
    if any(type(f) is not dict or list(f) != names for f in features):
        return None
    arrays, columns = {}, []
    for index, name in enumerate(names):
        if type(name) is not str:
            return None
        values = [f[name] for f in features]
        packed = _pack(values)
        if packed is None:
            return None
        kind, data, offsets = packed
        arrays[f"v{index}"] = data
        if offsets is not None:
            arrays[f"o{index}"] = offsets
        columns.append({"name": name, "kind": kind, "dtype": data.dtype.str})
    try:
        header = json.dumps({"format": FORMAT_VERSION, "key": key, "rows": len(features), "columns": columns,
                             "extras": extras})
    except (TypeError, ValueError):
        return None
    arrays["header"] = np.array(header)
    return arrays


def _pack(values: list) -> tuple[str, np.ndarray, np.ndarray | None] | None:
    kinds = set(map(type, values))
    if kinds == {list}:
        flat = list(chain.from_iterable(values))
        if not set(map(type, flat)) <= {int}:  # bools, floats, numpy scalars, nested lists: not exact
            return None
        try:
            data = np.array(flat, dtype=np.int64)
        except OverflowError:
            return None
        if data.size and np.iinfo(np.int32).min <= data.min() and data.max() <= np.iinfo(np.int32).max:
            data = data.astype(np.int32)  # token ids and -100 labels: half the disk
        offsets = np.zeros(len(values) + 1, dtype=np.int64)
        np.cumsum([len(v) for v in values], out=offsets[1:])
        return "ids", data, offsets
    if len(kinds) != 1:
        return None
    kind = kinds.pop()
    python = {int: ("int", np.int64), float: ("float", np.float64), bool: ("bool", np.bool_)}
    try:
        if kind in python:
            name, dtype = python[kind]
            return name, np.array(values, dtype=dtype), None
        if issubclass(kind, np.generic) and np.dtype(kind).kind in "biuf":
            return "numpy", np.array(values, dtype=kind), None
    except OverflowError:
        return None
    return None


def from_arrays(archive, key: str | None = None) -> tuple[EncodedDataset, dict]:
    """(dataset, extras) from an opened .npz; ValueError when anything is inconsistent."""
    header = json.loads(str(archive["header"][()]))
    if header.get("format") != FORMAT_VERSION:
        raise ValueError(f"format {header.get('format')!r}, expected {FORMAT_VERSION}")
    if key is not None and header.get("key") != key:
        raise ValueError("its key does not match its name")
    collecting = gc.isenabled()
    gc.disable()  # a million small lists: the cyclic collector would scan them again and again
    try:
        features = _rows(archive, header)
    finally:
        if collecting:
            gc.enable()
    return EncodedDataset(features), header.get("extras") or {}


def _rows(archive, header: dict) -> list[dict]:
    rows, columns = header["rows"], []
    for index, column in enumerate(header["columns"]):
        data, kind = archive[f"v{index}"], column["kind"]
        if data.dtype.str != column["dtype"]:
            raise ValueError(f"feature {column['name']!r}: dtype {data.dtype.str}, expected {column['dtype']}")
        if kind == "ids":
            offsets = archive[f"o{index}"]
            if (data.ndim != 1 or data.dtype.kind != "i" or offsets.shape != (rows + 1,) or offsets[0] != 0
                    or offsets[-1] != len(data) or np.any(np.diff(offsets) < 0)):
                raise ValueError(f"feature {column['name']!r}: offsets do not match the values")
            flat, bounds = data.tolist(), offsets.tolist()
            columns.append([flat[bounds[i]:bounds[i + 1]] for i in range(rows)])
        elif kind in ("int", "float", "bool", "numpy"):
            if data.shape != (rows,):
                raise ValueError(f"feature {column['name']!r}: {data.shape[0] if data.ndim else 0} values "
                                 f"for {rows} rows")
            columns.append(list(data) if kind == "numpy" else data.tolist())
        else:
            raise ValueError(f"unknown feature kind {kind!r}")
    names = [column["name"] for column in header["columns"]]
    return [dict(zip(names, row)) for row in zip(*columns)] if names else [{} for _ in range(rows)]


# ---- the cache -----------------------------------------------------------------------------------------------

class TokenCache:
    """Reads and writes encoded splits under `directory`; never fails a run (problems are echoed warnings)."""

    def __init__(self, directory: Path | None = None, *, echo: Callable[[str], None] = print):
        self.directory = Path(directory) if directory is not None else token_cache_dir()
        self.echo = echo
        self.writable = True  # false after the first failed write: warned once, then the run goes on without
        self._tokenizers: dict[int, tuple[object, str | None]] = {}  # id -> (tokenizer, fingerprint), this run

    def key(self, task, frame, tokenizer) -> str | None:
        if id(tokenizer) not in self._tokenizers:  # the tokenizer is hashed once per run, not once per split
            self._tokenizers[id(tokenizer)] = (tokenizer, tokenizer_fingerprint(tokenizer))
        fingerprint = self._tokenizers[id(tokenizer)][1]
        return cache_key(task, frame, tokenizer, fingerprint) if fingerprint is not None else None

    def path(self, task_name: str, key: str) -> Path:
        return self.directory / f"{task_name}-{key}.npz"

    def load(self, path: Path, key: str) -> tuple[EncodedDataset, dict] | None:
        """The cached (dataset, extras), or None when absent; a damaged file is reported and left to be rewritten."""
        try:
            if not path.is_file():
                return None
        except OSError:  # a directory we may not look into: the save that follows reports it
            return None
        try:
            with np.load(path, allow_pickle=False) as archive:
                return from_arrays(archive, key)
        except Exception as exc:  # noqa: BLE001 - any damage (truncated zip, bad header, ...) means re-encoding
            self.echo(f"warning: tokenized cache file {path} is unreadable ({one_line(exc)}); "
                      f"tokenizing again and rewriting it")
            return None

    def save(self, path: Path, key: str, dataset, extras: dict) -> bool:
        """Write atomically; False when the dataset cannot be stored exactly or the directory cannot be written."""
        arrays = to_arrays(dataset, extras, key)
        if arrays is None:
            log.debug("%s: features cannot be stored as arrays; not cached", path.name)
            return False
        if not self.writable:
            return False
        tmp = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=self.directory)
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), 0o644)  # mkstemp's 0600 would make the cache private to one user
                np.savez(handle, **arrays)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            tmp = None
        except OSError as exc:
            self.writable = False
            self.echo(f"warning: tokenized cache not written to {self.directory} ({os_reason(exc)}); "
                      f"going on without it")
            return False
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
        return True


    # ---- Arrow entries: the language-model tasks' splits (data/arrow_dataset.py) -------------------------------
    def arrow_path(self, task_name: str, key: str) -> Path:
        return self.directory / f"{task_name}-{key}.arrow"

    def load_arrow(self, path: Path, key: str) -> tuple[ArrowDataset, dict] | None:
        """The cached (dataset, extras) of an Arrow entry, or None; a damaged entry is reported and removed."""
        try:
            if not (path / "header.json").is_file():
                return None
        except OSError:
            return None
        try:
            header = json.loads((path / "header.json").read_text(encoding="utf-8"))
            if header.get("format") != FORMAT_VERSION or header.get("key") != key:
                raise ValueError("its header does not match its name")
            dataset = ArrowDataset(path)
            if len(dataset) != header.get("rows"):
                raise ValueError(f"{len(dataset)} rows, the header says {header.get('rows')}")
            return dataset, header.get("extras") or {}
        except Exception as exc:  # noqa: BLE001 - any damage means re-encoding
            self.echo(f"warning: tokenized cache entry {path} is unreadable ({one_line(exc)}); "
                      f"tokenizing again and rewriting it")
            remove_tree(path)
            return None

    def save_arrow(self, path: Path, key: str, dataset: ArrowDataset, extras: dict) -> ArrowDataset:
        """Move the dataset's directory into the cache as `path`; the dataset as it is now to be used."""
        if not self.writable or dataset.temporary is None:
            return dataset
        header = {"format": FORMAT_VERSION, "key": key, "rows": len(dataset), "extras": extras}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            (dataset.directory / "header.json").write_text(json.dumps(header), encoding="utf-8")
        except (OSError, TypeError, ValueError) as exc:
            self.writable = False
            reason = os_reason(exc) if isinstance(exc, OSError) else one_line(exc)
            self.echo(f"warning: tokenized cache not written to {self.directory} ({reason}); going on without it")
            return dataset
        placed = publish(dataset.directory, path)
        return dataset.moved(placed) if placed == path else dataset


def cached_encode(task, split: str, frame, tokenizer, cache: TokenCache) -> EncodedDataset:
    """`task.encode(frame, tokenizer)`, read from `cache` when this data, tokenizer and settings were encoded
    before (the task's encode extras restored too), else encoded and written there."""
    try:
        key = cache.key(task, frame, tokenizer)
    except Exception as exc:  # noqa: BLE001 - the cache must never fail a run: encode as without it
        cache.echo(f"warning: tokenized cache not used for {split} ({one_line(exc)})")
        key = None
    if key is None:
        return task.encode(frame, tokenizer)
    streamed = callable(getattr(frame, "content_fingerprint", None))  # a DocumentTable: encoded into Arrow
    path = cache.arrow_path(task.name, key) if streamed else cache.path(task.name, key)
    hit = cache.load_arrow(path, key) if streamed else cache.load(path, key)
    if hit is not None:
        dataset, extras = hit
        task.restore_encode_extras(split, extras)
        cache.echo(f"note: tokenized {split} from cache ({len(frame):,} {getattr(task, 'unit', 'rows')})")
        return dataset
    dataset = task.encode(frame, tokenizer)
    if isinstance(dataset, ArrowDataset):
        return cache.save_arrow(path, key, dataset, task.encode_extras(split))
    cache.save(path, key, dataset, task.encode_extras(split))
    return dataset


def encode_splits(task, frames: dict, tokenizer, *, enabled: bool = True, echo: Callable[[str], None] = print,
                  directory: Path | None = None) -> dict[str, EncodedDataset]:
    """{split: encoded dataset} for run.py; `enabled` False is exactly `task.encode` per split."""
    if not enabled:
        return {name: task.encode(frame, tokenizer) for name, frame in frames.items()}
    cache = TokenCache(directory, echo=echo)
    return {name: cached_encode(task, name, frame, tokenizer, cache) for name, frame in frames.items()}
