"""From the recipe's `data:` section to train / validation / test tables of preference pairs (task: dpo).

Every table has the columns
    prompt    the conversation before the final assistant reply: a list of {role, content} messages that may
              start with a system message and ends with a user turn
    chosen    the preferred final assistant reply (str)
    rejected  the other final assistant reply (str)
    line      where the row is in its file (1-based line for jsonl/csv/tsv, item for a JSON array, row for parquet)

Columns: the roles prompt / chosen / rejected of `data.columns`. When data.columns maps none of them the
columns are named `chosen` and `rejected`, plus `prompt` when the file has such a column (or key). When it maps
chosen and rejected but not prompt, there is no prompt column: each side is a whole dialogue (format c below).

Formats, told apart row by row from the values:
    a. prompt, chosen, rejected strings: prompt becomes [{"role": "user", "content": prompt}].
    b. TRL's conversational format: prompt a list of messages, chosen / rejected lists of messages (usually one
       assistant message each). Each side's dialogue is prompt + that list; its final message must be an
       assistant message, whose content is the reply. (A string prompt with message-list sides works too.)
    c. no prompt column: chosen and rejected are each a whole dialogue, a list of messages or Anthropic HH text
       "\\n\\nHuman: ...\\n\\nAssistant: ..." (turns split at "\\n\\nHuman: " / "\\n\\nAssistant: ", so a turn may
       hold newlines and blank lines; each turn's text is stripped of surrounding whitespace; non-blank text
       before the first turn becomes a system message).
    In every format the prompt is what comes before each side's final assistant turn, and it must be the same on
    both sides. jsonl / json / parquet (and their .gz) hold strings or lists; csv / tsv hold strings, and a cell
    that is a JSON list of objects is read as messages (as sft reads a messages cell).

Bad pairs (findings, `preference.invalid_pairs`): `prompt_mismatch` (the sides differ before the final reply),
`empty_reply` (a blank, null or absent chosen or rejected), `identical_replies` (the same reply on both sides,
ignoring surrounding whitespace). One code per row, in that order. `drop` (default): dropped, counted in the
findings and in a note naming the file, the count per code and the first line numbers; `error`: a DataError
naming the file and line. A malformed row (not a dialogue, no final assistant turn, a prompt that does not end
with a user turn, a non-string reply or message) is always a DataError naming the file and line.

Validation: `data.validation` a file, or a seeded random fraction of the (kept) training pairs; stratify does
not apply (pairs are not classes). `data.test`: a file. `data.drop_duplicates` drops repeated training pairs.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tunesmith.data.chat import message_list
from tunesmith.data.findings import Finding, FindingsReport
from tunesmith.data.readers import (check_file, decode_text, infer_format, is_gzip, read_json_records,
                                    read_jsonl_records, read_table)
from tunesmith.data.split import sample_validation, split_frame
from tunesmith.errors import DataError

PREFERENCE_ROLES = ("prompt", "chosen", "rejected")
PAIR_FINDINGS = ("prompt_mismatch", "empty_reply", "identical_replies")
MAX_LINES_SHOWN = 5  # line numbers named in a note or a finding

_PROBLEMS = {
    "prompt_mismatch": "chosen and rejected do not share a prompt (they differ before the final reply)",
    "empty_reply": "the chosen or the rejected reply is empty",
    "identical_replies": "chosen and rejected are the same reply, so there is no preference to learn",
}
_HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ \t]?")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}


@dataclass
class PairFindings(FindingsReport):
    """The bad pairs found while reading (see the module docstring), one finding per code, over all files."""

    findings: list[Finding] = field(default_factory=list)


@dataclass
class PreferenceSplits:
    """Tables with columns prompt, chosen, rejected, line; `sources` names each table's file."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame | None
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    findings: PairFindings = field(default_factory=PairFindings)

    def frames(self) -> dict[str, pd.DataFrame]:
        named = {"train": self.train, "validation": self.validation, "test": self.test}
        return {name: frame for name, frame in named.items() if frame is not None}


