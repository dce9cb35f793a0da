"""Data diagnostics for classification: what is wrong with the data before any training happens.

`tunesmith inspect RECIPE_OR_DATA` prints the report (or `--json`); `tunesmith train` builds the
same report from the splits it is about to train on, prints its warnings and saves it as
RUN/inspect.json. Findings (each with a severity: info, warning or error):

| code                  | what                                                                   |
|-----------------------|------------------------------------------------------------------------|
| class_imbalance       | largest:smallest training class ratio (info from 3:1, warning from 10:1) |
| rare_class            | a class with fewer than 10 training examples (warning)                 |
| missing_class         | a training class absent from validation or test (warning)              |
| duplicates            | rows repeating an earlier row's exact text in the same split           |
| normalised_duplicates | further repeats once case, Unicode form and whitespace are normalised (info) |
| conflicting_labels    | one normalised text with different labels, across all splits (warning)  |
| leakage               | validation/test rows whose normalised text is in train (or test in validation) (warning) |
| empty_text            | texts that are empty once normalised (blank, or only invisible characters) (warning) |
| truncation            | examples longer than train.max_length tokens (info; warning from 5% of a split) |
| mixed_label_types     | labels that are numbers in some rows and words in others (warning)     |

`inspect.fail_on: [code, ...]` turns those findings into errors: `train` stops before training and
`tunesmith inspect` exits with status 1.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tunesmith.artifacts import write_text_atomic
from tunesmith.data.findings import Finding, FindingsReport, promote_failures
from tunesmith.data.prepare import assemble_splits, read_with_spec
from tunesmith.errors import DataError, ModelError
from tunesmith.evaluation.classification import majority_baseline

RARE_CLASS = 10           # training examples below which a class is "rare"
IMBALANCE_INFO, IMBALANCE_WARNING = 3.0, 10.0
TRUNCATION_WARNING = 0.05
_SPACE = re.compile(r"\s+")


@dataclass
class Report(FindingsReport):
    sources: dict
    rows: dict
    classes: dict                      # split -> {label: count}
    imbalance_ratio: float | None
    majority_baseline: dict | None
    token_lengths: dict | None
    findings: list[Finding]
    notes: list[str] = field(default_factory=list)


# --- normalisation ----------------------------------------------------------------------------

def normalise(text: str) -> str:
    """Text for duplicate and leakage matching: NFKC, case-folded, invisible format characters
    (zero-width spaces, ...) removed, runs of whitespace made one space, ends stripped."""
    text = str(text)
    if not text.isascii():  # ASCII needs neither NFKC nor the format-character filter
        text = unicodedata.normalize("NFKC", text)
        text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return _SPACE.sub(" ", text.casefold()).strip()


def _keys(frame: pd.DataFrame, norm: bool) -> pd.Series:
    fix = normalise if norm else (lambda t: str(t))
    keys = frame["text"].map(fix)
    if "text_pair" in frame.columns:
        keys = keys + "\x1f" + frame["text_pair"].fillna("").map(fix)
    return keys


def _short(text: str, width: int = 70) -> str:
    text = _SPACE.sub(" ", str(text)).strip()
    return text if len(text) <= width else text[: width - 1] + "…"


def _label_names(frames: dict[str, pd.DataFrame], labels=None) -> tuple[dict[str, pd.Series], list[str]]:
    """Each split's labels as class names, and the class names in id order."""
    from tunesmith.data.labels import LabelMap

    if labels is None and "label" in frames["train"].columns:  # multi_label passes frames of texts only
        try:
            labels = LabelMap.fit(frames["train"]["label"], source="train")
        except DataError:
            labels = None
    out = {}
    for name, frame in frames.items():
        if "label" not in frame.columns:
            continue
        if labels is not None:
            ids = [labels.id_of(v) for v in frame["label"].tolist()]
            out[name] = pd.Series([labels.names[i] if i is not None else str(v).strip()
                                   for i, v in zip(ids, frame["label"].tolist())], index=frame.index)
        else:
            out[name] = frame["label"].map(lambda v: str(v).strip())
    names = labels.names if labels is not None else sorted(set(out.get("train", pd.Series(dtype=str))))
    return out, names


