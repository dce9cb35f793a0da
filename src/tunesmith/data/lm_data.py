"""From the recipe's `data:` section to train / validation / test tables for the language-model tasks.

causal_lm: documents, one per row of a `text` column (jsonl/json/csv/tsv/parquet), or from a .txt file split
by `lm.text_unit` (blank-line separated paragraphs by default). Validation: a file of its own, a random
`data.validation.split` fraction of the documents (`lm.validation_by: document`), or the last fraction of
the text (`tail`, cut at a document boundary, or at a line break when the file is one document).

sft: conversations, from Alpaca-style columns (instruction, optional input, output, optional system) or a
`messages` column (a list of {role, content}; in csv/tsv a JSON string). With the default columns the
roles are found from the keys of a json/jsonl file. Validation: a file, or a random fraction of the rows.

Every split is a `DocumentTable` (data/doc_table.py): Arrow files read as a stream, so a corpus larger than
memory is read, checked and split with memory bounded by one record batch. Each split keeps its rows in file
order (a random validation split picks the same rows as `split.split_frame`, and leaves both parts in file
order). Columns: causal_lm `text`, `line`; sft `messages` (the checked conversation as JSON), `line`.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from tunesmith.data.arrow_files import source_fingerprint
from tunesmith.data.chat import alpaca_messages, check_messages
from tunesmith.data.doc_table import DocumentTable, document_table
from tunesmith.data.readers import decode_text, infer_format, jsonl_object, read_json_records
from tunesmith.data.row_stream import iter_rows, text_lines
from tunesmith.data.split import held_out_rows
from tunesmith.errors import DataError

SFT_ROLES = ("instruction", "input", "output", "system", "messages")
# the code that decides what a table holds: part of its key (data/doc_table.py)
READING_MODULES = ("tunesmith.data.readers", "tunesmith.data.row_stream", "tunesmith.data.doc_table",
                   "tunesmith.data.chat", __name__)


def _schema(first: str):
    import pyarrow as pa

    return pa.schema([(first, pa.large_string()), ("line", pa.int64())])


def document_schema():
    return _schema("text")


def conversation_schema():
    return _schema("messages")


def as_table(frame, first: str) -> DocumentTable:
    """`frame` as a DocumentTable: itself, or a pandas frame with a `first` column (text, or messages as lists
    of {role, content}) and an optional `line` column, held in memory."""
    if isinstance(frame, DocumentTable):
        return frame
    values = frame[first].tolist()
    if first == "messages":
        values = [value if isinstance(value, str) else json.dumps(list(value)) for value in values]
    lines = frame["line"].tolist() if "line" in frame.columns else list(range(1, len(frame) + 1))
    return DocumentTable.from_columns({first: values, "line": lines}, _schema(first))


@dataclass
class LMSplits:
    """causal_lm: tables with columns text, line. sft: messages, line. `sources` names each table's file."""

    train: DocumentTable
    validation: DocumentTable
    test: DocumentTable | None
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def frames(self) -> dict[str, DocumentTable]:
        named = {"train": self.train, "validation": self.validation, "test": self.test}
        return {name: frame for name, frame in named.items() if frame is not None}


def _read_settings(spec, fmt: str) -> dict:
    return {"format": fmt, "header": spec.header, "quoting": spec.quoting, "delimiter": spec.delimiter,
            "encoding": spec.encoding, "extra_fields": spec.extra_fields}


def _table(path: Path, settings: dict, schema, rows, spec, info=dict) -> DocumentTable:
    code = source_fingerprint([name for name in READING_MODULES if name in sys.modules])
    return document_table(path, settings, schema, rows, code=code, persistent=spec.cache_tokenized, info=info)


# --- causal_lm ------------------------------------------------------------------------------------------


def read_documents(spec, path: str, text_unit: str = "paragraph") -> tuple[DocumentTable, int]:
    """(table of non-blank documents with columns text, line; number of blank rows skipped)."""
    path_ = Path(path)
    fmt = infer_format(path_, spec.format)
    if fmt == "txt":
        settings = {"kind": "documents", "format": fmt, "text_unit": text_unit, "encoding": spec.encoding}
        rows = lambda: ({"text": text, "line": n} for text, n in txt_documents(path_, spec.encoding, text_unit))  # noqa: E731
        return _table(path_, settings, document_schema(), rows, spec), 0
    column = spec.columns.get("text")
    if column is None:
        raise DataError(f"{path}: causal_lm reads documents from a text column; set data.columns: {{text: ...}}")
    counts = {"blank": 0}

    def rows():
        unit, values = iter_rows(path_, columns={"text": column}, required=(), format=fmt, header=spec.header,
                                 quoting=spec.quoting, delimiter=spec.delimiter, encoding=spec.encoding,
                                 extra_fields=spec.extra_fields)
        counts["unit"] = unit
        kept = 0
        for line, (text,) in values:
            if not text.strip():
                counts["blank"] += 1
                continue
            kept += 1
            yield {"text": text, "line": line}
        if not kept:
            raise DataError(f"{path}: every text is blank; there is nothing to train on")

    settings = {"kind": "documents", "column": column, **_read_settings(spec, fmt)}
    table = _table(path_, settings, document_schema(), rows, spec, info=lambda: counts)
    return table, int(table.info.get("blank", 0))