# --- columns ---------------------------------------------------------------------------------------------


def file_columns(spec, path: str) -> list[str]:
    """The column names (keys) of a data file: a csv/tsv header, json/jsonl keys, a parquet schema."""
    path_ = Path(path)
    fmt = infer_format(path_, spec.format)
    check_file(path_)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            source = io.BytesIO(gzip.decompress(path_.read_bytes())) if is_gzip(path_) else path_
            return list(pq.read_schema(source).names)
        except Exception:  # not (gzipped) parquet: read_table says so, naming the file
            return []
    if fmt not in ("csv", "tsv", "json", "jsonl") or spec.header is False:
        return []
    text = decode_text(path_, spec.encoding)
    if fmt in ("csv", "tsv"):
        delimiter = spec.delimiter or ("\t" if fmt == "tsv" else ",")
        first = next((row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if row), [])
        return [name.strip() for name in first]
    records = read_jsonl_records(path_, text) if fmt == "jsonl" else read_json_records(path_, text)
    return list(dict.fromkeys(key for _, obj in records for key in obj))


def preference_columns(spec, path: str) -> dict:
    """role -> column for the pairs: data.columns' prompt/chosen/rejected, else the default names."""
    columns = {role: col for role, col in spec.columns.items() if role in PREFERENCE_ROLES}
    if columns:
        return columns
    columns = {"chosen": "chosen", "rejected": "rejected"}
    if "prompt" in file_columns(spec, path):
        columns = {"prompt": "prompt", **columns}
    return columns


# --- one row ---------------------------------------------------------------------------------------------


def _messages(value: Any, where: str, what: str) -> list[dict]:
    """`value` as a non-empty list of {role, content} messages with known roles and string contents."""
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: {what} must be a string or a non-empty list of {{role, content}} messages")
    return message_list(value, f"{where}: {what} message")


def hh_messages(text: str, where: str, what: str) -> list[dict]:
    """Anthropic HH text "\\n\\nHuman: ...\\n\\nAssistant: ..." as messages (see the module docstring)."""
    marks = list(_HH_TURN.finditer(text))
    if not marks:
        raise DataError(f"{where}: {what} is a plain string, but with no prompt column each side must be a "
                        f"whole dialogue (a list of messages, or '\\n\\nHuman: ...\\n\\nAssistant: ...' text); "
                        f"map data.columns.prompt if the file has one")
    messages = []
    if text[:marks[0].start()].strip():
        messages.append({"role": "system", "content": text[:marks[0].start()].strip()})
    for mark, after in zip(marks, marks[1:] + [None]):
        end = after.start() if after is not None else len(text)
        messages.append({"role": _HH_ROLES[mark.group(1)], "content": text[mark.end():end].strip()})
    return messages


def _maybe_json(value: Any, fmt: str) -> Any:
    """csv/tsv: a cell holding a JSON list of objects is messages; anything else is kept as it is."""
    if fmt in ("csv", "tsv") and isinstance(value, str) and value.lstrip().startswith("["):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return value
        if isinstance(parsed, list) and parsed and all(isinstance(m, dict) for m in parsed):
            return parsed
    return value


def _blank(value: Any) -> bool:
    """None, NaN (a missing value after pandas) or whitespace only."""
    return value is None or (isinstance(value, float) and value != value) or (
        isinstance(value, str) and not value.strip())


def _side(prompt: list[dict] | None, value: Any, where: str, what: str) -> list[dict] | str | None:
    """One side as a dialogue ending with the reply; a plain string reply (with a prompt) as that string;
    None for a blank reply."""
    if _blank(value):
        return None
    if isinstance(value, str):
        return value if prompt is not None else hh_messages(value, where, what)
    if not isinstance(value, list):
        raise DataError(f"{where}: {what} must be a string or a list of {{role, content}} messages, "
                        f"found {type(value).__name__}")
    messages = (prompt or []) + _messages(value, where, what)
    if messages[-1]["role"] != "assistant":
        raise DataError(f"{where}: {what} does not end with an assistant message (the reply)")
    return messages


