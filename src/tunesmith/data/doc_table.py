"""The rows of the language-model tasks (documents for causal_lm, conversations for sft) as Arrow files.

A `DocumentTable` is one split: part files of a data file's rows, in file order, plus an optional selection
(the row numbers this split keeps, ascending). It is read as a stream (`batches`, `rows`), part by part, so
its size is bounded by the disk, not by memory; each part (about PART_BYTES of text) is one unit of parallel
tokenizing (`chunks`). `content_fingerprint()` names its content: the data file's sha256 and how it was read,
plus the selection; the token cache keys a split's tokens by it.

`document_table(path, settings, schema, rows, persistent=...)` reads a data file once: the table is stored under
`documents/<key>` of the token cache, keyed by the file's sha256, the read settings and the reading code, and
opened from there while all three are unchanged. `persistent=False` (data.cache_tokenized: false), a pipe or a
/proc file: the table is built in a directory removed once the table is no longer used (or at exit).
"""

from __future__ import annotations

import hashlib
import json
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tunesmith import __version__
from tunesmith.data.arrow_files import (
    StreamWriter, file_sha256, new_work_dir, publish, TemporaryTree, remove_tree, stream_batches, token_cache_dir,
)
from tunesmith.data.readers import check_file
from tunesmith.errors import DataError

FORMAT_VERSION = 1
PART_BYTES = 32 * 2**20   # text per part file: the unit of parallel tokenizing
BATCH_BYTES = 2**20       # text per record batch: what one pass holds in memory at a time
BATCH_ROWS = 4096


@dataclass(frozen=True)
class Chunk:
    """Rows of one part: its file (or an in-memory Arrow table) and the rows kept (None: all), ascending."""

    index: int
    source: object
    rows: np.ndarray | None = None

    def batches(self, columns: list[str] | None = None) -> Iterator:
        if isinstance(self.source, (str, Path)):
            batches = stream_batches(Path(self.source), columns)
        else:  # an in-memory pyarrow Table
            batches = iter((self.source if columns is None else self.source.select(columns)).to_batches())
        offset = 0
        for batch in batches:
            if self.rows is None:
                yield batch
            else:
                lo, hi = np.searchsorted(self.rows, [offset, offset + batch.num_rows])
                if hi > lo:
                    yield batch if hi - lo == batch.num_rows else batch.take(self.rows[lo:hi] - offset)
            offset += batch.num_rows


class DocumentTable:
    """One split's rows, in file order: see the module docstring."""

    def __init__(self, parts: list[tuple[object, int]], key: str, *, selection: np.ndarray | None = None,
                 info: dict | None = None, directory: Path | None = None):
        self.parts, self.key, self.selection = parts, key, selection
        self.info = info or {}
        self.directory = directory
        self.owner = None  # a TemporaryTree holding the parts, removed once no split uses it
        self.starts = np.concatenate([[0], np.cumsum([rows for _, rows in parts])]).astype(np.int64)

    @property
    def unit(self) -> str:
        return self.info.get("unit", "line")

    def __len__(self) -> int:
        return int(self.starts[-1]) if self.selection is None else len(self.selection)

    def content_fingerprint(self) -> str:
        digest = hashlib.sha256(self.key.encode())
        if self.selection is not None:
            digest.update(np.ascontiguousarray(self.selection, dtype=np.int64).tobytes())
        return digest.hexdigest()

    def select(self, indices) -> "DocumentTable":
        """The rows at `indices` (ascending positions in this table)."""
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) > 1 and np.any(np.diff(indices) <= 0):
            raise ValueError("a selection must be strictly ascending")
        chosen = indices if self.selection is None else self.selection[indices]
        table = DocumentTable(self.parts, self.key, selection=chosen, info=self.info, directory=self.directory)
        table.owner = self.owner  # keeps a temporary directory alive while a split uses it
        return table

    def chunks(self) -> list[Chunk]:
        out = []
        for index, (source, _) in enumerate(self.parts):
            start, stop = self.starts[index], self.starts[index + 1]
            if self.selection is None:
                out.append(Chunk(index, source))
                continue
            lo, hi = np.searchsorted(self.selection, [start, stop])
            if hi > lo:
                out.append(Chunk(index, source, self.selection[lo:hi] - start))
        return out

    def batches(self, columns: list[str] | None = None) -> Iterator:
        for chunk in self.chunks():
            yield from chunk.batches(columns)

    def rows(self, column: str) -> Iterator:
        """The values of `column`, row by row (Python objects), as a stream."""
        for batch in self.batches([column]):
            yield from batch.column(0).to_pylist()

    def column(self, name: str) -> list:
        """Every value of `column` in memory: for small tables (tests, a split's first rows)."""
        return list(self.rows(name))

    def char_lengths(self, column: str = "text") -> np.ndarray:
        import pyarrow.compute as pc

        parts = [pc.utf8_length(batch.column(0)).to_numpy(zero_copy_only=False) for batch in self.batches([column])]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)

    def first_occurrences(self, column: str) -> np.ndarray:
        """Positions of the rows whose `column` value did not occur before (16-byte blake2b of each value)."""
        digests = []
        for batch in self.batches([column]):
            digests.append(np.array([hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=16).digest()
                                     for value in batch.column(0).to_pylist()], dtype="S16"))
        if not digests:
            return np.zeros(0, dtype=np.int64)
        _, first = np.unique(np.concatenate(digests), return_index=True)
        return np.sort(first).astype(np.int64)

    def to_frame(self):
        """The whole table as a pandas DataFrame (in memory)."""
        import pandas as pd

        return pd.concat([batch.to_pandas() for batch in self.batches()], ignore_index=True) \
            if len(self) else pd.DataFrame({name: [] for name in self.info.get("columns", [])})

    @classmethod
    def from_columns(cls, columns: dict[str, list], schema, info: dict | None = None) -> "DocumentTable":
        """A table held in memory (a split cut out of one document, a frame given to `encode`)."""
        import pyarrow as pa

        table = pa.table({field.name: pa.array(columns[field.name], type=field.type) for field in schema},
                         schema=schema)
        digest = hashlib.sha256(f"memory\x00{FORMAT_VERSION}\x00{schema}".encode())
        for batch in table.to_batches():
            for column in batch.columns:
                for buffer in column.buffers():
                    digest.update(b"\x00" if buffer is None else memoryview(buffer))
        return cls([(table, table.num_rows)], digest.hexdigest(), info={"columns": schema.names, **(info or {})})


