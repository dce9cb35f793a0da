"""What `inspect` shows about multi-label data (task: multi_label), beside the text checks of inspection.py
(duplicates, leakage, empty texts, truncation, which it runs unchanged on the same splits):

    classes           each label's positive rows per split
    cardinality       labels per row per split: mean and the distribution {labels in a row: rows}
    empty_sets        rows with no label per split (a finding `empty_label_sets`, info)
    cooccurrence      the training label pairs seen together most often
    findings          rare_class (fewer than RARE_LABEL training positives), untrained_label (no training
                      positive: the model cannot learn it; warning), missing_class (a label without a positive in
                      validation or test: its recall and F1 are undefined, reported as 0)

`inspect.fail_on` makes any of these codes an error, as for classification.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations

from tunesmith.data.label_sets import ROLE
from tunesmith.data.findings import Finding, FindingsReport, promote_failures
from tunesmith.inspection import inspect_frames

RARE_LABEL = 5
TOP_PAIRS = 10


@dataclass
class LabelSetInspection(FindingsReport):
    sources: dict
    rows: dict
    classes: dict  # split -> {label: rows with it}
    cardinality: dict  # split -> {"mean": m, "distribution": {k: rows with k labels}}
    empty_sets: dict  # split -> rows without a label
    cooccurrence: list  # [{"labels": [a, b], "rows": n}], train
    token_lengths: dict | None
    findings: list[Finding]
    notes: list[str] = field(default_factory=list)
    imbalance_ratio: float | None = None  # what print_inspection draws for classification; none here
    majority_baseline: dict | None = None



def _label_findings(classes: dict, names: list[str], empty: dict, rows: dict) -> list[Finding]:
    train = classes["train"]
    found = []
    rare = [n for n in names if 0 < train[n] < RARE_LABEL]
    if rare:
        found.append(Finding("rare_class", "warning", f"{len(rare)} label(s) have fewer than {RARE_LABEL} training "
                             f"positives: {', '.join(f'{n!r} {train[n]}' for n in rare)}", len(rare)))
    untrained = [n for n in names if train[n] == 0]
    if untrained:
        where = [f"{n!r} ({', '.join(f'{s} {c[n]}' for s, c in classes.items() if c.get(n))})" for n in untrained]
        found.append(Finding("untrained_label", "warning", f"{len(untrained)} label(s) never occur in train, only "
                             f"in held-out data: {', '.join(where)}; the model cannot learn them (they score 0)",
                             len(untrained)))
    for split in ("validation", "test"):
        if split in classes:
            missing = [n for n in names if classes[split].get(n, 0) == 0]
            if missing:
                found.append(Finding("missing_class", "warning", f"{split} has no positive of "
                                     f"{', '.join(repr(n) for n in missing)}: their recall and F1 are undefined "
                                     f"(reported as 0) and macro averages drop", len(missing)))
    total = sum(empty.values())
    if total:
        parts = "; ".join(f"{s} {n} of {rows[s]}" for s, n in empty.items() if n)
        found.append(Finding("empty_label_sets", "info", f"{total} rows have no label ({parts}); they teach the "
                             f"model to predict nothing for such texts", total))
    return found


def inspect_label_sets(splits, *, tokenizer=None, max_length: int | None = None, fail_on=(), examples: int = 3
                       ) -> LabelSetInspection:
    """The report on a LabelSetSplits (data/label_sets.py) as `train` builds them."""
    frames = splits.frames()
    names = list(splits.names)
    text_only = {s: f.drop(columns=[ROLE]) for s, f in frames.items()}
    base = inspect_frames(text_only, tokenizer=tokenizer, max_length=max_length, fail_on=fail_on, examples=examples,
                          sources=splits.sources, notes=splits.notes)
    classes, cardinality, empty = {}, {}, {}
    for split, frame in frames.items():
        sets = frame[ROLE].tolist()
        counts = Counter(label for labels in sets for label in labels)
        classes[split] = {n: int(counts.get(n, 0)) for n in names}
        sizes = Counter(len(labels) for labels in sets)
        cardinality[split] = {"mean": round(sum(len(s) for s in sets) / max(len(sets), 1), 4),
                              "distribution": {int(k): int(v) for k, v in sorted(sizes.items())}}
        empty[split] = int(sizes.get(0, 0))
    pairs = Counter(pair for labels in splits.train[ROLE] for pair in combinations(sorted(labels), 2))
    cooccurrence = [{"labels": list(pair), "rows": int(n)} for pair, n in pairs.most_common(TOP_PAIRS)]
    findings = promote_failures(_label_findings(classes, names, empty, base.rows) + list(base.findings), fail_on)
    return LabelSetInspection(dict(splits.sources), base.rows, classes, cardinality, empty, cooccurrence,
                              base.token_lengths, findings, list(base.notes))
