"""Token-classification outputs -> one tag per word -> entities.

- `stitch`: the windows of a sentence (data/token_encode.py) back to one probability row per word: a word
  seen in several overlapping windows takes the row of the window where its first sub-token lies farthest from
  a window edge (the most context on both sides); a word no window holds (no sub-tokens) is "O" (row None).
- `repair_iob2`: an argmax decode can give I-X after O or after another type; like seqeval-friendly decoders
  it becomes B-X, so the sequence is valid IOB2 and every predicted entity is counted once.
- `entity_groups`: consecutive words of one entity as the Hugging Face token-classification pipeline's
  `aggregation_strategy="simple"` reports them: entity_group, the exact substring of the input, start, end
  (character offsets) and score (the mean probability of the words' predicted tags).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tunesmith.data.tag_schemes import entity_spans


def stitch(features: Sequence[dict], probs: Sequence[np.ndarray]) -> dict[int, list[np.ndarray | None]]:
    """{sentence: [probability row per word, or None]} from each window's feature and its L x C
    probabilities (rows beyond the window's length are ignored)."""
    best: dict[int, list] = {}
    for feature, window in zip(features, probs):
        words = best.setdefault(feature["sentence"], [None] * feature["n_words"])
        for position, (word, edge) in enumerate(zip(feature["word_index"], feature["word_edge"])):
            if word >= 0 and (words[word] is None or edge > words[word][0]):
                words[word] = (edge, window[position])
    return {sentence: [None if w is None else w[1] for w in words] for sentence, words in best.items()}


def decode_words(rows: Sequence[np.ndarray | None], names: Sequence[str], outside: str = "O") \
        -> tuple[list[str], list[float]]:
    """(IOB2 tags, probability of each tag) for one sentence's word rows, repaired."""
    tags, scores = [], []
    for row in rows:
        if row is None:
            tags.append(outside)
            scores.append(1.0)
        else:
            best = int(np.argmax(row))
            tags.append(names[best])
            scores.append(float(row[best]))
    return repair_iob2(tags), scores


def repair_iob2(tags: Sequence[str]) -> list[str]:
    """I-X that does not continue an entity of type X (after O, at the start, after another type) -> B-X."""
    out, previous = [], "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            tag = "B-" + tag[2:]
        out.append(tag)
        previous = tag
    return out


def entity_groups(text: str, spans: Sequence[tuple[int, int]], tags: Sequence[str],
                  scores: Sequence[float]) -> list[dict]:
    """The pipeline's "simple" aggregation over words with character `spans` in `text`."""
    groups = []
    for kind, first, end in entity_spans(tags):
        start, stop = spans[first][0], spans[end - 1][1]
        groups.append({"entity_group": kind, "word": text[start:stop], "start": int(start), "end": int(stop),
                       "score": round(float(np.mean(scores[first:end])), 6)})
    return groups
