"""From the recipe's `data:` section to train / validation / test tables for the language-model tasks.

causal_lm: documents, one per row of a `text` column (jsonl/json/csv/tsv/parquet), or from a .txt file split
by `lm.text_unit` (blank-line separated paragraphs by default). Validation: a file of its own, a random
`data.validation.split` fraction of the documents (`lm.validation_by: document`), or the last fraction of
the text (`tail`, cut at a document boundary, or at a line break when the file is one document).

sft: conversations, from Alpaca-style columns (instruction, optional input, output, optional system) or a
`messages` column (a list of {role, content}; in csv/tsv a JSON string). With the default columns the
roles are found from the keys of a json/jsonl file. Validation: a file, or a random fraction of the rows.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from tunesmith.data.chat import alpaca_messages, check_messages
from tunesmith.data.readers import check_file, decode_text, read_json_records, read_jsonl_records, infer_format, read_table
from tunesmith.data.split import sample_validation, split_frame
from tunesmith.errors import DataError

SFT_ROLES = ("instruction", "input", "output", "system", "messages")


@dataclass
class LMSplits:
    """causal_lm: tables with columns text, line. sft: messages, line. `sources` names each table's file."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame | None
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def frames(self) -> dict[str, pd.DataFrame]:
        named = {"train": self.train, "validation": self.validation, "test": self.test}
        return {name: frame for name, frame in named.items() if frame is not None}


# --- causal_lm ------------------------------------------------------------------------------------------


def read_documents(spec, path: str, text_unit: str = "paragraph") -> tuple[pd.DataFrame, int]:
    """(frame of non-blank documents with columns text, line; number of blank rows skipped)."""
    path_ = Path(path)
    fmt = infer_format(path_, spec.format)
    if fmt == "txt":
        check_file(path_)
        return _txt_documents(path_, decode_text(path_, spec.encoding), text_unit), 0
    column = spec.columns.get("text")
    if column is None:
        raise DataError(f"{path}: causal_lm reads documents from a text column; set data.columns: {{text: ...}}")
    frame = read_table(path_, columns={"text": column}, required=(), format=fmt, header=spec.header,
                       quoting=spec.quoting, delimiter=spec.delimiter, encoding=spec.encoding,
                       extra_fields=spec.extra_fields)
    blank = frame["text"].str.strip() == ""
    frame = frame[~blank].reset_index(drop=True)
    if frame.empty:
        raise DataError(f"{path}: every text is blank; there is nothing to train on")
    return frame[["text", "line"]], int(blank.sum())