# --- the checks -------------------------------------------------------------------------------

def inspect_frames(frames: dict[str, pd.DataFrame], *, labels=None, tokenizer=None, max_length: int | None = None,
                   fail_on=(), examples: int = 3, sources: dict | None = None, notes=()) -> Report:
    """The report for labelled splits (`train` required; `validation`, `test` optional)."""
    frames = {k: v for k, v in frames.items() if v is not None}
    named, names = _label_names(frames, labels)
    findings: list[Finding] = []
    classes = {split: {n: int((series == n).sum()) for n in names} | _unknown(series, names)
               for split, series in named.items()}

    # class balance
    train_counts = np.array([classes["train"][n] for n in names]) if names else np.array([])
    ratio, baseline = None, None
    if len(train_counts) >= 2 and train_counts.min() > 0:
        ratio = float(train_counts.max() / train_counts.min())
        big, small = names[int(train_counts.argmax())], names[int(train_counts.argmin())]
        baseline = _majority_baseline(named, names)
        if ratio >= IMBALANCE_INFO:
            sev = "warning" if ratio >= IMBALANCE_WARNING else "info"
            where = f"on {baseline['split']}" if baseline else ""
            msg = (f"classes are imbalanced {ratio:.1f}:1 in train ('{big}' {train_counts.max()}, '{small}' "
                   f"{train_counts.min()}); always predicting '{big}' scores accuracy {baseline['accuracy']:.3f}, "
                   f"macro-F1 {baseline['macro_f1']:.3f} {where}; see the recipe's imbalance: section")
            findings.append(Finding("class_imbalance", sev, msg, int(train_counts.max() - train_counts.min())))
    rare = [(n, c) for n, c in zip(names, train_counts) if 0 < c < RARE_CLASS]
    if rare:
        listed = ", ".join(f"'{n}' {c}" for n, c in rare)
        findings.append(Finding("rare_class", "warning", f"{len(rare)} class(es) have fewer than {RARE_CLASS} "
                                f"training examples: {listed}", len(rare)))
    for split in ("validation", "test"):
        if split in classes:
            missing = [n for n in names if classes[split].get(n, 0) == 0]
            if missing:
                findings.append(Finding("missing_class", "warning", f"{split} has no example of "
                                        f"{', '.join(repr(n) for n in missing)}: their recall and F1 are undefined "
                                        f"(reported as 0) and macro averages drop", len(missing)))

    exact = {s: _keys(f, norm=False) for s, f in frames.items()}
    norm = {s: _keys(f, norm=True) for s, f in frames.items()}
    findings += _duplicates(frames, exact, norm, examples)
    findings += _conflicts(frames, norm, named, examples)
    findings += _leakage(frames, norm, examples)
    findings += _empty(frames, norm, examples)
    findings += _mixed_label_types(frames, examples)

    token_lengths = None
    if tokenizer is not None and max_length is not None:
        token_lengths, truncation = _token_lengths(frames, tokenizer, max_length, examples)
        findings += truncation

    promote_failures(findings, fail_on)
    return Report(dict(sources or {}), {s: len(f) for s, f in frames.items()}, classes, ratio, baseline,
                  token_lengths, findings, list(notes))


def _unknown(series: pd.Series, names: list[str]) -> dict:
    other = sorted(set(series) - set(names))
    return {n: int((series == n).sum()) for n in other}


def _majority_baseline(named: dict, names: list[str]) -> dict:
    """What always predicting the largest training class scores on validation (train without one)."""
    split = "validation" if "validation" in named else "train"
    ids = {n: i for i, n in enumerate(names)}
    train = np.array([ids[v] for v in named["train"] if v in ids], dtype=np.int64)
    truth = np.array([ids[v] for v in named[split] if v in ids], dtype=np.int64)
    return {"split": split, **majority_baseline(train, truth, names)}


def _where(frame: pd.DataFrame, index) -> str:
    unit = frame.attrs.get("line_unit", "line")
    return f"{unit} {int(frame['line'].iloc[index])}" if "line" in frame.columns else f"row {index + 1}"


