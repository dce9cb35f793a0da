"""EDA-style text augmentation for minority classes, applied on the fly to training examples only.

Each time a training example of an augmented class is drawn, with probability `probability` one
operation (chosen at random among those enabled) rewrites its text, which is then tokenized afresh:

- delete: each word is dropped with probability `strength` (one word always stays);
- swap:   n = max(1, round(strength * words)) times, two random words trade places;
- insert: n times, a word drawn from the training texts of the same class goes in at a random place.

(Wei and Zou, 2019, "EDA". Synonym replacement is left out: it needs a lexicon, and none ships offline.)
Words are whitespace-separated tokens. The random stream of a draw is seeded by (seed, row, how many
times the row was drawn before), so a run is repeatable whatever the batch order, and a row drawn
twice in an epoch (oversampling) gets two different rewrites. Validation and test data are never
wrapped: only `run.py`'s training set goes through `AugmentedDataset`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from torch.utils.data import Dataset


def eda(text: str, operation: str, rng: random.Random, *, strength: float, vocabulary: Sequence[str]) -> str:
    """One EDA operation applied to `text` (see the module docstring)."""
    words = text.split()
    if not words:
        return text
    n = max(1, round(strength * len(words)))
    if operation == "delete":
        if len(words) == 1:
            return text
        kept = [w for w in words if rng.random() >= strength]
        if not kept:
            kept = [words[rng.randrange(len(words))]]
        words = kept
    elif operation == "swap":
        if len(words) == 1:
            return text
        for _ in range(n):
            i, j = rng.randrange(len(words)), rng.randrange(len(words))
            words[i], words[j] = words[j], words[i]
    elif operation == "insert":
        if not vocabulary:
            return text
        for _ in range(n):
            words.insert(rng.randrange(len(words) + 1), vocabulary[rng.randrange(len(vocabulary))])
    else:
        raise ValueError(f"unknown augmentation {operation!r}")
    return " ".join(words)


class AugmentedDataset(Dataset):
    """The encoded training set; rows of `classes` are rewritten with probability `probability` when drawn."""

    def __init__(self, base, texts: Sequence[str], labels: Sequence[int], tokenizer, *, max_length: int,
                 classes: set[int], probability: float, operations: Sequence[str], strength: float, seed: int,
                 pairs: Sequence[str] | None = None):
        if len(base) != len(texts) or len(texts) != len(labels):
            raise ValueError("the encoded rows, texts and labels must line up")
        self.base = base
        self.texts = list(texts)
        self.pairs = list(pairs) if pairs is not None else None
        self.labels = [int(x) for x in labels]
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.classes = set(classes)
        self.probability = float(probability)
        self.operations = list(operations)
        self.strength = float(strength)
        self.seed = int(seed)
        self.vocabulary: dict[int, list[str]] = {c: [] for c in self.classes}
        for text, label in zip(self.texts, self.labels):
            if label in self.vocabulary:
                self.vocabulary[label].extend(text.split())
        self.draws = [0] * len(self.texts)
        self.augmented = 0  # how many draws were rewritten

    def __len__(self) -> int:
        return len(self.base)

    def lengths(self) -> list[int]:
        return self.base.lengths()

    def rewrite(self, index: int) -> str | None:
        """The rewritten text for this draw of row `index`, or None when it is left as it is."""
        count = self.draws[index]
        self.draws[index] += 1
        label = self.labels[index]
        if label not in self.classes or not self.probability:
            return None
        rng = random.Random(f"{self.seed}:{index}:{count}")
        if rng.random() >= self.probability:
            return None
        operation = self.operations[rng.randrange(len(self.operations))]
        return eda(self.texts[index], operation, rng, strength=self.strength, vocabulary=self.vocabulary[label])

    def __getitem__(self, index: int) -> dict:
        text = self.rewrite(index)
        if text is None:
            return self.base[index]
        self.augmented += 1
        pair = self.pairs[index] if self.pairs is not None else None
        encoded = self.tokenizer(text, pair, truncation="longest_first" if pair is not None else True,
                                 max_length=self.max_length, padding=False)
        feature = {k: encoded[k] for k in self.base[index] if k != "labels"}
        feature["labels"] = self.base[index]["labels"]
        return feature
