"""Baselines of token classification (NER), scored like the fine-tuned model (evaluation.token_classification):

    majority_tag   each word gets its most frequent training tag (exact word; unseen words: O; ties: the tag
                   seen first), then repaired to valid IOB2 (an I-X that continues nothing starts an entity)
    crf            a linear-chain CRF (sklearn-crfsuite: L-BFGS, c1 = c2 = 0.1, all possible transitions) on the
                   classic hand-made word features: the lower-cased word, its 2- and 3-letter suffixes, upper /
                   title / digit flags, its shape (Xxxx -> Xx, 1996 -> d), the same for the words 1 and 2 to the
                   left and right, and sentence begin/end marks

The recipe's `baselines:` section turns them on with its existing keys: `baselines.majority` is the majority tag,
`baselines.tfidf` (the bag-of-words model of text tasks) is the CRF, the feature-based model of this task.
L-BFGS training is deterministic: `seed` is accepted for the common baseline call and changes nothing.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence

import pandas as pd

from tunesmith.data.tag_schemes import OUTSIDE, to_iob2
from tunesmith.evaluation.token_classification import entity_metrics

CRF_SETTINGS = {"algorithm": "lbfgs", "c1": 0.1, "c2": 0.1, "all_possible_transitions": True}


def token_baselines(train: pd.DataFrame, held_out: Mapping[str, pd.DataFrame], *, majority: bool = True,
                    crf: bool = True, seed: int = 0, max_iterations: int = 100) -> dict[str, dict]:
    """{held-out split: {"majority_tag": metrics, "crf": metrics}} (only the baselines asked for); frames with
    `tokens` and IOB2 `tags` columns (data/token_data.py). The CRF's metrics add fit_s, iterations, features."""
    out: dict[str, dict] = {split: {} for split in held_out}
    train_words, train_tags = list(train["tokens"]), list(train["tags"])
    if majority:
        lexicon = majority_lexicon(train_words, train_tags)
        for split, frame in held_out.items():
            pred = [majority_tags(lexicon, words) for words in frame["tokens"]]
            out[split]["majority_tag"] = entity_metrics(list(frame["tags"]), pred)
    if crf:
        started = time.perf_counter()
        model = fit_crf(train_words, train_tags, max_iterations=max_iterations)
        fit_s = round(time.perf_counter() - started, 2)
        extra = {"fit_s": fit_s, "iterations": max_iterations, "features": len(model.state_features_)}
        for split, frame in held_out.items():
            pred = [list(tags) for tags in model.predict([sentence_features(words) for words in frame["tokens"]])]
            out[split]["crf"] = {**entity_metrics(list(frame["tags"]), pred), **extra}
    return out


# --- majority tag ---------------------------------------------------------------------------------------------------

def majority_lexicon(words: Sequence[Sequence[str]], tags: Sequence[Sequence[str]]) -> dict[str, str]:
    """{word: its most frequent training tag} (ties: the tag seen first)."""
    counts: dict[str, Counter] = {}
    for sentence, sentence_tags in zip(words, tags):
        for word, tag in zip(sentence, sentence_tags):
            counts.setdefault(word, Counter())[tag] += 1
    return {word: counter.most_common(1)[0][0] for word, counter in counts.items()}


def majority_tags(lexicon: Mapping[str, str], words: Sequence[str]) -> list[str]:
    """Each word's training tag (O when unseen), repaired to valid IOB2."""
    return to_iob2([lexicon.get(word, OUTSIDE) for word in words], "iob2")[0]


# --- CRF ------------------------------------------------------------------------------------------------------------

def word_shape(word: str) -> str:
    """Character classes with repeats collapsed: "McDonald" -> "XxXx", "1996-08-22" -> "d-d-d", "EU" -> "X"."""
    shape = []
    for char in word:
        kind = "X" if char.isupper() else "x" if char.islower() else "d" if char.isdigit() else char
        if not shape or shape[-1] != kind:
            shape.append(kind)
    return "".join(shape)


def _word_features(word: str, prefix: str) -> dict:
    return {f"{prefix}lower": word.lower(), f"{prefix}istitle": word.istitle(), f"{prefix}isupper": word.isupper(),
            f"{prefix}shape": word_shape(word)}


def sentence_features(words: Sequence[str]) -> list[dict]:
    """The CRF's feature dict of every word of a sentence."""
    features = []
    n = len(words)
    for i, word in enumerate(words):
        f = {"bias": 1.0, "suffix3": word[-3:], "suffix2": word[-2:], "isdigit": word.isdigit(),
             **_word_features(word, "")}
        for offset in (-2, -1, 1, 2):
            j = i + offset
            if 0 <= j < n:
                neighbour = _word_features(words[j], f"{offset:+d}:")
                f.update(neighbour if abs(offset) == 1 else {f"{offset:+d}:lower": neighbour[f"{offset:+d}:lower"]})
        if i == 0:
            f["BOS"] = True
        if i == n - 1:
            f["EOS"] = True
        features.append(f)
    return features


def fit_crf(words: Sequence[Sequence[str]], tags: Sequence[Sequence[str]], *, max_iterations: int = 100):
    """A sklearn_crfsuite.CRF fitted on the sentences' features and IOB2 tags."""
    import sklearn_crfsuite

    model = sklearn_crfsuite.CRF(**CRF_SETTINGS, max_iterations=max_iterations)
    model.fit([sentence_features(sentence) for sentence in words], [list(t) for t in tags])
    return model