def _duplicates(frames, exact, norm, examples) -> list[Finding]:
    found = []
    exact_total, extra_total, exact_parts, extra_parts, exact_ex, extra_ex = 0, 0, [], [], [], []
    for split, frame in frames.items():
        n_exact = int(exact[split].duplicated().sum())
        n_norm = int(norm[split].duplicated().sum())
        extra = n_norm - n_exact
        if n_exact:
            exact_total += n_exact
            exact_parts.append(f"{split} {n_exact} of {len(frame)} ({n_exact / len(frame):.1%})")
            for pos in np.flatnonzero(exact[split].duplicated().to_numpy())[:examples]:
                exact_ex.append({"split": split, "where": _where(frame, pos), "text": _short(frame["text"].iloc[pos])})
        if extra > 0:
            extra_total += extra
            extra_parts.append(f"{split} {extra}")
            only_norm = norm[split].duplicated() & ~exact[split].duplicated()
            for pos in np.flatnonzero(only_norm.to_numpy())[:examples]:
                extra_ex.append({"split": split, "where": _where(frame, pos), "text": _short(frame["text"].iloc[pos])})
    if exact_total:
        share = max(exact_total / max(sum(len(f) for f in frames.values()), 1), 0)
        found.append(Finding("duplicates", "warning" if share >= 0.01 else "info",
                             f"{exact_total} rows repeat an earlier row's text ({'; '.join(exact_parts)}); "
                             f"data.drop_duplicates: true removes them from train before splitting",
                             exact_total, exact_ex[:examples]))
    if extra_total:
        found.append(Finding("normalised_duplicates", "info",
                             f"{extra_total} more rows repeat an earlier text once case and whitespace are "
                             f"normalised ({'; '.join(extra_parts)})", extra_total, extra_ex[:examples]))
    return found


def _conflicts(frames, norm, named, examples) -> list[Finding]:
    parts = [pd.DataFrame({"key": norm[s], "label": named[s], "split": s, "pos": range(len(f))})
             for s, f in frames.items() if s in named]
    if not parts:
        return []
    table = pd.concat(parts, ignore_index=True)
    counts = table.groupby("key")["label"].nunique()
    bad = counts[counts > 1]
    if bad.empty:
        return []
    rows = table[table["key"].isin(bad.index)]
    shown = []
    for key in list(bad.index)[:examples]:
        group = rows[rows["key"] == key]
        first = group.iloc[0]
        where = [f"{r.split} {_where(frames[r.split], r.pos)}: {r.label}" for r in group.itertuples()][:6]
        shown.append({"text": _short(frames[first.split]["text"].iloc[first.pos]), "labels": where})
    return [Finding("conflicting_labels", "warning",
                    f"{len(bad)} texts appear with different labels ({len(rows)} rows); the model cannot get "
                    f"all of them right: fix the labels or drop the rows", len(bad), shown)]


def _leakage(frames, norm, examples) -> list[Finding]:
    pairs = [("validation", "train"), ("test", "train"), ("test", "validation")]
    total, parts, shown = 0, [], []
    for held, against in pairs:
        if held not in frames or against not in frames:
            continue
        seen = set(norm[against])
        hits = norm[held].isin(seen).to_numpy()
        n = int(hits.sum())
        if n:
            total += n
            parts.append(f"{n} of {len(frames[held])} {held} rows ({n / len(frames[held]):.1%}) occur in {against}")
            for pos in np.flatnonzero(hits)[:examples]:
                shown.append({"split": held, "where": _where(frames[held], pos), "in": against,
                              "text": _short(frames[held]["text"].iloc[pos])})
    if not total:
        return []
    return [Finding("leakage", "warning", f"held-out data overlaps training data: {'; '.join(parts)}; held-out "
                    f"scores are inflated (texts compared after lower-casing and collapsing whitespace; "
                    f"data.drop_duplicates: true removes exact repeats before a validation split)",
                    total, shown[:examples])]


