"""Words with tags -> sub-token features for token classification: alignment, windows, raw-text words.

- **Alignment** (`word_ids()` of a fast tokenizer, words given pre-split with `is_split_into_words=True`): the
  first sub-token of a word carries the word's tag id, the other sub-tokens -100 (ignored by the loss), unless
  `label_all_tokens` (then they carry it too, a B- tag turned into its I- tag after the first sub-token).
- **Windows**: a sentence with more sub-tokens than fit in `max_length` (after the special tokens) is cut into
  windows overlapping by `stride` sub-tokens. A window ends at a word boundary and the next one starts at one
  when the words allow it (a single word longer than a window is cut inside). Every window is a training row;
  evaluation and predict stitch them back to one prediction per word (evaluation/token_decode.py).
- **Document context** (`token_classification.context: document`, as FLERT): a sentence that fits in a window
  is read with up to `context_tokens` sub-tokens of the sentences before and after it in its document on each
  side (labels -100, never scored); `document_neighbours` finds them.
- **Raw text** (`split_words`): `tunesmith predict --text` splits a text into words with character offsets by
  the regex `\\w+(?:[-'’.]\\w+)*|[^\\w\\s]` (runs of letters and digits, kept together across inner hyphens,
  apostrophes and dots as in "New-York", "O'Neil", "U.S"; every other non-space character is a word of its own).

Each feature holds the model inputs (`input_ids`, `attention_mask`, `token_type_ids` when the tokenizer makes
them, `labels` when tags are given) and what stitching needs, which the collator leaves out of the batch:
`sentence` (the row), `n_words`, `word_index` (per position: the word whose FIRST sub-token sits there, else -1),
`word_edge` (per position: sub-tokens to the nearer window edge, -1 where word_index is -1) and `word_tags`
(the gold tag id of every word, -100 without tags).
"""

from __future__ import annotations

import re
from typing import Sequence

from tunesmith.data.encode import EncodedDataset, length_order
from tunesmith.errors import RecipeError

IGNORE = -100  # the label the loss skips (PyTorch's cross_entropy ignore_index)
META_KEYS = ("sentence", "n_words", "word_index", "word_edge", "word_tags")  # not model inputs
WORD_PATTERN = re.compile(r"\w+(?:[-'’.]\w+)*|[^\w\s]")


def split_words(text: str) -> list[tuple[str, int, int]]:
    """(word, start, end) for every word of a raw text: text[start:end] == word."""
    return [(m.group(), m.start(), m.end()) for m in WORD_PATTERN.finditer(text)]


