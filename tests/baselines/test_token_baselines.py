"""Token classification baselines (baselines/token_baselines.py): the majority tag by hand, and a CRF that learns
from context what a word-by-word lookup cannot (capitalised words after "Mr." are people, after "in" places)."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from tunesmith.baselines.token_baselines import (majority_lexicon, majority_tags, sentence_features, token_baselines,
                                                 word_shape)
from tunesmith.evaluation.token_classification import entity_metrics


def frame(sentences: list[list[tuple[str, str]]]) -> pd.DataFrame:
    return pd.DataFrame({"tokens": [[w for w, _ in s] for s in sentences],
                         "tags": [[t for _, t in s] for s in sentences]})


def test_majority_tag_by_hand():
    words = [["John", "saw", "Paris"], ["Paris", "Hilton", "smiled"], ["Paris", "is", "big"]]
    tags = [["B-PER", "O", "B-LOC"], ["B-PER", "I-PER", "O"], ["B-LOC", "O", "O"]]
    lexicon = majority_lexicon(words, tags)
    assert lexicon["Paris"] == "B-LOC"  # 2 of 3
    assert lexicon["Hilton"] == "I-PER"
    # "Hilton" alone after an unseen word: I-PER after O, repaired to start an entity; "Mary" unseen: O
    assert majority_tags(lexicon, ["Mary", "Hilton", "saw", "Paris"]) == ["O", "B-PER", "O", "B-LOC"]


def test_majority_baseline_scores_by_hand():
    train = frame([[("John", "B-PER"), ("saw", "O"), ("Paris", "B-LOC")]])
    test = frame([[("John", "B-PER"), ("saw", "O"), ("Rome", "B-LOC")],   # John right, Rome unseen: missed
                  [("Paris", "B-ORG"), ("won", "O")]])                    # Paris predicted LOC: wrong type
    scores = token_baselines(train, {"test": test}, crf=False)["test"]
    assert list(scores) == ["majority_tag"]
    m = scores["majority_tag"]
    # 3 gold, 2 predicted (PER, LOC), 1 right: P = 1/2, R = 1/3, F1 = 2/5; tags right: 3 of 5 (Rome, Paris wrong)
    assert (m["precision"], m["f1"], m["token_accuracy"]) == (0.5, pytest.approx(0.4), pytest.approx(0.6))
    assert m["recall"] == pytest.approx(1 / 3)
    assert m["type_confusion"]["gold"] == {"LOC": {"missed": 1}, "ORG": {"LOC": 1}, "PER": {"PER": 1}}


def test_word_shape_and_features():
    assert [word_shape(w) for w in ("McDonald", "1996-08-22", "EU", "U.S.", "x")] == [
        "XxXx", "d-d-d", "X", "X.X.", "x"]
    features = sentence_features(["Mr.", "Smith", "left"])
    assert features[0]["BOS"] and "EOS" not in features[0] and features[2]["EOS"]
    assert features[1]["-1:lower"] == "mr." and features[1]["+1:lower"] == "left" and features[1]["istitle"]
    assert features[0]["+2:lower"] == "left" and "+2:shape" not in features[0]
    assert features[2]["suffix3"] == "eft" and features[2]["suffix2"] == "ft" and features[2]["shape"] == "x"


def synthetic(rng: random.Random, names: list[str], places: list[str], n: int) -> pd.DataFrame:
    verbs = ["met", "visited", "called", "thanked", "saw"]
    sentences = []
    for _ in range(n):
        person, place = rng.choice(names), rng.choice(places)
        if rng.random() < 0.5:
            s = [("Mr.", "O"), (person, "B-PER"), (rng.choice(verbs), "O"), ("friends", "O"), ("in", "O"),
                 (place, "B-LOC"), (".", "O")]
        else:
            s = [("Yesterday", "O"), ("in", "O"), (place, "B-LOC"), (",", "O"), ("Mr.", "O"), (person, "B-PER"),
                 (rng.choice(verbs), "O"), ("us", "O")]
        sentences.append(s)
    return frame(sentences)


def test_crf_beats_majority_on_unseen_names_that_context_gives_away():
    rng = random.Random(0)
    letters = "bcdfghklmnprstvz"
    made_up = sorted({rng.choice(letters).upper() + "".join(rng.choice("aeiou" + letters) for _ in range(5))
                      for _ in range(200)})
    train_names, test_names = made_up[:60], made_up[60:120]
    train_places, test_places = made_up[120:150], made_up[150:180]
    train = synthetic(rng, train_names, train_places, 150)
    test = synthetic(rng, test_names, test_places, 60)  # every name and place unseen in training
    scores = token_baselines(train, {"test": test}, seed=0, max_iterations=50)["test"]
    majority, crf = scores["majority_tag"], scores["crf"]
    assert majority["f1"] == 0.0 and majority["predicted"] == 0  # unseen words are O: no entity found
    assert crf["f1"] > 0.95
    assert crf["per_type"]["PER"]["recall"] > 0.95 and crf["per_type"]["LOC"]["recall"] > 0.95
    assert crf["iterations"] == 50 and crf["features"] > 0 and crf["fit_s"] >= 0
    again = token_baselines(train, {"test": test}, majority=False, seed=1, max_iterations=50)["test"]
    assert list(again) == ["crf"] and again["crf"]["f1"] == crf["f1"]  # L-BFGS: the same model whatever the seed


def test_crf_predictions_score_like_the_metric():
    train = frame([[("Mr.", "O"), ("Lee", "B-PER"), ("ran", "O")]] * 5)
    out = token_baselines(train, {"validation": train, "test": train}, majority=False, max_iterations=20)
    assert set(out) == {"validation", "test"}
    assert out["test"]["crf"]["f1"] == entity_metrics(list(train["tags"]), list(train["tags"]))["f1"] == 1.0


@pytest.mark.shared_data
def test_conll2003_crf_on_a_slice_beats_the_majority_tag(shared_data):
    """The full run (eng.train -> eng.testb, 100 iterations) gives CRF F1 0.822, majority tag 0.549 (README); a
    slice keeps the test short: 2,000 training sentences, 50 iterations, the first 1,000 test sentences."""
    from tunesmith.config.recipe import DataSpec
    from tunesmith.data.token_data import read_token_file

    folder = shared_data / "conll2003"
    if not (folder / "eng.train").is_file():
        pytest.skip(f"{folder} has no eng.train")
    spec = DataSpec(train=str(folder / "eng.train"), tag_scheme="iob1", columns={"tokens": 0, "tags": 3})
    train = read_token_file(spec, folder / "eng.train").iloc[:2000]
    test = read_token_file(spec, folder / "eng.testb").iloc[:1000]
    scores = token_baselines(train, {"test": test}, max_iterations=50)["test"]
    assert scores["crf"]["entities"] == scores["majority_tag"]["entities"] > 1000
    assert 0.6 < scores["crf"]["f1"] < 0.95
    assert scores["crf"]["f1"] > scores["majority_tag"]["f1"] + 0.15
