"""Token classification (NER) data: one sentence per row, its words and their tags, read into a frame.

    read_token_file(spec, path)   -> frame: tokens (list[str]), tags (list[str], IOB2), line, repaired
    load_token_splits(spec, ...)  -> TokenSplits: train / validation / test frames, sources, notes, tag_names

Formats (`data.format`; when unset, from the file's suffix):

    conll     a word and its tags per line, whitespace-separated columns (or `data.delimiter`); a blank line
              between sentences; `-DOCSTART-` lines skipped. `data.columns.tokens` is the word's column (default
              0), `data.columns.tags` the tag's (default -1: the last column). Chosen for every suffix that
              is not jsonl/ndjson, json, parquet/pq or csv: .conll, .iob, .bio, .txt, .tsv, and CoNLL's own
              eng.train / eng.testa (whose "suffixes" are .train, .testa).
    jsonl, json, parquet
              one sentence per object/row, with a list of words and a list of tags under the keys
              `data.columns.tokens` / `data.columns.tags` (default "tokens" / "tags").

Tags are read in `data.tag_scheme` and converted to IOB2 (data/tag_schemes.py); a sequence that the scheme
does not allow (IOB2's I-X after O) is repaired to start an entity there and counted in `repaired`, or, with
`token_classification.invalid_sequences: error`, raised. `line` is the 1-based line of a CoNLL sentence's first
word (its k-th word is on line + k), the jsonl line, the JSON array's item or the parquet row
(`frame.attrs["line_unit"]`). Every problem is one DataError naming the file and line.
"""

from __future__ import annotations

import io
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tunesmith.data.prepare import assemble_splits
from tunesmith.data.readers import check_file, decode_text, read_json_records, read_jsonl_records
from tunesmith.data.tag_schemes import EXAMPLES, OUTSIDE, entity_types, first_outside, split_tag, tag_names, to_iob2
from tunesmith.errors import DataError, shorten, shown

TOKEN_FORMATS = ("conll", "jsonl", "json", "parquet")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
_UNITS = {"conll": "line", "jsonl": "line", "json": "item", "parquet": "row"}
_MISSING = object()
DOCSTART = "-DOCSTART-"

Sentence = tuple[int, object, object]  # (line, tokens, tags or _MISSING) as found in the file


def token_format(path: Path, format: str | None) -> str:
    """The file's format for token classification: `format` when given, else by suffix (see the module doc)."""
    if format is not None:
        if format not in TOKEN_FORMATS:
            raise DataError(f"{path}: token_classification reads {', '.join(TOKEN_FORMATS)} files, not "
                            f"{shown(format)} (data.format)")
        return format
    suffix = path.suffix.lower()
    if suffix == ".csv":
        raise DataError(f"{path}: a csv file cannot hold a sentence's words and tags; token_classification reads "
                        f"conll (a word and its tag per line), jsonl, json or parquet: convert it, or set data.format")
    return _SUFFIXES.get(suffix, "conll")


def read_token_file(spec, path, *, require_tags: bool = True, invalid_sequences: str = "repair") -> pd.DataFrame:
    """One file of sentences -> frame with tokens, tags (IOB2; absent when `require_tags` is false and the file has
    none), line, repaired, document (conll: the -DOCSTART- section; else 0); `attrs`: source, line_unit, format. `spec` is the recipe's DataSpec;
    `invalid_sequences` the recipe's token_classification.invalid_sequences ("repair" or "error")."""
    path = Path(path)
    info = check_file(path)
    fmt = token_format(path, spec.format)
    if fmt == "conll":
        text = decode_text(path, spec.encoding)
        sentences = _conll_sentences(path, text, spec, require_tags)
    elif fmt == "parquet":
        sentences = _parquet_sentences(path, info, spec, require_tags)
    else:
        text = decode_text(path, spec.encoding)
        records = read_jsonl_records(path, text) if fmt == "jsonl" else read_json_records(path, text)
        sentences = _record_sentences(path, fmt, records, spec, require_tags)
    if not sentences:
        raise DataError(f"{path} has no sentences (only blank and -DOCSTART- lines)")
    frame = _build(path, fmt, sentences, spec.tag_scheme, invalid_sequences)
    frame["document"] = conll_documents(text, frame["line"]) if fmt == "conll" else 0
    frame.attrs.update(source=str(path), line_unit=_UNITS[fmt], format=fmt)
    return frame


# --- conll ---------------------------------------------------------------------------------------------------------

def conll_documents(text: str, lines) -> np.ndarray:
    """The document of each sentence (by its first line): how many -DOCSTART- lines come before it."""
    starts = [n for n, raw in enumerate(text.split("\n"), 1) if raw.split()[:1] == [DOCSTART]]
    return np.searchsorted(np.asarray(starts, dtype=np.int64), np.asarray(lines, dtype=np.int64))


