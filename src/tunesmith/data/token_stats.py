"""What `inspect` shows about token classification (NER) data, per split and across splits:

    tags, entities    counts of each IOB2 tag and each entity type per split
    lengths           sentence length in words and, with a tokenizer, in sub-tokens (special tokens included), with
                      how many sentences exceed max_length (they are cut into overlapping windows, not truncated)

Findings (each with a severity, a count and a few examples naming the file and line):

| code               | what                                                                                    |
|--------------------|-----------------------------------------------------------------------------------------|
| repaired_sequences | sentences whose tags broke the scheme (an I- continuing no entity), repaired (info;     |
|                    | warning from 1% of a split's sentences)                                                 |
| missing_type       | a training entity type with no entity in validation or test (warning)                   |
| unseen_type        | an entity type of validation or test that training never shows (warning)                |
| duplicates         | sentences repeating an earlier training sentence word for word (info)                   |
| leakage            | validation/test sentences word for word in train (test: or validation) (warning from    |
|                    | 1% of the split, else info)                                                             |
| long_sentences     | sentences longer than max_length sub-tokens: windowed with token_classification.stride  |
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tunesmith.data.findings import Finding, FindingsReport
from tunesmith.data.tag_schemes import OUTSIDE, entity_spans

EXAMPLES = 5  # examples listed per finding
WARN_SHARE = 0.01  # repaired sentences or leaked sentences from this share of a split: a warning


@dataclass
class TokenInspection(FindingsReport):
    """`tunesmith inspect` of a token_classification recipe (see the module doc)."""

    sources: dict
    rows: dict  # split -> sentences
    words: dict  # split -> words
    tags: dict  # split -> {IOB2 tag: count}
    entities: dict  # split -> {entity type: count}
    lengths: dict  # split -> {"words": stats, "subtokens": stats with over_max_length, or None}
    max_length: int | None
    findings: list[Finding]
    notes: list[str] = field(default_factory=list)


def inspect_token_splits(splits, tokenizer=None, max_length: int | None = None) -> TokenInspection:
    """The report on a TokenSplits (data/token_data.py); `tokenizer` (a fast Hugging Face tokenizer) adds sub-token
    lengths, `max_length` (train.max_length) the count of sentences that will be windowed."""
    frames = splits.frames()
    tags = {split: _tag_counts(frame) for split, frame in frames.items()}
    entities = {split: _entity_counts(frame) for split, frame in frames.items()}
    lengths, long_finding = _lengths(frames, tokenizer, max_length)
    findings = [*_repaired(frames), *_type_gaps(entities, splits.sources), *_repeats(frames)]
    if long_finding is not None:
        findings.append(long_finding)
    return TokenInspection(
        sources=dict(splits.sources), rows={split: len(frame) for split, frame in frames.items()},
        words={split: int(frame["tokens"].map(len).sum()) for split, frame in frames.items()},
        tags=tags, entities=entities, lengths=lengths, max_length=max_length, findings=findings,
        notes=list(splits.notes))


def where(frame: pd.DataFrame, position: int) -> str:
    """file:line of a frame's row (`item n` / `row n` for json and parquet)."""
    source, unit = frame.attrs.get("source", "data"), frame.attrs.get("line_unit", "line")
    line = int(frame["line"].iloc[position])
    return f"{source}:{line}" if unit == "line" else f"{source}, {unit} {line}"


def _sentence(frame: pd.DataFrame, position: int, limit: int = 80) -> str:
    text = " ".join(frame["tokens"].iloc[position])
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tag_counts(frame: pd.DataFrame) -> dict[str, int]:
    counts = Counter(tag for tags in frame["tags"] for tag in tags)
    return {tag: counts[tag] for tag in sorted(counts, key=lambda t: (t != OUTSIDE, t[2:], t))}


def _entity_counts(frame: pd.DataFrame) -> dict[str, int]:
    counts = Counter(kind for tags in frame["tags"] for kind, _, _ in entity_spans(tags))
    return dict(sorted(counts.items()))


def _example(split: str, frame: pd.DataFrame, position: int) -> dict:
    return {"split": split, "where": where(frame, position), "text": _sentence(frame, position)}


def _repaired(frames: dict[str, pd.DataFrame]) -> list[Finding]:
    total, sentences, parts, shown, worst = 0, 0, [], [], 0.0
    for split, frame in frames.items():
        rows = np.flatnonzero(frame["repaired"].to_numpy() > 0)
        if not len(rows):
            continue
        total += int(frame["repaired"].sum())
        sentences += len(rows)
        worst = max(worst, len(rows) / len(frame))
        parts.append(f"{split} {len(rows)} of {len(frame)}")
        shown += [_example(split, frame, int(i)) for i in rows[:EXAMPLES]]
    if not total:
        return []
    message = (f"{total} tags in {sentences} sentences broke the tag scheme (an I- tag that continues no entity) and "
               f"were repaired to start an entity ({'; '.join(parts)}); if the files are IOB1 (CoNLL-2003: entities "
               f"start with I-), set data.tag_scheme: iob1")
    return [Finding("repaired_sequences", "warning" if worst >= WARN_SHARE else "info", message, total,
                         shown[:EXAMPLES])]


