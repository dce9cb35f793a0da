"""The TF-IDF baseline against a direct scikit-learn computation, on a fixed slice of the shipped SMS Spam data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, log_loss
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import FeatureUnion, Pipeline

from tunesmith.config.baselines import BaselinesSpec
from tunesmith.baselines.tfidf import C_GRID, PARALLEL_MIN_ROWS, choose_c, fold_workers, next_cs, tfidf_scores
from tunesmith.config.recipe import validate_recipe

SMS = Path(__file__).resolve().parents[2] / "data" / "sms_spam" / "SMSSpamCollection"


@pytest.fixture(scope="module")
def sms():
    """The first 450 distinct messages: 300 to train on, 150 held out (fixed, shipped with the project)."""
    frame = pd.read_csv(SMS, sep="\t", header=None, names=["label", "text"], quoting=3, dtype=str)
    frame = frame.drop_duplicates("text").head(450).reset_index(drop=True)
    y = (frame["label"] == "spam").astype(int).to_numpy()  # ids as the LabelMap gives them: ham 0, spam 1
    texts = np.asarray(frame["text"].tolist(), dtype=object)
    return texts[:300], y[:300], texts[300:], y[300:]


def direct_sklearn(texts, y, scoring, folds=5, seed=0):
    """The documented recipe written out with GridSearchCV over the whole pipeline."""
    pipeline = Pipeline([
        ("features", FeatureUnion([
            ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True)),
            ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)),
        ])),
        ("clf", LogisticRegression(max_iter=2000)),
    ])
    search = GridSearchCV(pipeline, {"clf__C": list(C_GRID)}, scoring=scoring,
                          cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed))
    return search.fit(texts, y)


def assert_grid_scores(scores: dict, search) -> None:
    """Each C the walk tried scores as GridSearchCV scores it, and the walk tried the grid's best C."""
    grid = dict(zip((f"{c:g}" for c in C_GRID), search.cv_results_["mean_test_score"]))
    assert scores == pytest.approx({c: grid[c] for c in scores}, abs=1e-9)
    assert f"{search.best_params_['clf__C']:g}" in scores and 3 <= len(scores) <= len(C_GRID)


def test_tfidf_matches_a_direct_scikit_learn_grid_search(sms):
    x_train, y_train, x_held, y_held = sms
    ours = tfidf_scores(x_train, y_train, {"validation": x_held}, {"validation": y_held}, ["ham", "spam"],
                        metric="macro_f1", folds=5, seed=0)["validation"]
    search = direct_sklearn(x_train, y_train, "f1_macro")
    assert ours["C"] == search.best_params_["clf__C"]
    assert_grid_scores(ours["cv"]["scores"], search)
    predicted = search.predict(x_held)
    assert ours["accuracy"] == pytest.approx(accuracy_score(y_held, predicted), abs=1e-9)
    assert ours["macro_f1"] == pytest.approx(f1_score(y_held, predicted, average="macro"), abs=1e-9)
    assert ours["loss"] == pytest.approx(log_loss(y_held, search.predict_proba(x_held)), abs=1e-6)
    # and it is a real baseline: far above always answering "ham" on this slice
    majority = accuracy_score(y_held, np.zeros_like(y_held))
    assert ours["accuracy"] > 0.95 > majority + 0.05 and ours["macro_f1"] > 0.85
    assert ours["n"] == 150 and ours["features"] > 1000 and set(ours["per_class"]) == {"ham", "spam"}


def test_the_search_scores_with_the_early_stopping_metric(sms):
    x_train, y_train, _, _ = sms
    chosen = choose_c(x_train[:150], y_train[:150], scoring="neg_log_loss", folds=3, seed=1)
    search = direct_sklearn(x_train[:150], y_train[:150], "neg_log_loss", folds=3, seed=1)
    assert chosen["metric"] == "neg_log_loss" and chosen["C"] == search.best_params_["clf__C"]
    assert_grid_scores(chosen["scores"], search)