def _empty(frames, norm, examples) -> list[Finding]:
    total, parts, shown = 0, [], []
    for split, frame in frames.items():
        empty = (frame["text"].map(normalise) == "").to_numpy()
        n = int(empty.sum())
        if n:
            total += n
            parts.append(f"{split} {n}")
            shown += [{"split": split, "where": _where(frame, pos), "text": repr(frame["text"].iloc[pos])}
                      for pos in np.flatnonzero(empty)[:examples]]
    if not total:
        return []
    return [Finding("empty_text", "warning", f"{total} texts are empty or hold only whitespace or invisible "
                    f"characters ({'; '.join(parts)})", total, shown[:examples])]


def _mixed_label_types(frames, examples) -> list[Finding]:
    """Numbers and words in one label column ("1" counts as the number 1: data/labels.py's rule)."""
    from tunesmith.data.labels import canonical_label, is_numeric_label

    def kind(value):
        value = canonical_label(value)
        return "number" if is_numeric_label(value) else "word" if isinstance(value, str) and value else None

    kinds = {s: f["label"].map(kind) for s, f in frames.items() if "label" in f.columns}
    counts = {k: sum(int((series == k).sum()) for series in kinds.values()) for k in ("number", "word")}
    if not (counts["number"] and counts["word"]):
        return []
    rare = min(counts, key=lambda k: (counts[k], k))
    shown = [{"split": s, "where": _where(frames[s], pos), "text": repr(frames[s]["label"].iloc[pos])}
             for s, series in kinds.items() for pos in np.flatnonzero((series == rare).to_numpy())[:examples]]
    rows = {k: f"{n} row{'s' * (n != 1)}" for k, n in counts.items()}
    return [Finding("mixed_label_types", "warning", f"the labels mix numbers ({rows['number']}) and words "
                    f"({rows['word']}): a number and a word are always different classes; check the "
                    f"{rare}s for a stray value or a shifted column", counts[rare], shown[:examples])]


def _token_lengths(frames, tokenizer, max_length: int, examples: int) -> tuple[dict, list[Finding]]:
    stats: dict = {"max_length": max_length}
    findings = []
    worst_share, total, parts, shown = 0.0, 0, [], []
    for split, frame in frames.items():
        lengths = token_lengths(tokenizer, frame)
        if not len(lengths):
            continue
        over = lengths > max_length
        n = int(over.sum())
        stats[split] = {
            "min": int(lengths.min()), "mean": round(float(lengths.mean()), 1),
            **{f"p{q}": int(np.percentile(lengths, q)) for q in (50, 90, 95, 99)},
            "max": int(lengths.max()), "truncated": n, "truncated_share": round(n / len(lengths), 4),
        }
        if n:
            total += n
            worst_share = max(worst_share, n / len(lengths))
            parts.append(f"{split} {n} of {len(lengths)} ({n / len(lengths):.1%})")
            shown += [{"split": split, "where": _where(frame, pos), "tokens": int(lengths[pos]),
                       "text": _short(frame["text"].iloc[pos])} for pos in np.flatnonzero(over)[:examples]]
    if total:
        p99 = stats.get("train", {}).get("p99")
        findings.append(Finding("truncation", "warning" if worst_share >= TRUNCATION_WARNING else "info",
                                f"{total} examples are longer than train.max_length={max_length} tokens and get "
                                f"truncated ({'; '.join(parts)})" + (f"; train's 99th percentile is {p99}" if p99 else ""),
                                total, shown[:examples]))
    return stats, findings


def token_lengths(tokenizer, frame: pd.DataFrame, chunk: int = 1024) -> np.ndarray:
    """Token counts (special tokens included, nothing truncated) of each row's text [and text_pair]."""
    texts = frame["text"].fillna("").astype(str).tolist()
    pairs = frame["text_pair"].fillna("").astype(str).tolist() if "text_pair" in frame.columns else None
    out = []
    for start in range(0, len(texts), chunk):
        enc = tokenizer(texts[start:start + chunk], pairs[start:start + chunk] if pairs else None,
                        truncation=False, padding=False, add_special_tokens=True)
        out.extend(len(ids) for ids in enc["input_ids"])
    return np.asarray(out, dtype=np.int64)


