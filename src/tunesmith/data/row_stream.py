"""Rows of a data file read as a stream, with the checks and messages of tunesmith.data.readers.read_table.

`read_table` holds a whole file in memory; the language-model tasks read corpora larger than memory, so their
files are read here one line (one csv record, one parquet batch) at a time:

- `text_lines(path, encoding)`: the decoded lines of a text file (a `.gz` file decompressed on the fly), each
  with its 1-based number; a byte that does not decode is reported with its line and column, as
  `readers.decode_text` reports it. Encodings whose line break is not the byte `\\n` (UTF-16, UTF-32) are
  decoded whole, in memory.
- `iter_rows(path, ...)`: (line, values) for each row, the values checked and converted as `read_table`
  converts them (`readers.clean_value`). csv/tsv, jsonl and parquet stream; a json file (one array) is
  parsed whole.

What differs from `read_table`, by necessity: a file with several problems reports the first one met in file
order (read_table reports any JSON syntax error before a bad value), and a jsonl key that no object has is
reported once the whole file has been read (rows before the first object that has every mapped key are held
back until then; usually that is the first object).
"""

from __future__ import annotations

import codecs
import gzip
import io
import stat
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from tunesmith.data.readers import (
    MISSING, Column, check_columns, check_file, clean_value, decode_text, delimited_rows, infer_format, is_gzip,
    jsonl_object, listing, not_found_error, read_json_records, resolve_columns,
)
from tunesmith.errors import DataError

Row = tuple[int, list[Any]]
PARQUET_BATCH_ROWS = 4096


@contextmanager
def open_binary(path: Path) -> Iterator[BinaryIO]:
    """The file's bytes as a stream (decompressed when it is a `.gz`)."""
    check_file(path)
    try:
        raw = open(path, "rb")
    except OSError as err:
        raise DataError(f"{path}: cannot read the file ({err.strerror or err})") from None
    try:
        yield gzip.GzipFile(fileobj=raw, mode="rb") if is_gzip(path) else raw
    finally:
        raw.close()


def binary_lines(path: Path) -> Iterator[bytes]:
    """The file's lines as bytes, each with its `\\n` (the last one may lack it)."""
    with open_binary(path) as stream:
        try:
            yield from stream
        except (OSError, EOFError, zlib.error) as err:
            raise read_error(path, err) from None


def read_error(path: Path, err: Exception) -> DataError:
    """The error for a file that stops being readable part way (a truncated .gz, an I/O error)."""
    if is_gzip(path):
        return DataError(f"{path}: cannot decompress this .gz file ({err}); check that it is a complete gzip file")
    return DataError(f"{path}: cannot read the file ({getattr(err, 'strerror', None) or err})")