def _prompt(value: Any, where: str) -> list[dict]:
    if isinstance(value, str) and value.strip():
        return [{"role": "user", "content": value}]
    if _blank(value):
        raise DataError(f"{where}: the prompt is empty")
    return _messages(value, where, "prompt")


def _last_turn(messages: list[dict]) -> str:
    if not messages:
        return "nothing"
    role = messages[-1]["role"]
    return f"{'an' if role == 'assistant' else 'a'} {role} turn"


def parse_pair(values: dict, where: str, fmt: str) -> tuple[str | None, list[dict], str, str]:
    """(finding code or None, prompt, chosen, rejected) of one row; malformed rows raise DataError."""
    prompt = _prompt(_maybe_json(values["prompt"], fmt), where) if "prompt" in values else None
    sides = [_side(prompt, _maybe_json(values[what], fmt), where, what) for what in ("chosen", "rejected")]
    if any(side is None for side in sides):
        return "empty_reply", prompt or [], "", ""
    dialogues = [side if isinstance(side, list) else prompt + [{"role": "assistant", "content": side}]
                 for side in sides]
    for dialogue, what in zip(dialogues, ("chosen", "rejected")):
        if dialogue[-1]["role"] != "assistant":
            raise DataError(f"{where}: {what} does not end with an assistant turn (the reply)")
    before, replies = [d[:-1] for d in dialogues], [d[-1]["content"] for d in dialogues]
    if before[0] != before[1]:
        return "prompt_mismatch", before[0], replies[0], replies[1]
    if not before[0] or before[0][-1]["role"] != "user":
        raise DataError(f"{where}: the turn before the final reply must be a user turn (the prompt ends "
                        f"with {_last_turn(before[0])})")
    if any(not reply.strip() for reply in replies):
        return "empty_reply", before[0], replies[0], replies[1]
    if replies[0].strip() == replies[1].strip():
        return "identical_replies", before[0], replies[0], replies[1]
    return None, before[0], replies[0], replies[1]


# --- one file --------------------------------------------------------------------------------------------


def read_pairs(spec, path: str, columns: dict, invalid_pairs: str = "drop") -> tuple[pd.DataFrame, dict]:
    """(frame of the valid pairs, {code: [lines]} of the dropped ones). invalid_pairs "error": the first
    invalid pair raises a DataError naming the file and line."""
    fmt = infer_format(Path(path), spec.format)
    frame = read_table(Path(path), columns=columns, required=(), format=spec.format, header=spec.header,
                       quoting=spec.quoting, delimiter=spec.delimiter, encoding=spec.encoding,
                       extra_fields=spec.extra_fields)
    unit = frame.attrs.get("line_unit", "line")
    kept: dict[str, list] = {"prompt": [], "chosen": [], "rejected": [], "line": []}
    dropped: dict[str, list[int]] = {}
    roles = [role for role in PREFERENCE_ROLES if role in columns]
    for values in frame[roles + ["line"]].to_dict("records"):
        line = int(values["line"])
        code, prompt, chosen, rejected = parse_pair(values, f"{path}, {unit} {line}", fmt)
        if code is not None:
            if invalid_pairs == "error":
                raise DataError(f"{path}, {unit} {line}: {_PROBLEMS[code]}; fix the row, or set "
                                f"preference.invalid_pairs: drop")
            dropped.setdefault(code, []).append(line)
            continue
        for key, value in (("prompt", prompt), ("chosen", chosen), ("rejected", rejected), ("line", line)):
            kept[key].append(value)
    if not kept["line"]:
        counts = ", ".join(f"{len(lines)} {code}" for code, lines in dropped.items())
        raise DataError(f"{path}: no valid pairs left: all {len(frame)} pairs were dropped ({counts}); "
                        f"see preference.invalid_pairs")
    out = pd.DataFrame(kept)
    out.attrs["line_unit"] = unit
    return out, dropped