def conll_columns(path: Path, spec) -> tuple[int, int]:
    """(the word's column, the tag's column) of a CoNLL file; negative indexes count from the line's end."""
    picked = []
    for role, default in (("tokens", 0), ("tags", -1)):
        value = spec.columns.get(role, default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise DataError(f"{path}: data.columns.{role} is {shown(value)}, but conll columns are numbered "
                            f"(0 the first, -1 the last), not named")
        picked.append(value)
    return picked[0], picked[1]


def _conll_sentences(path: Path, text: str, spec, require_tags: bool) -> list[Sentence]:
    token_col, tag_col = conll_columns(path, spec)
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    start, has_tags = 0, None if not require_tags else True
    for n, raw in enumerate(text.split("\n"), 1):
        fields = _fields(raw, spec.delimiter)
        if not fields or fields[0] == DOCSTART:
            if words:
                sentences.append((start, words, tags if has_tags else _MISSING))
            words, tags = [], []
            continue
        width = len(fields)
        token_at = token_col if token_col >= 0 else width + token_col
        tag_at = tag_col if tag_col >= 0 else width + tag_col
        if not 0 <= token_at < width:
            raise DataError(f"{path}, line {n}: no word column {token_col} (data.columns.tokens); the line has "
                            f"{width} column{'s' if width != 1 else ''}")
        found = 0 <= tag_at < width and tag_at != token_at
        if has_tags is None:
            has_tags = found
        if has_tags and not found:
            raise DataError(f"{path}, line {n}: the token {shown(fields[token_at])} has no tag column "
                            f"(data.columns.tags is {tag_col}; the line has {width} column{'s' if width != 1 else ''})")
        if not words:
            start = n
        words.append(fields[token_at])
        if has_tags:
            tags.append(fields[tag_at])
    if words:
        sentences.append((start, words, tags if has_tags else _MISSING))
    return sentences


def _fields(raw: str, delimiter: str | None) -> list[str]:
    """A CoNLL line's columns: split on runs of whitespace, or on `data.delimiter` when it is set."""
    if delimiter is None:
        return raw.split()
    line = raw.removesuffix("\r")
    return [part.strip() for part in line.split(delimiter)] if line.strip() else []


# --- jsonl, json, parquet ------------------------------------------------------------------------------------------

def _key_names(path: Path, fmt: str, spec) -> tuple[str, str]:
    picked = []
    for role in ("tokens", "tags"):
        value = spec.columns.get(role, role)
        if not isinstance(value, str):
            raise DataError(f"{path}: data.columns.{role} is {value}, but {fmt} fields are named, not numbered; "
                            f"name the key holding the list of {role}")
        picked.append(value)
    return picked[0], picked[1]


def _missing_key(path: Path, role: str, name: str, keys: list[str], what: str) -> DataError:
    listed = ", ".join(shorten(str(k), 80) for k in keys[:30])
    listed += f", ... ({len(keys)} in all)" if len(keys) > 30 else ""
    return DataError(f"{path}: {what} {shown(name)} (data.columns.{role}) not found; {what}s are: {listed}")


def _record_sentences(path: Path, fmt: str, records: list[tuple[int, dict]], spec,
                      require_tags: bool) -> list[Sentence]:
    tokens_key, tags_key = _key_names(path, fmt, spec)
    keys = list(dict.fromkeys(key for _, obj in records for key in obj))
    has_tags = _check_keys(path, keys, tokens_key, tags_key, require_tags, "key")
    unit = _UNITS[fmt]
    out = []
    needed = [("tokens", tokens_key)] + ([("tags", tags_key)] if has_tags else [])
    for n, obj in records:
        for role, key in needed:
            if key not in obj:
                raise DataError(f"{path}, {unit} {n}: the object has no key {shown(key)} (data.columns.{role})")
        out.append((n, obj[tokens_key], obj[tags_key] if has_tags else _MISSING))
    return out


def _check_keys(path: Path, keys: list, tokens_key: str, tags_key: str, require_tags: bool, what: str) -> bool:
    """Whether the file has tags; the tokens key (and, when required, the tags key) must be among `keys`."""
    if tokens_key not in keys:
        raise _missing_key(path, "tokens", tokens_key, keys, what)
    if tags_key not in keys and require_tags:
        raise _missing_key(path, "tags", tags_key, keys, what)
    return tags_key in keys


def _parquet_sentences(path: Path, info, spec, require_tags: bool) -> list[Sentence]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tokens_key, tags_key = _key_names(path, "parquet", spec)
    try:
        source = path if stat.S_ISREG(info.st_mode) and info.st_size > 0 else io.BytesIO(path.read_bytes())
        with pq.ParquetFile(source) as parquet:
            names = list(parquet.schema_arrow.names)
            has_tags = _check_keys(path, names, tokens_key, tags_key, require_tags, "column")
            table = parquet.read(columns=[tokens_key, tags_key] if has_tags else [tokens_key])
    except (pa.ArrowException, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{path}: cannot read as parquet ({first})") from None
    tokens = table.column(tokens_key).to_pylist()
    tags = table.column(tags_key).to_pylist() if has_tags else [_MISSING] * len(tokens)
    return [(n, words, row_tags) for n, (words, row_tags) in enumerate(zip(tokens, tags), 1)]


# --- checks and the frame ------------------------------------------------------------------------------------------

def _kind(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _check_sentence(at: str, words: object, tags: object) -> None:
    """A sentence from jsonl/json/parquet: a non-empty list of non-empty strings, and as many tags as words."""
    for role, value in (("tokens", words), ("tags", tags)):
        if value is not _MISSING and not isinstance(value, (list, tuple, np.ndarray)):
            raise DataError(f"{at}: {role} must be a list of strings, found {_kind(value)}"
                            + ("; split the sentence into its words" if isinstance(value, str) else ""))
    if len(words) == 0:
        raise DataError(f"{at}: an empty sentence (tokens is an empty list)")
    for k, word in enumerate(words, 1):
        if not isinstance(word, str):
            raise DataError(f"{at}: token {k} is not a string ({_kind(word)} {shown(word)})")
        if not word.strip():
            raise DataError(f"{at}: token {k} is empty")
    if tags is not _MISSING and len(tags) != len(words):
        raise DataError(f"{at}: {len(words)} tokens but {len(tags)} tags; each token needs one tag")


def _build(path: Path, fmt: str, sentences: list[Sentence], scheme: str, invalid_sequences: str) -> pd.DataFrame:
    unit = _UNITS[fmt]
    has_tags = sentences[0][2] is not _MISSING
    all_words, all_tags, repaired = [], [], []
    for line, words, tags in sentences:
        at = f"{path}, {unit} {line}"
        if fmt != "conll":
            _check_sentence(at, words, tags)

        def token_at(i: int) -> str:
            return f"{path}, line {line + i}" if fmt == "conll" else f"{at} (token {i + 1})"

        all_words.append([str(word) for word in words])
        if not has_tags:
            continue
        tags = list(tags)
        bad = first_outside(tags, scheme)
        if bad is not None:
            raise DataError(f"{token_at(bad)}: tag {shown(tags[bad])} is not a tag of the {scheme} scheme "
                            f"({EXAMPLES[scheme]}); check data.tag_scheme and data.columns.tags")
        iob2, fixed = to_iob2(tags, scheme)
        if fixed and invalid_sequences == "error":
            raise _invalid_sequence(token_at(fixed[0]), tags, fixed[0], scheme)
        all_tags.append(iob2)
        repaired.append(len(fixed))
    frame = pd.DataFrame({"tokens": pd.Series(all_words, dtype=object)})
    if has_tags:
        frame["tags"] = pd.Series(all_tags, dtype=object)
    frame["line"] = np.fromiter((line for line, _, _ in sentences), dtype=np.int64, count=len(sentences))
    frame["repaired"] = np.asarray(repaired if has_tags else [0] * len(sentences), dtype=np.int64)
    return frame


def _invalid_sequence(at: str, tags: list[str], position: int, scheme: str) -> DataError:
    prefix = split_tag(tags[position], scheme)[0]
    after = "at the start of the sentence" if position == 0 else f"after {shown(tags[position - 1])}"
    starts = "B- or S-" if scheme == "bioes" else "B-"
    return DataError(f"{at}: tag {shown(tags[position])} {after} continues no entity (in {scheme} an entity "
                     f"starts with {starts}, not {prefix}-); fix the tag, or set "
                     f"token_classification.invalid_sequences: repair to start an entity there")


# --- splits --------------------------------------------------------------------------------------------------------

@dataclass
class TokenSplits:
    """Frames with tokens, tags (IOB2), line, repaired; `tag_names` the IOB2 label set, O first."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame | None
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    tag_names: list[str] = field(default_factory=list)

    def frames(self) -> dict[str, pd.DataFrame]:
        named = {"train": self.train, "validation": self.validation, "test": self.test}
        return {name: frame for name, frame in named.items() if frame is not None}


def load_token_splits(data_spec, *, seed: int, token_spec=None) -> TokenSplits:
    """The recipe's splits: data.train (duplicate sentences dropped with data.drop_duplicates), data.validation
    (a file, or a seeded random fraction of the training sentences: not stratified), data.test. `token_spec` is
    the recipe's token_classification section (its invalid_sequences; default repair)."""
    mode = token_spec.invalid_sequences if token_spec is not None else "repair"
    split = assemble_splits(data_spec, lambda path: read_token_file(data_spec, path, invalid_sequences=mode),
                            seed=seed, stratify=False)
    frames = split.frames
    train_types = entity_types(tag for tags in frames["train"]["tags"] for tag in tags)
    if not train_types:
        raise DataError(f"{data_spec.train}: the training data has no entity (every tag is {OUTSIDE}): nothing to "
                        f"learn; check data.columns.tags and data.tag_scheme")
    notes, types = list(split.notes), set(train_types)
    for name, frame in frames.items():
        unseen = entity_types(tag for tags in frame["tags"] for tag in tags) - train_types
        if unseen:
            notes.append(f"entity type{'s' if len(unseen) > 1 else ''} {', '.join(sorted(unseen))} in "
                         f"{split.sources[name]} ({name}) never occur{'s' if len(unseen) == 1 else ''} in the "
                         f"training data: the model gets a tag for it but cannot learn it")
            types |= unseen
    return TokenSplits(frames["train"], frames["validation"], frames.get("test"), split.sources, notes,
                       tag_names(types))