def _txt_documents(path: Path, text: str, unit: str) -> pd.DataFrame:
    text = text.replace("\r\n", "\n")
    if unit == "file":
        docs = [(1, text.strip("\n"))] if text.strip() else []
    elif unit == "line":
        docs = [(n, line) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    else:  # paragraphs: runs of non-blank lines
        docs = []
        for match in re.finditer(r"(?:[^\n]*\S[^\n]*(?:\n|$))+", text):
            docs.append((text.count("\n", 0, match.start()) + 1, match.group().rstrip("\n")))
    if not docs:
        raise DataError(f"{path} holds only blank lines; there is nothing to train on")
    return pd.DataFrame({"text": [d for _, d in docs], "line": [n for n, _ in docs]})


def tail_split(frame: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(head, tail): the tail holds about `fraction` of the characters at the end, in file order. Cut at a
    document boundary; a single document is cut at the first line break after the cut point."""
    texts = frame["text"].tolist()
    lengths = [len(t) for t in texts]
    cut = math.ceil((1 - fraction) * sum(lengths))
    if len(texts) == 1:
        text = texts[0]
        newline = text.find("\n", cut)
        cut = newline + 1 if 0 < newline < len(text) - 1 else cut
        head, tail = text[:cut].rstrip("\n"), text[cut:].lstrip("\n")
        if not head.strip() or not tail.strip():
            raise DataError(f"cannot hold out the last {fraction:g} of a text of {len(text)} characters and "
                            f"keep both parts non-empty; add text or change data.validation.split")
        line = int(frame["line"].iloc[0])
        return (pd.DataFrame({"text": [head], "line": [line]}),
                pd.DataFrame({"text": [tail], "line": [line + text[:cut].count("\n")]}))
    start, k = 0, len(texts) - 1
    for index, length in enumerate(lengths):
        if start >= cut:
            k = index
            break
        start += length
    k = min(max(k, 1), len(texts) - 1)
    return frame.iloc[:k].reset_index(drop=True), frame.iloc[k:].reset_index(drop=True)


def load_document_splits(spec, lm, *, seed: int) -> LMSplits:
    train, blank = read_documents(spec, spec.train, lm.text_unit)
    notes = [f"skipped {blank} blank rows of {spec.train}"] if blank else []
    if spec.drop_duplicates:
        kept = ~train["text"].duplicated()
        if (~kept).sum():
            notes.append(f"dropped {int((~kept).sum())} duplicate documents from {spec.train}")
        train = train[kept].reset_index(drop=True)
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
        train, validation = split_frame(train, spec.validation.split, seed=seed, stratify=False)
        sources["validation"] = f"{spec.train} (held-out {spec.validation.split:g} of the documents)"
    validation, note = sample_validation(validation, spec.validation.max_rows, seed=seed)
    notes += [note] if note else []
    test = None
    if spec.test:
        test, _ = read_documents(spec, spec.test, lm.text_unit)
        sources["test"] = spec.test
    return LMSplits(train, validation, test, sources, notes)


# --- sft ------------------------------------------------------------------------------------------------


def sft_columns(spec, path: str) -> dict:
    """The conversation roles of data.columns; when none is given, found from a json/jsonl file's keys."""
    columns = {role: col for role, col in spec.columns.items() if role in SFT_ROLES}
    if "messages" in columns or {"instruction", "output"} <= set(columns):
        return columns
    fmt = infer_format(Path(path), spec.format)
    keys: list[str] = []
    if fmt in ("json", "jsonl") and Path(path).is_file() and Path(path).stat().st_size:
        text = decode_text(Path(path), spec.encoding)
        records = read_json_records(Path(path), text) if fmt == "json" else read_jsonl_records(Path(path), text)
        keys = list(dict.fromkeys(key for _, obj in records[:100] for key in obj))
    if "messages" in keys:
        return {"messages": "messages"}
    if {"instruction", "output"} <= set(keys):
        return {role: role for role in ("instruction", "input", "output", "system") if role in keys}
    shown = f"; the file's keys are: {', '.join(keys)}" if keys else ""
    raise DataError(f"{path}: sft needs conversation columns: data.columns: {{instruction: ..., input: ..., "
                    f"output: ...}} (Alpaca style) or {{messages: ...}} (chat){shown}")


def read_conversations(spec, path: str, columns: dict) -> pd.DataFrame:
    """Frame with columns messages (a checked list of {role, content}) and line."""
    required = ("messages",) if "messages" in columns else ("instruction", "output")
    if "messages" in columns:
        columns = {"messages": columns["messages"]}
    frame = read_table(Path(path), columns=columns, required=required, format=spec.format, header=spec.header,
                       quoting=spec.quoting, delimiter=spec.delimiter, encoding=spec.encoding,
                       extra_fields=spec.extra_fields)
    unit = frame.attrs.get("line_unit", "line")
    conversations = []
    for row in frame.itertuples(index=False):
        where = f"{path}, {unit} {row.line}"
        if "messages" in columns:
            value = row.messages
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    raise DataError(f"{where}: messages is not a JSON list of {{role, content}} objects") from None
            conversations.append(check_messages(value, where))
        else:
            optional = {role: _value(getattr(row, role)) for role in ("input", "system") if role in frame.columns}
            conversations.append(alpaca_messages(row.instruction, output=row.output, **optional))
    return pd.DataFrame({"messages": conversations, "line": frame["line"].tolist()})


def _value(value):
    """A missing optional value (None, or NaN after pandas) as None."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def load_conversation_splits(spec, *, seed: int) -> tuple[LMSplits, dict]:
    """(splits, the conversation columns used)."""
    columns = sft_columns(spec, spec.train)
    train = read_conversations(spec, spec.train, columns)
    notes: list[str] = []
    if spec.drop_duplicates:
        keys = train["messages"].map(json.dumps)
        kept = ~keys.duplicated()
        if (~kept).sum():
            notes.append(f"dropped {int((~kept).sum())} duplicate conversations from {spec.train}")
        train = train[kept].reset_index(drop=True)
    sources = {"train": spec.train}
    if spec.validation.path:
        validation = read_conversations(spec, spec.validation.path, columns)
        sources["validation"] = spec.validation.path
    else:
        train, validation = split_frame(train, spec.validation.split, seed=seed, stratify=False)
        sources["validation"] = f"{spec.train} (held-out {spec.validation.split:g})"
    validation, note = sample_validation(validation, spec.validation.max_rows, seed=seed)
    notes += [note] if note else []
    test = read_conversations(spec, spec.test, columns) if spec.test else None
    if spec.test:
        sources["test"] = spec.test
    return LMSplits(train, validation, test, sources, notes), columns