def test_rare_classes_cap_the_folds_and_one_class_is_skipped():
    texts = np.asarray(["good movie", "great film", "bad plot", "awful acting", "nice story", "fine day"], dtype=object)
    y = np.array([0, 0, 1, 1, 0, 0])
    assert choose_c(texts, y, scoring="f1_macro", folds=5, seed=0)["folds"] == 2
    assert choose_c(texts[:5], np.array([0, 0, 0, 0, 1]), scoring="f1_macro", folds=5, seed=0)["folds"] == 0
    skipped = tfidf_scores(texts, np.zeros(6, dtype=int), {"validation": texts}, {"validation": y}, ["a", "b"])
    assert "single class" in skipped["validation"]["skipped"]
    letters = np.asarray(list("abcdab"), dtype=object)  # no word of 2+ characters, no repeated character n-gram
    assert "no TF-IDF features" in tfidf_scores(letters, y, {"v": letters}, {"v": y}, ["a", "b"])["v"]["skipped"]


@pytest.mark.parametrize("value, enabled", [
    (None, []), (False, []), (True, ["majority", "tfidf"]), ("scratch", ["scratch"]),
    (["tfidf", "scratch"], ["tfidf", "scratch"]), ({"majority": False}, ["tfidf"]),
])
def test_baselines_section_shorthands(value, enabled):
    recipe = validate_recipe({"model": "m", "data": {"train": "t.csv"}, "baselines": value})
    assert recipe.baselines.enabled == enabled
    assert BaselinesSpec().enabled == ["majority", "tfidf"]  # the default


def test_baselines_section_errors_name_the_key():
    from tunesmith.errors import RecipeError

    with pytest.raises(RecipeError, match="unknown baseline 'bert'"):
        validate_recipe({"model": "m", "data": {"train": "t.csv"}, "baselines": ["bert"]})
    with pytest.raises(RecipeError, match=r"did you mean 'baselines.tfidf'"):
        validate_recipe({"model": "m", "data": {"train": "t.csv"}, "baselines": {"tfdf": True}})


def test_the_folds_score_the_same_in_worker_processes(sms):
    """Two worker processes (what a training set of PARALLEL_MIN_ROWS rows or more gets on a 2-core machine)
    compute exactly the scores of one process, and both equal GridSearchCV's."""
    x_train, y_train, _, _ = sms
    serial = choose_c(x_train[:150], y_train[:150], scoring="f1_macro", folds=3, seed=2, workers=1)
    parallel = choose_c(x_train[:150], y_train[:150], scoring="f1_macro", folds=3, seed=2, workers=2)
    assert parallel == serial
    search = direct_sklearn(x_train[:150], y_train[:150], "f1_macro", folds=3, seed=2)
    assert_grid_scores(parallel["scores"], search)


def test_the_c_walk_goes_outwards_only_while_the_best_is_at_an_edge():
    middle = {1.0: 0.80, 10.0: 0.85, 100.0: 0.84}
    assert next_cs(middle) == []  # the best inside: the grid's other values are not fitted
    assert next_cs({1.0: 0.86, 10.0: 0.85, 100.0: 0.84}) == [0.1]
    assert next_cs({0.1: 0.87, 1.0: 0.86, 10.0: 0.85, 100.0: 0.84}) == []  # the grid's end
    assert next_cs({1.0: 0.80, 10.0: 0.82, 100.0: 0.84}) == [1000.0]
    assert next_cs({1.0: 0.85, 10.0: 0.85, 100.0: 0.84}) == [0.1]  # ties: the smaller C, as GridSearchCV


def test_fold_workers_are_one_for_small_data_and_at_most_one_per_fold():
    assert fold_workers(PARALLEL_MIN_ROWS - 1, folds=5) == 1
    assert 1 <= fold_workers(PARALLEL_MIN_ROWS, folds=5) <= 5
    assert fold_workers(10**6, folds=2) <= 2