def joined_spans(words: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """Pre-split words as one text joined by spaces, with each word's (start, end) in it."""
    spans, position = [], 0
    for word in words:
        spans.append((position, position + len(word)))
        position += len(word) + 1
    return " ".join(words), spans


def check_fast_tokenizer(tokenizer, model: str) -> None:
    """Word alignment needs `word_ids()`, which only fast (Rust `tokenizers`) tokenizers give."""
    if not getattr(tokenizer, "is_fast", False):
        raise RecipeError(f"model: the tokenizer of {model} ({type(tokenizer).__name__}) is not a fast tokenizer, "
                          f"so it cannot map sub-tokens back to words (word_ids); token_classification needs a "
                          f"model with a tokenizer.json")


def special_template(tokenizer) -> tuple[list[int], list[int], int]:
    """(ids before the words, ids after them, token type id) that the tokenizer adds around one sequence."""
    probe = tokenizer([["x"]], is_split_into_words=True)
    ids, words = probe["input_ids"][0], probe.word_ids(0)
    first = words.index(0)
    last = len(words) - 1 - words[::-1].index(0)
    type_id = probe["token_type_ids"][0][first] if "token_type_ids" in probe else 0
    return ids[:first], ids[last + 1:], type_id


def check_window(max_length: int, stride: int, specials: int) -> int:
    """Sub-tokens of words one window holds; a stride that leaves a window no new sub-tokens is refused."""
    budget = max_length - specials
    if budget < 1:
        raise RecipeError(f"train.max_length: {max_length} leaves no room for words besides the tokenizer's "
                          f"{specials} special tokens; give at least {specials + 1}")
    if stride > budget // 2:
        raise RecipeError(f"token_classification.stride: {stride} sub-tokens of overlap is more than half of a "
                          f"window of {budget} (train.max_length {max_length} minus {specials} special tokens); "
                          f"give at most {budget // 2}")
    return budget


def window_bounds(word_ids: Sequence[int], budget: int, stride: int) -> list[tuple[int, int]]:
    """[start, end) sub-token ranges covering the sentence, each at most `budget` long, consecutive ones
    overlapping by `stride` sub-tokens, moved to word boundaries where the words allow (longer overlaps first,
    else shorter ones; a word longer than the space left is cut inside)."""
    n = len(word_ids)
    if n <= budget:
        return [(0, n)]

    def word_start(i: int) -> bool:
        return i == 0 or i >= n or word_ids[i] != word_ids[i - 1]

    bounds, start, covered = [], 0, 0
    while True:
        end = min(start + budget, n)
        cut = end
        while cut > covered + 1 and not word_start(cut):  # end at a word boundary, still covering new sub-tokens
            cut -= 1
        end = cut if word_start(cut) else end
        bounds.append((start, end))
        if end >= n:
            return bounds
        covered = end
        nxt = max(end - stride, start + 1)
        back = nxt
        while back > start + 1 and not word_start(back):  # start at a word boundary: a longer overlap,
            back -= 1
        ahead = nxt
        while ahead < end - 1 and not word_start(ahead):  # else a shorter one
            ahead += 1
        start = back if word_start(back) else ahead if word_start(ahead) else nxt


def document_neighbours(documents: Sequence, lines: Sequence[int]) -> list[tuple[list[int], list[int]]]:
    """For each row: (the rows before it in its document, nearest first; the rows after it, nearest first),
    ordered by line in the file whatever the rows' order."""
    order = sorted(range(len(lines)), key=lambda i: (documents[i], lines[i]))
    out: list[tuple[list[int], list[int]]] = [([], []) for _ in order]
    start = 0
    for end in range(1, len(order) + 1):
        if end == len(order) or documents[order[end]] != documents[order[start]]:
            group = order[start:end]
            for k, row in enumerate(group):
                out[row] = (group[:k][::-1], group[k + 1:])
            start = end
    return out


def context_ids(ids_of, neighbours: tuple[list[int], list[int]], room: int, per_side: int) -> tuple[list, list]:
    """(sub-token ids just before, just after) a sentence: up to `per_side` on each side and `room` in all,
    from its nearest neighbours outwards (`ids_of(row)`: a row's sub-token ids)."""
    before_rows, after_rows = neighbours
    left_n = min(per_side, room // 2)
    right_n = min(per_side, room - left_n)
    left: list = []
    for row in before_rows:
        if len(left) >= left_n:
            break
        left = list(ids_of(row)) + left
    right: list = []
    for row in after_rows:
        if len(right) >= right_n:
            break
        right += list(ids_of(row))
    return (left[len(left) - left_n:] if len(left) > left_n else left), right[:right_n]


def encode_words(tokenizer, sentences: Sequence[Sequence[str]], tag_ids: Sequence[Sequence[int]] | None, *,
                 max_length: int, stride: int, label_all_tokens: bool = False,
                 inside_of: dict[int, int] | None = None,
                 neighbours: Sequence[tuple[list[int], list[int]]] | None = None, context_tokens: int = 0) -> list[dict]:
    """Features (see the module docstring) for every window of every sentence. `inside_of` maps a B- tag id to
    its I- tag id (for label_all_tokens); `neighbours` (document_neighbours) adds document context."""
    prefix, suffix, type_id = special_template(tokenizer)
    budget = check_window(max_length, stride, len(prefix) + len(suffix))
    encoded = tokenizer([list(words) for words in sentences], is_split_into_words=True, add_special_tokens=False)
    with_types = "token_type_ids" in tokenizer.model_input_names
    features = []
    for row, words in enumerate(sentences):
        ids, word_ids = encoded["input_ids"][row], encoded.word_ids(row)
        tags = list(tag_ids[row]) if tag_ids is not None else None
        bounds = window_bounds(word_ids, budget, stride)
        around = ([], [])
        if neighbours is not None and len(bounds) == 1 and budget > len(ids):
            around = context_ids(lambda r: encoded["input_ids"][r], neighbours[row], budget - len(ids), context_tokens)
        for start, end in bounds:
            feature = window_feature(ids, word_ids, start, end, list(prefix) + around[0], around[1] + list(suffix),
                                     tags, label_all_tokens, inside_of or {})
            if with_types:
                feature["token_type_ids"] = [type_id] * len(feature["input_ids"])
            feature.update(sentence=row, n_words=len(words),
                           word_tags=tags if tags is not None else [IGNORE] * len(words))
            features.append(feature)
    return features


def window_feature(ids, word_ids, start: int, end: int, prefix, suffix, tags, label_all_tokens: bool,
                   inside_of: dict[int, int]) -> dict:
    """One window's input ids, labels and the per-position word index / edge distance."""
    inner = [IGNORE] * len(prefix)
    word_index, word_edge, labels = list(inner), list(inner), list(inner)
    for position in range(start, end):
        word = word_ids[position]
        first = position == 0 or word_ids[position - 1] != word
        word_index.append(word if first else -1)
        word_edge.append(min(position - start, end - 1 - position) if first else -1)
        if tags is None:
            continue
        if first:
            labels.append(tags[word])
        else:
            labels.append(inside_of.get(tags[word], tags[word]) if label_all_tokens else IGNORE)
    after = [IGNORE] * len(suffix)
    feature = {"input_ids": list(prefix) + list(ids[start:end]) + list(suffix),
               "word_index": [-1 if i == IGNORE else i for i in word_index + after],
               "word_edge": [-1 if e == IGNORE else e for e in word_edge + after]}
    feature["attention_mask"] = [1] * len(feature["input_ids"])
    if tags is not None:
        feature["labels"] = labels + after
    return feature


class TokenCollator:
    """DataCollatorForTokenClassification (labels padded with -100) over the model inputs of each feature;
    the stitching keys (META_KEYS) stay in the dataset, out of the batch."""

    def __init__(self, tokenizer):
        from transformers import DataCollatorForTokenClassification

        self.collate = DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE, return_tensors="pt")

    def __call__(self, features: list[dict]):
        return self.collate([{k: v for k, v in f.items() if k not in META_KEYS} for f in features])


def in_length_order(dataset):
    """The dataset's features longest first, as a new dataset: evaluation batches of similar lengths whose
    gathered rows come back in the dataset's own order (what stitching reads the word indexes from)."""
    return EncodedDataset([dataset.features[i] for i in length_order(dataset)])