def txt_documents(path: Path, encoding: str, unit: str):
    """(document, first line) for each document of a .txt file: runs of non-blank lines (paragraph), single
    non-blank lines (line), or the whole text (file); a line break is \\n (\\r\\n read as \\n)."""
    found = False
    if unit == "file":
        text = decode_text(path, encoding).replace("\r\n", "\n")
        if text.strip():
            found = True
            yield text.strip("\n"), 1
    else:
        lines: list[str] = []
        start = 0
        for n, line, ended in text_lines(path, encoding):
            if ended and line.endswith("\r"):
                line = line[:-1]
            if unit == "line":
                if line.strip():
                    found = True
                    yield line, n
            elif line.strip():
                start = start if lines else n
                lines.append(line)
            elif lines:
                found = True
                yield "\n".join(lines), start
                lines = []
        if lines:
            found = True
            yield "\n".join(lines), start
    if not found:
        raise DataError(f"{path} holds only blank lines; there is nothing to train on")


def tail_split(table: DocumentTable, fraction: float) -> tuple[DocumentTable, DocumentTable]:
    """(head, tail): the tail holds about `fraction` of the characters at the end, in file order. Cut at a
    document boundary; a single document is cut at the first line break after the cut point."""
    lengths = table.char_lengths("text")
    cut = math.ceil((1 - fraction) * int(lengths.sum()))
    if len(table) == 1:
        return _cut_document(table, cut, fraction)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    after = np.nonzero(starts >= cut)[0]
    k = int(after[0]) if len(after) else len(table) - 1
    k = min(max(k, 1), len(table) - 1)
    return table.select(np.arange(k)), table.select(np.arange(k, len(table)))


def _cut_document(table: DocumentTable, cut: int, fraction: float) -> tuple[DocumentTable, DocumentTable]:
    text, line = table.column("text")[0], int(table.column("line")[0])
    newline = text.find("\n", cut)
    cut = newline + 1 if 0 < newline < len(text) - 1 else cut
    head, tail = text[:cut].rstrip("\n"), text[cut:].lstrip("\n")
    if not head.strip() or not tail.strip():
        raise DataError(f"cannot hold out the last {fraction:g} of a text of {len(text)} characters and "
                        f"keep both parts non-empty; add text or change data.validation.split")
    schema = document_schema()
    return (DocumentTable.from_columns({"text": [head], "line": [line]}, schema),
            DocumentTable.from_columns({"text": [tail], "line": [line + text[:cut].count("\n")]}, schema))


def load_document_splits(spec, lm, *, seed: int) -> LMSplits:
    train, blank = read_documents(spec, spec.train, lm.text_unit)
    notes = [f"skipped {blank} blank rows of {spec.train}"] if blank else []
    if spec.drop_duplicates:
        train, dropped = _without_duplicates(train, "text")
        if dropped:
            notes.append(f"dropped {dropped} duplicate documents from {spec.train}")
    sources = {"train": spec.train}
    if spec.validation.path:
        validation, blank = read_documents(spec, spec.validation.path, lm.text_unit)
        sources["validation"] = spec.validation.path
    elif lm.validation_by == "tail":
        train, validation = tail_split(train, spec.validation.split)
        sources["validation"] = f"{spec.train} (last {spec.validation.split:g} of the text)"
    else:
        if len(train) < 2:
            raise DataError(f"{spec.train} holds one document, so no documents can be held out for validation; "
                            f"set lm.validation_by: tail (or lm.text_unit), or give data.validation a file")
        train, validation = _held_out(train, spec.validation.split, seed)
        sources["validation"] = f"{spec.train} (held-out {spec.validation.split:g} of the documents)"
    validation, note = sample_table(validation, spec.validation.max_rows, seed)
    notes += [note] if note else []
    test = None
    if spec.test:
        test, _ = read_documents(spec, spec.test, lm.text_unit)
        sources["test"] = spec.test
    return LMSplits(train, validation, test, sources, notes)


def _without_duplicates(table: DocumentTable, column: str) -> tuple[DocumentTable, int]:
    """The table without rows whose `column` repeats an earlier row's (the first one is kept)."""
    first = table.first_occurrences(column)
    return (table.select(first), len(table) - len(first)) if len(first) < len(table) else (table, 0)


