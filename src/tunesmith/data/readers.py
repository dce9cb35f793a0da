"""Read a data file into a DataFrame with one column per role.

A *role* is what a column means to the task (``text``, ``text_pair``, ``label``, ...); the recipe's
``data.columns`` maps each role to a column name or a 0-based column index. ``read_table`` returns a
frame with one column per role, named by the role, plus ``line``: where the row starts in the file
(the 1-based physical line for csv/tsv/jsonl/txt, the 1-based row for parquet, the 1-based item for
a JSON array), so that every later error can point at the row that caused it.

Every problem with the file is raised as a one-line :class:`~tunesmith.errors.DataError` that
starts with the file's path.
"""

from __future__ import annotations

import csv
import difflib
import errno
import gzip
import io
import zlib
import itertools
import json
import math
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tunesmith.data.labels import canonical_label
from tunesmith.errors import DataError, shorten, shown

FORMATS = ("csv", "tsv", "jsonl", "json", "parquet", "txt")
QUOTING = ("auto", "minimal", "none")
EXTRA_FIELDS = ("error", "ignore")  # csv/tsv rows with more fields than the header (or first row)

_EXTENSIONS = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".json": "json", ".parquet": "parquet", ".pq": "parquet", ".txt": "txt",
}
_SEPARATOR_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe", " ": "space"}
MISSING = object()  # a JSON object without the key a role is mapped to
_MAX_LISTED = 30  # at most this many column names in an error message

Column = str | int
Row = tuple[int, list[Any]]  # (line, one value per role)


def infer_format(path: Path, format: str | None) -> str:
    """The file's format: ``format`` when given (checked against FORMATS), else from the extension.

    ``.tab`` reads as tsv, ``.ndjson`` as jsonl and ``.pq`` as parquet. A gzip file (``.gz``) has the
    format of the suffix before ``.gz``: ``pairs.jsonl.gz`` is jsonl.
    """
    path = Path(path)
    choices = ", ".join(FORMATS)
    if format is not None:
        fmt = str(format).strip().lower().lstrip(".")
        if fmt not in FORMATS:
            raise DataError(f"{path}: unsupported format '{format}' (data.format); use one of {choices}")
        return fmt
    suffix = inner_suffix(path)
    fmt = _EXTENSIONS.get(suffix.lower())
    if fmt is None:
        ext = f"extension '{suffix}'" if suffix else "no extension"
        ext += " before .gz" if is_gzip(path) else ""
        raise DataError(f"{path}: cannot tell the format of this file ({ext}); "
                        f"set data.format to one of {choices}")
    return fmt


def read_table(
    path: Path | str,
    *,
    columns: Mapping[str, Column],
    required: tuple[str, ...] = ("text", "label"),
    format: str | None = None,
    header: bool | None = None,
    quoting: str = "auto",
    delimiter: str | None = None,
    encoding: str = "utf-8",
    extra_fields: str = "error",
) -> pd.DataFrame:
    """Read ``path`` into a DataFrame with one column per role in ``columns`` plus ``line``.

    ``required`` roles must have a non-blank value in every row. Roles named ``text`` or
    ``text_*`` come back as ``str``; ``label`` values in their canonical form, the same in every
    format (:func:`tunesmith.data.labels.canonical_label`: values equal as numbers are one number;
    other strings stripped of surrounding whitespace). A missing or blank value of a role that is
    not required reads as ``""`` for text roles and ``None`` for others. Blank lines are skipped;
    a UTF-8 BOM is dropped.

    csv/tsv only: ``header`` (None: the first row holds column names when every ``columns`` value
    is a name), ``quoting`` ("auto": none for tsv, minimal for csv; "minimal": standard double-quote
    quoting; "none": quotes are ordinary characters), ``delimiter`` (default by format) and
    ``extra_fields`` ("error": a row with more fields than the header, or than the first row when
    there is no header, is an error; "ignore": its extra trailing fields are dropped).

    Pipes, character devices and /proc files are read as streams: ``<(zcat data.csv.gz)`` works. A ``.gz``
    file is decompressed in memory and read as the format of the suffix before ``.gz``.
    """
    path = Path(path)
    info = check_file(path)
    fmt = infer_format(path, format)
    check_columns(path, fmt, columns, required)
    if fmt == "parquet":
        seekable = stat.S_ISREG(info.st_mode) and info.st_size > 0 and not is_gzip(path)  # /proc files say 0 bytes
        rows, unit = _read_parquet(path, path if seekable else io.BytesIO(_read_bytes(path)), columns), "row"
    else:
        text = decode_text(path, encoding)
        if fmt in ("csv", "tsv"):
            rows, unit = _read_delimited(path, text, fmt, columns, header, quoting, delimiter,
                                         extra_fields), "line"
        elif fmt == "txt":
            rows, unit = _read_txt(path, text), "line"
        else:
            records = read_jsonl_records(path, text) if fmt == "jsonl" else read_json_records(path, text)
            rows, unit = _pick_keys(path, fmt, records, columns), ("line" if fmt == "jsonl" else "item")
    frame = _build_frame(path, unit, rows, columns, required)
    frame.attrs["line_unit"] = unit
    return frame


