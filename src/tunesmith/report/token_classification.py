"""report.html sections of a token-classification run, from eval.json and RUN/predictions_validation.jsonl
(written by the token_classification task at the end of training):

- per entity type: precision, recall, F1 and support per held-out split (eval.json per_type);
- entity-type confusion: where each gold entity went (its type, another type, a wrong span, missed) and the
  spurious predictions (eval.json type_confusion);
- validation sentences with the gold and the predicted entities marked, sentences with a mistake first.

Every function returns "" for runs of other tasks, so the sections are left out of their reports.
"""

from __future__ import annotations

import json

from tunesmith.data.tag_schemes import entity_spans

EXAMPLES_NAME = "predictions_validation.jsonl"
SHOWN_SENTENCES = 12
COLOURS = ("#fde2a7", "#c9e7c1", "#cfe0f7", "#f6cde0", "#e1d5f5", "#d3eeee")  # by entity type, cycling


def section_entity_types(data, table, esc) -> str:
    parts = []
    for split, metrics in data.splits.items():
        per_type = metrics.get("per_type") or {}
        if per_type:
            rows = [[kind, r.get("precision"), r.get("recall"), r.get("f1"), r.get("support")]
                    for kind, r in per_type.items()]
            rows.append(["all (micro)", metrics.get("precision"), metrics.get("recall"), metrics.get("f1"),
                         metrics.get("entities")])
            parts.append(f"<h3>{esc(split)}</h3>" + table(["entity type", "precision", "recall", "f1", "support"],
                                                          rows))
    return "".join(parts)


def section_type_confusion(data, table, esc) -> str:
    parts = []
    for split, metrics in data.splits.items():
        confusion = metrics.get("type_confusion") or {}
        gold = confusion.get("gold") or {}
        if not gold:
            continue
        types = sorted(set(gold) | {t for row in gold.values() for t in row} - {"wrong span", "missed"})
        columns = [*types, "wrong span", "missed"]
        rows = [[kind, *(row.get(c, 0) for c in columns)] for kind, row in sorted(gold.items())]
        spurious = confusion.get("spurious") or {}
        rows.append(["no gold entity (spurious)", *(spurious.get(c, 0) for c in types), "", ""])
        parts.append(f"<h3>{esc(split)}</h3>" + table(["gold \\ predicted", *columns], rows)
                     + '<p class="note">rows: gold entities by type; columns: the predicted entity with the same '
                       'span (its type), a prediction overlapping it with another span, or none.</p>')
    return "".join(parts)


def section_entity_examples(data, table, esc) -> str:
    path = data.path / EXAMPLES_NAME
    if not path.is_file():
        return ""
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    with_entities = [r for r in records if any(t != "O" for t in r["gold"] + r["predicted"])]
    wrong = [r for r in with_entities if r["gold"] != r["predicted"]]
    right = [r for r in with_entities if r["gold"] == r["predicted"]]
    half = SHOWN_SENTENCES // 2  # up to half with mistakes, the rest right; either fills the other's gap
    shown = wrong[:half] + right[:SHOWN_SENTENCES - min(half, len(wrong))]
    shown += wrong[half:half + SHOWN_SENTENCES - len(shown)]
    types = sorted({kind for r in records for kind, _, _ in entity_spans(r["gold"]) + entity_spans(r["predicted"])})
    colour = {kind: COLOURS[i % len(COLOURS)] for i, kind in enumerate(types)}
    rows = [[esc(r["sentence"]), marked(r["tokens"], r["gold"], colour, esc),
             marked(r["tokens"], r["predicted"], colour, esc), "yes" if r["gold"] == r["predicted"] else "no"]
            for r in shown]
    legend = " ".join(f'<mark style="background:{c}">{esc(k)}</mark>' for k, c in colour.items())
    return (f'<p class="note">{len(wrong)} of the first {len(records)} validation sentences have a mistake; '
            f'{len(shown)} shown (mistakes first). Entity types: {legend}</p>'
            + table(["sentence", "gold", "predicted", "same"], rows, classes="records", raw=True))


def marked(tokens, tags, colour: dict, esc) -> str:
    """The sentence as HTML with each entity of the IOB2 `tags` in a coloured mark labelled with its type."""
    out, position = [], 0
    for kind, start, end in entity_spans(tags):
        out += [esc(t) for t in tokens[position:start]]
        words = esc(" ".join(tokens[start:end]))
        out.append(f'<mark style="background:{colour.get(kind, "#eee")}">{words} <sub>{esc(kind)}</sub></mark>')
        position = end
    out += [esc(t) for t in tokens[position:]]
    return " ".join(out)