def line_break_is_a_byte(path: Path, encoding: str) -> bool:
    """Whether `encoding` writes a line break as the single byte `\\n` (then lines can be decoded one by one)."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DataError(f"{path}: unknown encoding '{encoding}' (data.encoding)") from None
    try:
        return "a\n".encode(encoding) == b"a\n"
    except UnicodeError:
        return False


def text_lines(path: Path, encoding: str) -> Iterator[tuple[int, str, bool]]:
    """(line number, the line without its `\\n`, whether a `\\n` ended it) for each line; a leading BOM is
    dropped; a file without a single byte is an error."""
    if not line_break_is_a_byte(path, encoding):
        parts = decode_text(path, encoding).split("\n")
        yield from ((n, part, n < len(parts)) for n, part in enumerate(parts, 1))
        return
    n = 0
    for n, raw in enumerate(binary_lines(path), 1):
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as err:
            raise DataError(
                f"{path}, line {n}: not valid {encoding} text (byte 0x{raw[err.start]:02x} at "
                f"column {err.start + 1}); convert the file to UTF-8 or set data.encoding") from None
        if n == 1 and text.startswith("\ufeff"):
            text = text[1:]
        ended = text.endswith("\n")
        yield n, text[:-1] if ended else text, ended
    if n == 0:
        raise DataError(f"{path} is empty")


def delimited_lines(path: Path, encoding: str) -> Iterator[str]:
    """The lines of a csv/tsv file as `open(newline="")` gives them (line breaks kept, split at \\n, \\r and
    \\r\\n), for the csv module; a non-decodable byte is reported with its line (counted in `\\n`)."""
    if not line_break_is_a_byte(path, encoding):
        yield from io.StringIO(decode_text(path, encoding), newline="")
        return
    with open_binary(path) as stream:
        text = io.TextIOWrapper(stream, encoding=encoding, newline="")
        try:
            first = True
            for line in text:
                yield line[1:] if first and line.startswith("\ufeff") else line
                first = False
        except UnicodeDecodeError:
            for _ in text_lines(path, encoding):  # finds the line and column, and raises
                pass
            raise DataError(f"{path}: not valid {encoding} text; convert the file to UTF-8 or set data.encoding") from None
        except (OSError, EOFError, zlib.error) as err:
            raise read_error(path, err) from None
        if first:
            raise DataError(f"{path} is empty")


def iter_rows(path: Path | str, *, columns: Mapping[str, Column], required: tuple[str, ...], format: str | None = None,
              header: bool | None = None, quoting: str = "auto", delimiter: str | None = None,
              encoding: str = "utf-8", extra_fields: str = "error") -> tuple[str, Iterator[Row]]:
    """(unit, rows): "line", "item" or "row" (what `line` counts), and (line, values in `columns` order) for each
    row, as read_table reads them (the same arguments, the same checks, values cleaned the same way)."""
    path = Path(path)
    fmt = infer_format(path, format)
    check_columns(path, fmt, columns, required)
    if fmt in ("csv", "tsv"):
        rows = _rows_with_data(path, delimited_rows(path, delimited_lines(path, encoding), fmt, columns, header,
                                                    quoting, delimiter, extra_fields), "has a header but no rows")
        unit = "line"
    elif fmt == "txt":
        rows = ((n, [text.removesuffix("\r")]) for n, text, _ in text_lines(path, encoding) if text.strip())
        rows, unit = _rows_with_data(path, rows, "is empty"), "line"
    elif fmt == "jsonl":
        objects = ((n, obj) for n, text, _ in text_lines(path, encoding)
                   if (obj := jsonl_object(path, n, text)) is not None)
        rows, unit = keyed_rows(path, fmt, _rows_with_data(path, objects, "is empty"), columns), "line"
    elif fmt == "json":
        rows, unit = keyed_rows(path, fmt, iter(read_json_records(path, decode_text(path, encoding))), columns), "item"
    else:
        rows, unit = parquet_rows(path, columns), "row"
    return unit, _cleaned(path, unit, rows, columns, required)


def _rows_with_data(path: Path, rows: Iterator, problem: str) -> Iterator:
    """`rows`, with `{path} {problem}` raised when there is none."""
    empty = True
    for row in rows:
        empty = False
        yield row
    if empty:
        raise DataError(f"{path} {problem}")


def _cleaned(path: Path, unit: str, rows: Iterator[Row], columns: Mapping[str, Column],
             required: tuple[str, ...]) -> Iterator[Row]:
    roles, cols = list(columns), list(columns.values())
    flags = [role in required for role in roles]
    for line, values in rows:
        where = (path, unit, line)
        yield line, [clean_value(where, roles[k], cols[k], value, flags[k]) for k, value in enumerate(values)]


def keyed_rows(path: Path, fmt: str, records: Iterator[tuple[int, dict]], columns: Mapping[str, Column]) -> Iterator[Row]:
    """The values each role maps to, object by object. A key that no object has is an error (raised once every
    object has been seen); a key that only some objects lack reads as missing in those."""
    names = list(columns.values())
    unseen = dict.fromkeys(names)
    keys: dict[str, None] = {}  # every key met, in order (for the messages), while some mapped key is unseen
    held: list[tuple[int, dict]] = []
    for n, obj in records:
        if not keys and not held:
            for role, col in columns.items():
                if isinstance(col, int):
                    raise DataError(f"{path}: data.columns.{role} is {col}, but {fmt} fields are named, "
                                    f"not numbered; keys are: {listing(list(obj))}")
        if unseen:
            keys.update(dict.fromkeys(obj))
            for key in [k for k in unseen if k in obj]:
                del unseen[key]
            held.append((n, obj))
            if unseen:
                continue
            yield from ((m, [o.get(col, MISSING) for col in names]) for m, o in held)
            held = []
            continue
        yield n, [obj.get(col, MISSING) for col in names]
    if unseen:
        role, col = next((r, c) for r, c in columns.items() if c in unseen)
        raise not_found_error(path, role, col, list(keys), what="key")


def parquet_rows(path: Path, columns: Mapping[str, Column]) -> Iterator[Row]:
    """Rows of a parquet file (numbered from 1), a batch of rows at a time; a `.gz`, a pipe or a /proc file is
    read into memory first, as read_table reads it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    info = check_file(path)
    seekable = stat.S_ISREG(info.st_mode) and info.st_size > 0 and not is_gzip(path)
    data = None if seekable else b"".join(binary_lines(path))
    if data == b"":
        raise DataError(f"{path} is empty")
    n = 0
    try:
        source = pq.ParquetFile(path if seekable else io.BytesIO(data))
        with source:
            names = list(source.schema_arrow.names)
            positions = resolve_columns(path, columns, names, "the file")
            wanted = [names[i] for i in positions]
            for batch in source.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=list(dict.fromkeys(wanted))):
                values = [batch.column(name).to_pylist() for name in wanted]
                for row in zip(*values):
                    n += 1
                    yield n, list(row)
    except (pa.ArrowException, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{path}: cannot read as parquet ({first})") from None
    if n == 0:
        raise DataError(f"{path} has no rows")