# --- checks shared by every format -------------------------------------------------------------

def check_file(path: Path) -> os.stat_result:
    """The file's status; a missing path, a symlink loop or a directory is an error. Emptiness is
    checked once the file is read: pipes and /proc files have no size to look at."""
    try:
        info = path.stat()
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise DataError(f"{path} is a symlink loop (following its links leads back to it); "
                            f"point it at a real file") from None
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            raise DataError(f"{path} does not exist") from None
        raise DataError(f"{path}: cannot read the file ({err.strerror or err})") from None
    if stat.S_ISDIR(info.st_mode):
        raise DataError(f"{path} is a directory, not a data file")
    return info


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, read to the end (a pipe as well as a file), decompressed when it is a ``.gz``;
    no bytes at all is an error."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read the file ({err.strerror or err})") from None
    if data and is_gzip(path):
        data = _gunzip(path, data)
    if not data:
        raise DataError(f"{path} is empty")
    return data


# --- gzip: a ".gz" file is read as the format of the suffix before ".gz" ---------------------------------

def is_gzip(path: Path) -> bool:
    return Path(path).suffix.lower() == ".gz"


def inner_suffix(path: Path) -> str:
    """The suffix that names the format: ``.jsonl`` for ``pairs.jsonl.gz``, ``.csv`` for ``x.csv``."""
    path = Path(path)
    return Path(path.stem).suffix if is_gzip(path) else path.suffix


def _gunzip(path: Path, data: bytes) -> bytes:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: cannot decompress this .gz file ({err}); "
                        f"check that it is a complete gzip file") from None



def check_columns(path: Path, fmt: str, columns: Mapping[str, Column], required: tuple[str, ...]) -> None:
    """The ``columns`` mapping is usable: valid names/indexes, every required role mapped."""
    if not columns:
        raise DataError(f"{path}: data.columns is empty; map at least the text column")
    for role, col in columns.items():
        ok = (isinstance(col, str) and col != "") or (
            isinstance(col, int) and not isinstance(col, bool) and col >= 0)
        if not ok:
            raise DataError(f"{path}: data.columns.{role} must be a column name or a 0-based "
                            f"column index, got {shown(col)}")
    for role in required:
        if role not in columns:
            if fmt == "txt":
                raise DataError(f"{path}: a txt file holds only text, one example per line; "
                                f"it has no {role} column. Use csv, tsv, jsonl, json or parquet")
            raise DataError(f"{path}: data.columns.{role} is not set; name the {role} column")
    if fmt == "txt" and set(columns) != {"text"}:
        extra = ", ".join(sorted(set(columns) - {"text"}))
        raise DataError(f"{path}: a txt file holds only text, one example per line; "
                        f"it has no columns for: {extra}")


def decode_text(path: Path, encoding: str) -> str:
    """The file's text; a non-decodable byte is reported with its line. A leading BOM is dropped."""
    data = _read_bytes(path)
    try:
        text = data.decode(encoding)
    except LookupError:
        raise DataError(f"{path}: unknown encoding '{encoding}' (data.encoding)") from None
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise DataError(
            f"{path}, line {line}: not valid {encoding} text (byte 0x{data[err.start]:02x} at "
            f"column {column}); convert the file to UTF-8 or set data.encoding") from None
    return text[1:] if text.startswith("\ufeff") else text


def _show(name: str) -> str:
    """``name`` fit for a one-line message: control characters escaped, cut to 80 characters."""
    name = shorten(name, 80)
    return name if name.isprintable() else repr(name)[1:-1]