def _type_gaps(entities: dict[str, dict], sources: dict) -> list[Finding]:
    found = []
    train = set(entities.get("train", {}))
    for split, counts in entities.items():
        if split == "train":
            continue
        missing, unseen = sorted(train - set(counts)), sorted(set(counts) - train)
        if missing:
            found.append(Finding(
                "missing_type", "warning", f"{split} ({sources.get(split, split)}) has no entity of type "
                f"{', '.join(missing)}: its scores there are undefined (0)", len(missing)))
        if unseen:
            found.append(Finding(
                "unseen_type", "warning", f"{split} ({sources.get(split, split)}) has entities of type "
                f"{', '.join(unseen)} ({sum(counts[t] for t in unseen)} in all) that the training data never shows: "
                f"the model cannot learn them", sum(counts[t] for t in unseen)))
    return found


def _repeats(frames: dict[str, pd.DataFrame]) -> list[Finding]:
    keys = {split: frame["tokens"].map(tuple) for split, frame in frames.items()}
    found = []
    repeated = np.flatnonzero(keys["train"].duplicated().to_numpy())
    if len(repeated):
        found.append(Finding(
            "duplicates", "info", f"{len(repeated)} training sentences repeat an earlier training sentence word for "
            f"word (data.drop_duplicates: true removes them before a validation split)", len(repeated),
            [_example("train", frames["train"], int(i)) for i in repeated[:EXAMPLES]]))
    order = list(frames)
    for index, split in enumerate(order[1:], 1):
        earlier = set().union(*(set(keys[other]) for other in order[:index]))
        leaked = np.flatnonzero(keys[split].isin(earlier).to_numpy())
        if not len(leaked):
            continue
        share = len(leaked) / len(frames[split])
        found.append(Finding(
            "leakage", "warning" if share >= WARN_SHARE else "info",
            f"{len(leaked)} of {len(frames[split])} {split} sentences ({share:.1%}) are word for word in "
            f"{' or '.join(order[:index])}: their scores measure memory, not generalisation", len(leaked),
            [_example(split, frames[split], int(i)) for i in leaked[:EXAMPLES]]))
    return found


def _stats(lengths: np.ndarray) -> dict:
    return {"min": int(lengths.min()), "mean": round(float(lengths.mean()), 1),
            **{f"p{q}": int(np.percentile(lengths, q)) for q in (50, 90, 99)}, "max": int(lengths.max())}


def subtoken_lengths(tokenizer, frame: pd.DataFrame, chunk: int = 1024) -> np.ndarray:
    """Sub-tokens of each sentence (special tokens included, nothing truncated), the words given as split."""
    words = [list(tokens) for tokens in frame["tokens"]]
    out = []
    for start in range(0, len(words), chunk):
        encoded = tokenizer(words[start:start + chunk], is_split_into_words=True, truncation=False, padding=False,
                            add_special_tokens=True)
        out.extend(len(ids) for ids in encoded["input_ids"])
    return np.asarray(out, dtype=np.int64)


def _lengths(frames: dict[str, pd.DataFrame], tokenizer, max_length: int | None) -> tuple[dict, Finding | None]:
    lengths, parts, shown, total = {}, [], [], 0
    for split, frame in frames.items():
        entry = {"words": _stats(frame["tokens"].map(len).to_numpy()), "subtokens": None}
        if tokenizer is not None:
            sub = subtoken_lengths(tokenizer, frame)
            entry["subtokens"] = _stats(sub)
            if max_length is not None:
                over = np.flatnonzero(sub > max_length)
                entry["subtokens"]["over_max_length"] = int(len(over))
                if len(over):
                    total += len(over)
                    parts.append(f"{split} {len(over)} of {len(frame)}")
                    shown += [{**_example(split, frame, int(i)), "tokens": int(sub[i])} for i in over[:EXAMPLES]]
        lengths[split] = entry
    if not total:
        return lengths, None
    return lengths, Finding(
        "long_sentences", "info", f"{total} sentences are longer than train.max_length={max_length} sub-tokens "
        f"({'; '.join(parts)}): they are cut into overlapping windows (token_classification.stride), every word "
        f"still scored", total, shown[:EXAMPLES])