def _listed(lines: list, unit: str = "line") -> str:
    """"line 7" / "lines 7, 9": the first MAX_LINES_SHOWN line numbers, then ", ..." when there are more."""
    return f"{unit}{'s' if len(lines) > 1 else ''} " + ", ".join(str(n) for n in lines[:MAX_LINES_SHOWN]) + (", ..." if len(lines) > MAX_LINES_SHOWN else "")


def drop_note(path: str, total: int, dropped: dict, unit: str = "line") -> str:
    """e.g. "dropped 5 of 2312 pairs of f.jsonl: 5 prompt_mismatch (lines 1255, 1689, ...)"."""
    parts = [f"{len(lines)} {code} ({_listed(lines, unit)})" for code, lines in dropped.items()]
    count = sum(len(lines) for lines in dropped.values())
    return f"dropped {count} of {total} pairs of {path}: {'; '.join(parts)}"


def _add_findings(findings: PairFindings, places: dict, path: str, dropped: dict, unit: str = "line") -> None:
    """One warning per code over all files; examples: {file, line} of the first pairs of each file.
    `places` (code -> ["<file> lines ..."]) collects the files named in each message."""
    for code, lines in dropped.items():
        finding = findings.by_code(code)
        if finding is None:
            finding = Finding(code, "warning", "", 0, [])
            findings.findings.append(finding)
        finding.count += len(lines)
        finding.examples += [{"file": path, "line": n} for n in lines[:MAX_LINES_SHOWN]]
        places.setdefault(code, []).append(f"{path} {_listed(lines, unit)}")
        finding.message = f"{finding.count} pair{'s' if finding.count > 1 else ''} dropped: {_PROBLEMS[code]} ({'; '.join(places[code])})"


# --- the splits ------------------------------------------------------------------------------------------


def load_preference_splits(data_spec, preference_spec, *, seed: int) -> tuple[PreferenceSplits, dict]:
    """(splits, the columns used: role -> column). See the module docstring."""
    columns = preference_columns(data_spec, data_spec.train)
    invalid = getattr(preference_spec, "invalid_pairs", "drop")
    splits = PreferenceSplits(pd.DataFrame(), pd.DataFrame(), None)
    places: dict[str, list[str]] = {}

    def read(path: str) -> pd.DataFrame:
        frame, dropped = read_pairs(data_spec, path, columns, invalid)
        if dropped:
            total = len(frame) + sum(len(lines) for lines in dropped.values())
            splits.notes.append(drop_note(path, total, dropped, frame.attrs.get("line_unit", "line")))
            _add_findings(splits.findings, places, path, dropped, frame.attrs.get("line_unit", "line"))
        return frame

    train = read(data_spec.train)
    if data_spec.drop_duplicates:
        keys = train[["prompt", "chosen", "rejected"]].apply(lambda row: json.dumps(list(row)), axis=1)
        repeated = int(keys.duplicated().sum())
        if repeated:
            splits.notes.append(f"dropped {repeated} duplicate pairs from {data_spec.train}")
        train = train[~keys.duplicated()].reset_index(drop=True)
    splits.sources["train"] = data_spec.train
    if data_spec.validation.path:
        splits.validation = read(data_spec.validation.path)
        splits.sources["validation"] = data_spec.validation.path
    else:
        train, splits.validation = split_frame(train, data_spec.validation.split, seed=seed, stratify=False)
        splits.sources["validation"] = f"{data_spec.train} (held-out {data_spec.validation.split:g})"
    splits.validation, note = sample_validation(splits.validation, data_spec.validation.max_rows, seed=seed)
    splits.notes += [note] if note else []
    splits.train = train
    if data_spec.test:
        splits.test = read(data_spec.test)
        splits.sources["test"] = data_spec.test
    return splits, columns