def listing(names: list[str]) -> str:
    shown = ", ".join(_show(n) for n in names[:_MAX_LISTED])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _MAX_LISTED else "")


def not_found_error(path: Path, role: str, name: str, names: list[str], what: str = "column") -> DataError:
    """The error for a column (or key) name that the file does not have, with a close match."""
    message = f"{path}: {what} '{_show(name)}' (data.columns.{role}) not found; {what}s are: {listing(names)}"
    lowered = {n.lower(): n for n in names}
    match = lowered.get(name.lower()) or next(iter(difflib.get_close_matches(name, names, n=1)), None)
    if match is not None:
        message += f"; did you mean '{_show(match)}'?"
    return DataError(message)


def resolve_columns(path: Path, columns: Mapping[str, Column], names: list[str], where: str) -> list[int]:
    """Column positions for each role, given the file's column ``names`` (header or schema)."""
    stripped = [n.strip() for n in names]
    positions = []
    for role, col in columns.items():
        if isinstance(col, int):
            if col >= len(names):
                listed = "" if names == [str(i) for i in range(len(names))] else f": {listing(names)}"
                raise DataError(f"{path}: column index {col} (data.columns.{role}) is out of range; "
                                f"{where} has {len(names)} columns (0 to {len(names) - 1}){listed}")
            positions.append(col)
        elif col in names:
            positions.append(names.index(col))
        elif col.strip() in stripped:
            positions.append(stripped.index(col.strip()))
        else:
            raise not_found_error(path, role, col, names)
    return positions


# --- csv / tsv -----------------------------------------------------------------------------------

@contextmanager
def large_fields() -> Iterator[None]:
    """Lift the csv module's 128 KiB field limit while reading: long documents are fine."""
    old = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)
    try:
        yield
    finally:
        csv.field_size_limit(old)


def csv_dialect(path: Path, fmt: str, quoting: str, delimiter: str | None) -> tuple[str, int]:
    if quoting not in QUOTING:
        raise DataError(f"{path}: unknown quoting '{quoting}' (data.quoting); use one of {', '.join(QUOTING)}")
    if quoting == "auto":
        quoting = "none" if fmt == "tsv" else "minimal"
    sep = delimiter if delimiter is not None else ("\t" if fmt == "tsv" else ",")
    if not isinstance(sep, str) or len(sep) != 1 or sep in '"\r\n':
        raise DataError(f"{path}: data.delimiter must be one character other than a quote or "
                        f"a line break, got {shown(sep)}")
    return sep, (csv.QUOTE_NONE if quoting == "none" else csv.QUOTE_MINIMAL)


def _csv_rows(path: Path, lines: Iterable[str], sep: str, mode: int) -> Iterator[Row]:
    """(start line, fields) for each non-blank record of ``lines`` (line breaks kept, as a file opened with
    ``newline=""`` gives them); csv errors become DataErrors."""
    reader = csv.reader(lines, delimiter=sep, quoting=mode, strict=True)
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            hint = ("a quoted field that starts here is never closed" if "end of data" in str(err)
                    else f"bad quoting: {err}")
            raise DataError(f"{path}, line {start}: {hint}; if quotes in this file are ordinary "
                            f"characters, set data.quoting: none") from None
        if fields and (len(fields) > 1 or fields[0].strip()):
            yield start, fields


def _read_delimited(path: Path, text: str, fmt: str, columns: Mapping[str, Column], header: bool | None,
                    quoting: str, delimiter: str | None, extra_fields: str = "error") -> list[Row]:
    """Rows of a csv/tsv file, each holding the fields that ``columns`` maps, in role order."""
    rows = list(delimited_rows(path, io.StringIO(text, newline=""), fmt, columns, header, quoting, delimiter,
                               extra_fields))
    if not rows:
        raise DataError(f"{path} has a header but no rows")
    return rows