def sample_table(table: DocumentTable, max_rows: int | None, seed: int) -> tuple[DocumentTable, str | None]:
    """``data.validation.max_rows``: a seeded random sample of at most ``max_rows`` rows (in their order) and a
    note saying so; the table itself, and no note, when it is no larger."""
    if max_rows is None or len(table) <= max_rows:
        return table, None
    rows = np.sort(np.random.default_rng(seed).choice(len(table), size=max_rows, replace=False))
    return table.select(rows), (f"validation: a random sample of {max_rows} of its {len(table)} rows "
                                f"(data.validation.max_rows, seed {seed})")


def _held_out(table: DocumentTable, fraction: float, seed: int) -> tuple[DocumentTable, DocumentTable]:
    train_rows, held_rows = held_out_rows(len(table), fraction, seed=seed)
    return table.select(train_rows), table.select(held_rows)


# --- sft ------------------------------------------------------------------------------------------------


def sft_columns(spec, path: str) -> dict:
    """The conversation roles of data.columns; when none is given, found from a json/jsonl file's keys (its
    first 100 objects)."""
    columns = {role: col for role, col in spec.columns.items() if role in SFT_ROLES}
    if "messages" in columns or {"instruction", "output"} <= set(columns):
        return columns
    path_ = Path(path)
    fmt = infer_format(path_, spec.format)
    keys: list[str] = []
    if fmt in ("json", "jsonl") and path_.is_file() and path_.stat().st_size:
        if fmt == "json":
            records = read_json_records(path_, decode_text(path_, spec.encoding))[:100]
        else:
            objects = (jsonl_object(path_, n, text) for n, text, _ in text_lines(path_, spec.encoding))
            records = list(islice(((None, obj) for obj in objects if obj is not None), 100))
        keys = list(dict.fromkeys(key for _, obj in records for key in obj))
    if "messages" in keys:
        return {"messages": "messages"}
    if {"instruction", "output"} <= set(keys):
        return {role: role for role in ("instruction", "input", "output", "system") if role in keys}
    shown = f"; the file's keys are: {', '.join(keys)}" if keys else ""
    raise DataError(f"{path}: sft needs conversation columns: data.columns: {{instruction: ..., input: ..., "
                    f"output: ...}} (Alpaca style) or {{messages: ...}} (chat){shown}")


def read_conversations(spec, path: str, columns: dict) -> DocumentTable:
    """Table with columns messages (a checked list of {role, content}, as JSON) and line."""
    required = ("messages",) if "messages" in columns else ("instruction", "output")
    if "messages" in columns:
        columns = {"messages": columns["messages"]}
    path_ = Path(path)
    fmt = infer_format(path_, spec.format)
    counts: dict = {}

    def rows():
        unit, values = iter_rows(path_, columns=columns, required=required, format=fmt, header=spec.header,
                                 quoting=spec.quoting, delimiter=spec.delimiter, encoding=spec.encoding,
                                 extra_fields=spec.extra_fields)
        counts["unit"] = unit
        roles = list(columns)
        for line, values_ in values:
            row = dict(zip(roles, values_))
            yield {"messages": json.dumps(conversation(row, f"{path}, {unit} {line}")), "line": line}

    settings = {"kind": "conversations", "columns": columns, **_read_settings(spec, fmt)}
    return _table(path_, settings, conversation_schema(), rows, spec, info=lambda: counts)


def conversation(row: dict, where: str) -> list[dict]:
    """The checked messages of one row: its `messages` value (a list, or a JSON string of one), or the
    Alpaca roles (instruction, output, optional input and system) as one user and one assistant turn."""
    if "messages" in row:
        value = row["messages"]
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise DataError(f"{where}: messages is not a JSON list of {{role, content}} objects") from None
        return check_messages(value, where)
    optional = {role: row[role] for role in ("input", "system") if role in row}
    return alpaca_messages(row["instruction"], output=row["output"], **optional)


def load_conversation_splits(spec, *, seed: int) -> tuple[LMSplits, dict]:
    """(splits, the conversation columns used)."""
    columns = sft_columns(spec, spec.train)
    train = read_conversations(spec, spec.train, columns)
    notes: list[str] = []
    if spec.drop_duplicates:
        train, dropped = _without_duplicates(train, "messages")
        if dropped:
            notes.append(f"dropped {dropped} duplicate conversations from {spec.train}")
    sources = {"train": spec.train}
    if spec.validation.path:
        validation = read_conversations(spec, spec.validation.path, columns)
        sources["validation"] = spec.validation.path
    else:
        train, validation = _held_out(train, spec.validation.split, seed)
        sources["validation"] = f"{spec.train} (held-out {spec.validation.split:g})"
    validation, note = sample_table(validation, spec.validation.max_rows, seed)
    notes += [note] if note else []
    test = read_conversations(spec, spec.test, columns) if spec.test else None
    if spec.test:
        sources["test"] = spec.test
    return LMSplits(train, validation, test, sources, notes), columns