# ---- building a table from a data file -----------------------------------------------------------------------

class TableBuilder:
    """Rows appended one at a time, written as record batches into part files of `directory`."""

    def __init__(self, directory: Path, schema, measure: str, where: Callable[[int], str] = str):
        self.directory, self.schema, self.measure, self.where = directory, schema, measure, where
        self.parts: list[list] = []
        self.buffer: dict[str, list] = {name: [] for name in schema.names}
        self.batch_bytes = self.part_bytes = 0
        self.writer: StreamWriter | None = None

    def add(self, row: dict) -> None:
        for name in self.schema.names:
            self.buffer[name].append(row[name])
        self.batch_bytes += len(row[self.measure])
        if self.batch_bytes >= BATCH_BYTES or len(self.buffer[self.measure]) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        rows = len(self.buffer[self.measure])
        if not rows:
            return
        if self.writer is None:
            name = f"part-{len(self.parts):05d}.arrow"
            self.writer = StreamWriter(self.directory / name, self.schema)
            self.parts.append([name, 0])
        try:
            self.writer.write(self.buffer)
        except UnicodeEncodeError:
            raise self._not_unicode() from None
        self.parts[-1][1] += rows
        self.part_bytes += self.batch_bytes
        self.buffer = {name: [] for name in self.schema.names}
        self.batch_bytes = 0
        if self.part_bytes >= PART_BYTES:
            self.close()

    def _not_unicode(self) -> DataError:
        """The error for a value holding a lone surrogate (JSON "\\ud800"), which UTF-8 (and Arrow) cannot hold."""
        for index, value in enumerate(self.buffer[self.measure]):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as err:
                return DataError(f"{self.where(self.buffer['line'][index])}: the {self.measure} holds "
                                 f"{value[err.start]!r}, a lone surrogate that is not a character; fix the "
                                 f"escape (\\ud800-\\udfff must come in pairs)")
        return DataError(f"{self.where(self.buffer['line'][0])}: a value is not valid Unicode")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.writer, self.part_bytes = None, 0

    def finish(self) -> list[list]:
        self.flush()
        self.close()
        return self.parts


def document_table(path: Path, settings: dict, schema, rows: Callable[[], Iterator[dict]], *,
                   code: str, persistent: bool = True, info: Callable[[], dict] = dict) -> DocumentTable:
    """The table of `path` read by `rows()` (dicts with the schema's columns; `info()` is asked after the last
    row): opened from the documents cache when this file was read with these settings and this `code` before,
    else read and stored there. A pipe or /proc file (readable once) is read into a table of this run only,
    keyed by the rows read."""
    regular = stat.S_ISREG(check_file(path).st_mode)
    digest = hashlib.sha256(json.dumps({"format": FORMAT_VERSION, "tunesmith": __version__, "settings": settings,
                                        "schema": str(schema)}, sort_keys=True, default=str).encode())
    digest.update(code.encode())
    if regular:
        digest.update(file_sha256(path).encode())
        key = digest.hexdigest()
        entry = token_cache_dir() / "documents" / key
        if persistent and (table := open_table(entry, key)) is not None:
            return table
    work = new_work_dir()
    try:
        built = work / "table"
        built.mkdir()
        builder = TableBuilder(built, schema, schema.names[0],
                               where=lambda line: f"{path}, {info().get('unit', 'line')} {line}")
        for row in rows():
            builder.add(row)
        parts = builder.finish()
        if not regular:
            for name, _ in parts:
                digest.update(file_sha256(built / name).encode())
            key = digest.hexdigest()
        header = {"format": FORMAT_VERSION, "key": key, "columns": schema.names, "parts": parts,
                  "sizes": [(built / name).stat().st_size for name, _ in parts], **info()}
        (built / "table.json").write_text(json.dumps(header), encoding="utf-8")
        if persistent and regular:
            return open_table(publish(built, entry), key)
        table = open_table(built, key)
        table.owner = TemporaryTree(work)
        work = None  # removed with the table
        return table
    finally:
        if work is not None:
            remove_tree(work)


def open_table(directory: Path, key: str) -> DocumentTable | None:
    """The table stored in `directory`, or None when it is absent, incomplete or of another key."""
    try:
        header = json.loads((directory / "table.json").read_text(encoding="utf-8"))
        if header.get("format") != FORMAT_VERSION or header.get("key") != key:
            return None
        parts = [(str(directory / name), rows) for name, rows in header["parts"]]
        if [Path(p).stat().st_size for p, _ in parts] != header["sizes"]:
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    info = {k: v for k, v in header.items() if k not in ("format", "key", "parts", "sizes")}
    return DocumentTable(parts, key, info=info, directory=directory)