def delimited_rows(path: Path, lines: Iterable[str], fmt: str, columns: Mapping[str, Column], header: bool | None,
                   quoting: str, delimiter: str | None, extra_fields: str = "error") -> Iterator[Row]:
    """The rows of a csv/tsv text given line by line (``lines``), each holding the fields that ``columns``
    maps, in role order; checked as they come (a header without rows is the caller's to report)."""
    sep, mode = csv_dialect(path, fmt, quoting, delimiter)
    if extra_fields not in EXTRA_FIELDS:
        raise DataError(f"{path}: unknown extra_fields {shown(extra_fields)} (data.extra_fields); "
                        f"use one of {', '.join(EXTRA_FIELDS)}")
    if header is None:
        header = all(isinstance(col, str) for col in columns.values())
    named = [role for role, col in columns.items() if isinstance(col, str)]
    if not header and named:
        raise DataError(f"{path}: data.columns.{named[0]} names a column, but the file is read "
                        f"without a header row; use a 0-based column index or set data.header: true")
    with large_fields():
        records = _csv_rows(path, lines, sep, mode)
        first = next(records, None)
        if first is None:
            raise DataError(f"{path} is empty")
        if header:
            check_header(path, *first)
            positions = resolve_columns(path, columns, first[1], "the header")
        else:
            positions = resolve_columns(path, columns, [str(i) for i in range(len(first[1]))],
                                        f"the first row (line {first[0]})")
            records = itertools.chain([first], records)
        need = max(positions) + 1
        kind = _SEPARATOR_NAMES.get(sep, f"'{sep}'")
        width = len(first[1]) if extra_fields == "error" else None
        where = f"the {'header' if header else 'first row'} (line {first[0]})"
        for line, fields in records:
            if len(fields) < need:
                raise DataError(f"{path}, line {line}: expected at least {need} {kind}-separated "
                                f"fields, found {len(fields)}")
            if width is not None and len(fields) > width:
                raise too_many_fields(path, line, len(fields), f"{where} has {width}", kind, mode)
            yield line, [fields[i] for i in positions]


def check_header(path: Path, line: int, names: list[str]) -> None:
    """Each header name once: a repeated name would make data.columns ambiguous."""
    seen: dict[str, int] = {}
    for position, name in enumerate(n.strip() for n in names):
        if name and name in seen:
            raise DataError(f"{path}, line {line}: the header names column '{_show(name)}' "
                            f"twice (0-based columns {seen[name]} and {position}); rename one of them")
        seen.setdefault(name, position)


def too_many_fields(path: Path, line: int, found: int, expected: str, kind: str, mode: int) -> DataError:
    """A row with more fields than the header: usually an unquoted separator inside a field."""
    quote = ("put that field in double quotes and set data.quoting: minimal" if mode == csv.QUOTE_NONE
             else "put that field in double quotes")
    return DataError(f"{path}, line {line}: {found} {kind}-separated fields, but {expected}; if a field "
                     f"holds a {kind}, {quote}; to drop extra trailing fields, set data.extra_fields: ignore")


# --- txt, jsonl, json, parquet -------------------------------------------------------------------

def _read_txt(path: Path, text: str) -> list[Row]:
    """One example per non-blank line (split on ``\\n`` only; a trailing ``\\r`` is dropped)."""
    rows = [(n, [raw.removesuffix("\r")]) for n, raw in enumerate(text.split("\n"), 1) if raw.strip()]
    if not rows:
        raise DataError(f"{path} is empty")
    return rows


def kind_of(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def read_jsonl_records(path: Path, text: str) -> list[tuple[int, dict]]:
    """(line, object) for each non-blank line."""
    records = [(n, obj) for n, raw in enumerate(text.split("\n"), 1) if (obj := jsonl_object(path, n, raw)) is not None]
    if not records:
        raise DataError(f"{path} is empty")
    return records


def jsonl_object(path: Path, n: int, raw: str) -> dict | None:
    """The object on line ``n`` of a jsonl file (``raw``, without its line break); None for a blank line."""
    if not raw.strip():
        return None
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}, line {n}: invalid JSON ({err.msg} at column {err.colno}); "
                        f"jsonl needs one complete JSON object per line") from None
    except (ValueError, RecursionError) as err:
        raise DataError(f"{path}, line {n}: invalid JSON ({err})") from None
    if not isinstance(obj, dict):
        hint = "; for a file holding one JSON array, set data.format: json" if isinstance(obj, list) else ""
        raise DataError(f"{path}, line {n}: expected a JSON object, found {kind_of(obj)}{hint}")
    return obj