# --- entry points -------------------------------------------------------------------------------

def inspect_splits(splits, recipe, tokenizer=None, max_length: int | None = None) -> Report:
    """The report on the splits `train` is about to use; `max_length`: what examples are cut to (default
    train.max_length)."""
    return inspect_frames(splits.frames(), labels=splits.labels, tokenizer=tokenizer,
                          max_length=max_length or recipe.train.max_length, fail_on=recipe.inspect.fail_on,
                          examples=recipe.inspect.examples, sources=splits.sources, notes=splits.notes)


def read_splits_leniently(spec, *, seed: int):
    """The recipe's splits as `train` builds them, except that empty texts are kept (to be reported)."""
    if "label" not in spec.columns:
        raise DataError("data.columns: classification needs a 'label' column")
    split = assemble_splits(spec, lambda path: read_with_spec(spec, path, columns=spec.columns, required=("label",)),
                            seed=seed, stratify=spec.validation.stratify)
    return split.frames, split.sources, split.notes


def tokenizer_for(model: str, trust_remote_code: bool = False):
    """(tokenizer or None, note): only the tokenizer is loaded; a packaged GGUF model that is not
    converted yet is not converted for this."""
    from tunesmith.models import PACKAGED, converted_dir, load_tokenizer, resolve_model

    packaged = PACKAGED.get(str(model))
    if packaged is not None and packaged.is_gguf and not (converted_dir(packaged) / "config.json").is_file():
        return None, f"token lengths skipped: '{model}' is not converted yet (the first `train` converts it)"
    try:
        return load_tokenizer(resolve_model(model), trust_remote_code), None
    except ModelError as exc:
        return None, f"token lengths skipped: {exc}"


def inspect_recipe(recipe, *, tokens: bool = True) -> Report:
    frames, sources, notes = read_splits_leniently(recipe.data, seed=recipe.train.seed)
    tokenizer, note = tokenizer_for(recipe.model, recipe.trust_remote_code) if tokens else (None, None)
    report = inspect_frames(frames, tokenizer=tokenizer, max_length=recipe.train.max_length,
                            fail_on=recipe.inspect.fail_on, examples=recipe.inspect.examples, sources=sources,
                            notes=notes + ([note] if note else []))
    return report


def inspect_files(train: str, *, validation: str | None = None, test: str | None = None, columns=None,
                  format=None, header=None, quoting="auto", delimiter=None, encoding="utf-8", model: str | None = None,
                  max_length: int = 128, fail_on=(), examples: int = 3) -> Report:
    """The report on data files given directly (no split is made)."""
    from tunesmith.data.readers import read_table

    columns = columns or {"text": "text", "label": "label"}
    if "label" not in columns:
        raise DataError("inspect needs a label column (--label-column)")
    frames, sources = {}, {}
    for split, path in (("train", train), ("validation", validation), ("test", test)):
        if path:
            frames[split] = read_table(Path(path), columns=columns, required=("label",), format=format, header=header,
                                       quoting=quoting, delimiter=delimiter, encoding=encoding)
            sources[split] = path
    tokenizer, note = tokenizer_for(model) if model else (None, None)
    return inspect_frames(frames, tokenizer=tokenizer, max_length=max_length, fail_on=fail_on, examples=examples,
                          sources=sources, notes=[note] if note else [])


# --- output -------------------------------------------------------------------------------------


def report_json(report: Report) -> str:
    """The report as JSON text (non-finite numbers as null)."""
    return json.dumps(_finite(report.to_dict()), indent=2, default=_plain)


def save_report(report: Report, path: Path) -> None:
    write_text_atomic(Path(path), report_json(report) + "\n")


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def check_failures(report: Report) -> None:
    """Raise DataError when findings were made errors by inspect.fail_on."""
    errors = report.of("error")
    if errors:
        listed = "; ".join(f"{f.code}: {f.message}" for f in errors)
        raise DataError(f"inspect found {len(errors)} problem(s) listed in inspect.fail_on: {listed}")
