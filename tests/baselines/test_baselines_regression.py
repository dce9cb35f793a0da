"""The regression baselines: the training mean, and TF-IDF + ridge (alpha by cross-validation, as GridSearchCV
would choose it) on synthetic texts whose target is a linear function of word counts; STS-B from ../shared/data."""

from __future__ import annotations

import random

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline

from tunesmith.baselines.regression import ALPHAS, choose_alpha, regression_baselines, texts_for_regression
from tunesmith.baselines.tfidf import make_features

FILLER = ("the a of and to in is it that was for on with as at by this from or an be are".split())
WEIGHTS = {"superb": 3.0, "great": 2.0, "fine": 1.0, "dull": -1.0, "bad": -2.0, "awful": -3.0}


def word_count_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Texts of 8 filler words and 0-4 weighted words; the target is the sum of the weights (plus 2 per
    'great' in the second target), so it is linear in the word counts."""
    rng = random.Random(seed)
    texts, y = [], []
    for _ in range(n):
        signal = [rng.choice(list(WEIGHTS)) for _ in range(rng.randint(0, 4))]
        words = rng.sample(FILLER, 8) + signal
        rng.shuffle(words)
        texts.append(" ".join(words))
        y.append([sum(WEIGHTS[w] for w in signal), 2.0 * signal.count("great") + 1.0])
    return np.asarray(texts, dtype=object), np.asarray(y)


@pytest.fixture(scope="module")
def word_counts():
    train_texts, y_train = word_count_data(300, seed=0)
    test_texts, y_test = word_count_data(120, seed=1)
    return train_texts, y_train, test_texts, y_test


def test_tfidf_ridge_learns_a_linear_target_and_beats_the_mean(word_counts):
    train_texts, y_train, test_texts, y_test = word_counts
    out = regression_baselines(train_texts, y_train[:, 0], {"test": test_texts, "train": train_texts},
                               {"test": y_test[:, 0], "train": y_train[:, 0]}, ["score"])
    tfidf, mean = out["test"]["tfidf"], out["test"]["mean"]
    assert tfidf["pearson"] > 0.9 and tfidf["r2"] > 0.7
    assert tfidf["mse"] < 0.3 * mean["mse"]
    assert mean["pearson"] == 0.0 and "undefined (every prediction is" in mean["warnings"][0]
    assert mean["predicts"] == {"score": pytest.approx(y_train[:, 0].mean())}
    assert out["train"]["mean"]["r2"] == pytest.approx(0.0, abs=1e-12)  # the mean of the data it is scored on
    assert out["train"]["mean"]["mse"] == pytest.approx(y_train[:, 0].var())
    assert tfidf["alpha"] in ALPHAS and tfidf["cv"]["folds"] == 5 and tfidf["features"] > 0 and tfidf["fit_s"] >= 0


def test_several_targets_are_fitted_together(word_counts):
    train_texts, y_train, test_texts, y_test = word_counts
    out = regression_baselines(train_texts, y_train, {"test": test_texts}, {"test": y_test}, ["score", "greats"],
                               mean=False)
    assert set(out["test"]) == {"tfidf"}
    per_target = out["test"]["tfidf"]["per_target"]
    assert per_target["score"]["pearson"] > 0.9 and per_target["greats"]["pearson"] > 0.9
    assert out["test"]["tfidf"]["pearson"] == pytest.approx(
        (per_target["score"]["pearson"] + per_target["greats"]["pearson"]) / 2)


def test_alpha_is_what_grid_search_over_the_whole_pipeline_chooses(word_counts):
    texts, y = word_counts[0][:120], word_counts[1][:120, 0]
    search = choose_alpha(texts, y, folds=4, seed=3)
    grid = GridSearchCV(Pipeline([("features", make_features()), ("ridge", Ridge())]), {"ridge__alpha": ALPHAS},
                        cv=KFold(4, shuffle=True, random_state=3), scoring="r2").fit(texts, y)
    assert search["alpha"] == grid.best_params_["ridge__alpha"]
    assert list(search["scores"].values()) == pytest.approx(list(grid.cv_results_["mean_test_score"]))


def test_text_pairs_use_the_pair_features():
    """The target is the share of the first text's words that the second repeats: a relation between the two
    texts, which the elementwise product of their TF-IDF vectors shows and the joined text hides."""
    rng = random.Random(0)
    vocabulary = [f"w{i}" for i in range(60)]
    rows, y = [], []
    for _ in range(400):
        a = rng.sample(vocabulary, rng.randint(3, 10))
        shared = rng.randint(0, len(a))
        b = a[:shared] + rng.sample([w for w in vocabulary if w not in a], rng.randint(1, 10))
        rng.shuffle(b)
        rows.append((" ".join(a), " ".join(b)))
        y.append(shared / len(a))
    pairs, y = np.asarray(rows, dtype=object), np.asarray(y)
    joined = np.asarray([a + "\n" + b for a, b in rows], dtype=object)
    as_pairs = regression_baselines(pairs[:300], y[:300], {"test": pairs[300:]}, {"test": y[300:]}, ["shared"],
                                    mean=False)["test"]["tfidf"]
    as_text = regression_baselines(joined[:300], y[:300], {"test": joined[300:]}, {"test": y[300:]}, ["shared"],
                                   mean=False)["test"]["tfidf"]
    assert as_pairs["pearson"] > 0.8 and as_text["pearson"] < 0.3  # 0.90 and 0.10


def test_texts_for_regression_keeps_pairs_apart():
    import pandas as pd

    single = texts_for_regression(pd.DataFrame({"text": ["a", "b"], "label": [1, 2]}))
    pairs = texts_for_regression(pd.DataFrame({"text": ["a", "b"], "text_pair": ["c", "d"], "label": [1, 2]}))
    assert single.tolist() == ["a", "b"] and pairs.tolist() == [["a", "c"], ["b", "d"]]


def test_texts_without_features_are_skipped():
    out = regression_baselines(np.asarray(["", " "] * 3, dtype=object), np.arange(6.0),
                               {"test": np.asarray([""], dtype=object)}, {"test": np.zeros(1)}, ["y"], mean=False)
    assert out["test"]["tfidf"]["skipped"].startswith("no TF-IDF features (empty vocabulary")


def read_stsb(path) -> tuple[np.ndarray, np.ndarray]:
    """STS-B's csv: tab-separated, no header, no quoting; field 4 the score, 5 and 6 the sentences (some rows
    carry two more fields)."""
    rows, y = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        y.append(float(fields[4]))
        rows.append((fields[5], fields[6]))
    return np.asarray(rows, dtype=object), np.asarray(y)


@pytest.mark.shared_data
def test_stsb_dev_pearson_is_in_a_sane_range(shared_data):
    folder = shared_data / "stsb"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    train, y_train = read_stsb(folder / "sts-train.csv")
    dev, y_dev = read_stsb(folder / "sts-dev.csv")
    assert len(train) == 5749 and len(dev) == 1500
    out = regression_baselines(train, y_train, {"validation": dev}, {"validation": y_dev}, ["score"])["validation"]
    assert 0.7 < out["tfidf"]["pearson"] < 0.85  # 0.794 with the pair features (the joined text: 0.35)
    assert out["mean"]["r2"] < 0 < out["tfidf"]["r2"]