def read_json_records(path: Path, text: str) -> list[tuple[int, dict]]:
    """(item number, object) for each item of the file's top-level array."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        hint = "; for one JSON object per line, set data.format: jsonl" if err.msg == "Extra data" else ""
        raise DataError(f"{path}, line {err.lineno}: invalid JSON ({err.msg} at column {err.colno})"
                        f"{hint}") from None
    except (ValueError, RecursionError) as err:
        raise DataError(f"{path}: invalid JSON ({err})") from None
    if not isinstance(data, list):
        hint = "; for one JSON object per line, set data.format: jsonl" if isinstance(data, dict) else ""
        raise DataError(f"{path}: expected a JSON array of objects, found {kind_of(data)}{hint}")
    if not data:
        raise DataError(f"{path} is empty (the JSON array has no items)")
    for n, obj in enumerate(data, 1):
        if not isinstance(obj, dict):
            raise DataError(f"{path}, item {n}: expected a JSON object, found {kind_of(obj)}")
    return list(enumerate(data, 1))


def _pick_keys(path: Path, fmt: str, records: list[tuple[int, dict]],
               columns: Mapping[str, Column]) -> list[Row]:
    """The values each role maps to; a key that no object has is an error, a key that only some
    objects lack reads as missing in those."""
    keys = list(dict.fromkeys(key for _, obj in records for key in obj))
    for role, col in columns.items():
        if isinstance(col, int):
            raise DataError(f"{path}: data.columns.{role} is {col}, but {fmt} fields are named, "
                            f"not numbered; keys are: {listing(keys)}")
        if col not in keys:
            raise not_found_error(path, role, col, keys, what="key")
    names = list(columns.values())
    return [(n, [obj.get(col, MISSING) for col in names]) for n, obj in records]


def _read_parquet(path: Path, data: Path | io.BytesIO, columns: Mapping[str, Column]) -> list[Row]:
    """Rows of a parquet file (numbered from 1), values as Arrow converts them to Python; ``data`` is
    the file itself, or its bytes when it is a stream."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(data) as source:
            names = list(source.schema_arrow.names)
            positions = resolve_columns(path, columns, names, "the file")
            table = source.read(columns=[names[i] for i in dict.fromkeys(positions)])
    except (pa.ArrowException, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{path}: cannot read as parquet ({first})") from None
    if table.num_rows == 0:
        raise DataError(f"{path} has no rows")
    values = [table.column(names[i]).to_pylist() for i in positions]
    return [(n, list(row)) for n, row in enumerate(zip(*values), 1)]


# --- values and the frame ------------------------------------------------------------------------

def _is_text_role(role: str) -> bool:
    return role == "text" or role.startswith("text_")


def _is_blank(value: Any) -> bool:
    return (value is MISSING or value is None or (isinstance(value, float) and math.isnan(value))
            or (isinstance(value, str) and not value.strip()))


def clean_value(where: tuple[Path, str, int], role: str, column: Column, value: Any, required: bool) -> Any:
    """``value`` of ``role`` checked and converted; ``where`` is (file, "line"/"row"/"item", number)."""
    if _is_blank(value):
        if required:
            detail = f" (the object has no key '{column}')" if value is MISSING else ""
            raise DataError(f"{_at(where)}: empty {role}{detail}")
        return "" if _is_text_role(role) else None
    if role == "label":
        if not isinstance(value, (str, bool, int, float)):
            raise DataError(f"{_at(where)}: label must be a string or a number, found {kind_of(value)}")
        return canonical_label(value)
    if _is_text_role(role):
        if isinstance(value, str):
            return value
        if not isinstance(value, (bool, int, float)):
            raise DataError(f"{_at(where)}: {role} must be a string, found {kind_of(value)}")
        return str(value)
    return value


def _at(where: tuple[Path, str, int]) -> str:
    path, unit, number = where
    return f"{path}, {unit} {number}"


def _build_frame(path: Path, unit: str, rows: list[Row], columns: Mapping[str, Column],
                 required: tuple[str, ...]) -> pd.DataFrame:
    """The frame: one column per role (text roles as ``str``, others as pandas infers) + ``line``."""
    roles, cols = list(columns), list(columns.values())
    flags = [role in required for role in roles]
    values: list[list[Any]] = [[] for _ in roles]
    for line, row in rows:
        for k, value in enumerate(row):
            values[k].append(clean_value((path, unit, line), roles[k], cols[k], value, flags[k]))
    frame = pd.DataFrame({role: pd.Series(vals, dtype=str if _is_text_role(role) else None)
                          for role, vals in zip(roles, values)})
    frame["line"] = np.fromiter((line for line, _ in rows), dtype=np.int64, count=len(rows))
    return frame
