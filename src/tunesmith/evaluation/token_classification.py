"""Metrics of token classification (NER): entity-level precision, recall and F1 as seqeval computes them in strict
mode with the IOB2 scheme (CoNLL's own rule: an entity counts only when its type and both its boundaries are
right), the accuracy of single tags, per-type scores, and where the missed entities went.

    entity_metrics(gold, pred) -> {precision, recall, f1, token_accuracy, per_type, type_confusion, n, entities,
                                   predicted}

Strict mode reads entities exactly as IOB2 defines them: a predicted `I-X` that continues no `B-X`/`I-X` starts
nothing and is not an entity (the lenient CoNLL script would count it as one).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence

METRIC_NAMES = ("loss", "f1", "precision", "recall", "token_accuracy")
BOUNDED_METRICS = ("f1", "precision", "recall", "token_accuracy")  # all in [0, 1]
MISSED, WRONG_SPAN = "missed", "wrong span"


def metric_mode(name: str) -> str:
    return "min" if name == "loss" or name.endswith("loss") else "max"


def entity_metrics(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict:
    """Scores of IOB2 tag sequences `pred` against `gold` (one list of tags per sentence, of equal lengths).

    precision, recall, f1: micro averages over entities (seqeval strict, IOB2; 0 where undefined); token_accuracy:
    the share of tags that are right (O included); per_type: {TYPE: {precision, recall, f1, support}};
    type_confusion: see `type_confusion`; n: sentences; entities: gold entities; predicted: predicted entities.
    """
    from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score
    from seqeval.metrics.v1 import precision_recall_fscore_support, unique_labels
    from seqeval.scheme import IOB2

    gold, pred = [list(tags) for tags in gold], [list(tags) for tags in pred]
    if len(gold) != len(pred) or any(len(g) != len(p) for g, p in zip(gold, pred)):
        raise ValueError("gold and predicted tags differ in the number of sentences or of tags in a sentence")
    strict = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined scores are 0 by zero_division; seqeval warns all the same
        scores = {"precision": float(precision_score(gold, pred, **strict)),
                  "recall": float(recall_score(gold, pred, **strict)),
                  "f1": float(f1_score(gold, pred, **strict)),
                  "token_accuracy": float(accuracy_score(gold, pred)) if any(gold) else 0.0}
        types = unique_labels(gold, pred, IOB2)
        p, r, f, support = precision_recall_fscore_support(gold, pred, average=None, zero_division=0, scheme=IOB2)
    scores["per_type"] = {kind: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                 "support": int(support[i])} for i, kind in enumerate(types)}
    gold_entities, pred_entities = strict_entities(gold), strict_entities(pred)
    scores["type_confusion"] = type_confusion(gold_entities, pred_entities)
    scores.update(n=len(gold), entities=len(gold_entities), predicted=len(pred_entities))
    return scores


def strict_entities(sequences: list[list[str]]) -> list[tuple[int, str, int, int]]:
    """(sentence, type, start, end exclusive) of every entity seqeval's strict IOB2 reading finds."""
    from seqeval.scheme import IOB2, Entities

    return [entity.to_tuple() for sentence in Entities(sequences, IOB2).entities for entity in sentence]


def type_confusion(gold: list[tuple[int, str, int, int]], pred: list[tuple[int, str, int, int]]) -> dict:
    """Where each gold entity went, and the predictions that match nothing:

        {"gold": {GOLD TYPE: {PREDICTED TYPE | "wrong span" | "missed": count}}, "spurious": {PREDICTED TYPE: count}}

    A gold entity goes to the type of the prediction with exactly its span (its own type: right; another: a
    confusion), else to "wrong span" when a prediction overlaps it, else to "missed". A prediction is spurious
    when it neither has a gold entity's span nor overlaps one. Types are sorted; counts of 0 are left out."""
    by_span = {(s, start, end): kind for s, kind, start, end in pred}
    pred_by_sentence: dict[int, list[tuple[int, int]]] = {}
    for s, _, start, end in pred:
        pred_by_sentence.setdefault(s, []).append((start, end))
    gold_by_sentence: dict[int, list[tuple[int, int]]] = {}
    for s, _, start, end in gold:
        gold_by_sentence.setdefault(s, []).append((start, end))
    rows: dict[str, Counter] = {}
    for s, kind, start, end in gold:
        if (s, start, end) in by_span:
            went = by_span[(s, start, end)]
        elif _overlaps(start, end, pred_by_sentence.get(s, [])):
            went = WRONG_SPAN
        else:
            went = MISSED
        rows.setdefault(kind, Counter())[went] += 1
    spurious = Counter(kind for s, kind, start, end in pred
                       if (start, end) not in gold_by_sentence.get(s, [])
                       and not _overlaps(start, end, gold_by_sentence.get(s, [])))
    return {"gold": {kind: dict(sorted(rows[kind].items())) for kind in sorted(rows)},
            "spurious": dict(sorted(spurious.items()))}


def _overlaps(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    return any(start < other_end and other_start < end for other_start, other_end in spans)
