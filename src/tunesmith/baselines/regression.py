"""Baselines of a regression task: the training mean, and TF-IDF features + ridge regression.

    mean    predict every target's training mean for every row (R² 0 on the training data; the
            correlations are undefined for a constant prediction and reported as 0.0 with a warning)
    tfidf   TF-IDF features + scikit-learn Ridge, one model for every target at once. The features are
            those of the classification baseline (baselines.tfidf.make_features: word 1-2 grams and
            char_wb 2-5 grams, sublinear tf, each block L2-normalised):
              single texts   the text's TF-IDF vector
              text pairs     (an N x 2 array of text, text_pair; see texts_for_regression) the elementwise
                             product of the two texts' vectors, plus their word and character cosine
                             similarities (the sums of that product over each block). A pair's score
                             (STS-B similarity, say) depends on how the two texts relate, which a linear
                             model of the two texts joined together cannot express: on STS-B the joined
                             text reaches a dev Pearson of about 0.35, these features about 0.78
            The regularisation alpha is chosen from ALPHAS by k-fold cross-validation on the training set,
            scored by R² averaged over the targets (scale-free, so no target dominates the choice).

As in the classification baseline, the vectorizers are refitted inside every fold, so the held-out
fold never shapes the vocabulary or the IDF weights: the search is `GridSearchCV(Pipeline([features,
Ridge]), {"alpha": ALPHAS}, cv=KFold(k, shuffle=True, random_state=seed), scoring="r2")`, with each
fold's features computed once for all alphas. The chosen alpha is refitted on the whole training set
and scored on every held-out split with evaluation.regression.regression_metrics.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from tunesmith.baselines.tfidf import make_features, texts_of
from tunesmith.evaluation.regression import as_target_matrix, regression_metrics

ALPHAS = tuple(float(a) for a in np.logspace(-2, 3, 11))  # 0.01 ... 1000, half a decade apart


def texts_for_regression(frame) -> np.ndarray:
    """The baseline's input of a frame: its texts (1-D), or N x 2 (text, text_pair) when it has pairs."""
    if "text_pair" not in frame.columns:
        return texts_of(frame)
    return np.asarray(frame[["text", "text_pair"]].astype(str).to_numpy(), dtype=object)


class PairFeatures:
    """TF-IDF features of text pairs (an N x 2 array): the elementwise product of the two texts' TF-IDF
    vectors, then the word and the character cosine similarity of the pair (2 more columns)."""

    def fit(self, pairs: np.ndarray) -> PairFeatures:
        self.features = make_features().fit(np.concatenate([pairs[:, 0], pairs[:, 1]]))
        self.word_columns = len(self.features.named_transformers["word"].vocabulary_)
        return self

    def transform(self, pairs: np.ndarray):
        import scipy.sparse

        product = self.features.transform(pairs[:, 0]).multiply(self.features.transform(pairs[:, 1])).tocsr()
        cosines = np.column_stack([np.asarray(product[:, :self.word_columns].sum(axis=1)).ravel(),
                                   np.asarray(product[:, self.word_columns:].sum(axis=1)).ravel()])
        return scipy.sparse.hstack([product, scipy.sparse.csr_matrix(cosines)], format="csr")

    def fit_transform(self, pairs: np.ndarray):
        return self.fit(pairs).transform(pairs)


def features_for(texts: np.ndarray):
    """Unfitted features for `texts`: PairFeatures for an N x 2 array of pairs, else tfidf.make_features()."""
    return PairFeatures() if np.ndim(texts) == 2 else make_features()


def regression_baselines(train_texts: np.ndarray, y_train: np.ndarray, eval_texts: dict[str, np.ndarray],
                         y_eval: dict[str, np.ndarray], target_names: Sequence[str], *, folds: int = 5,
                         seed: int = 0, mean: bool = True, tfidf: bool = True) -> dict[str, dict]:
    """{split: {"mean": metrics, "tfidf": metrics}} for every held-out split (targets in the user's units).

    `train_texts` and each `eval_texts[split]` hold one string per row, or a (text, text_pair) row per
    example for pairs: texts_for_regression(frame)."""
    names = list(target_names)
    y_train = as_target_matrix(y_train)
    out: dict[str, dict] = {split: {} for split in eval_texts}
    if mean:
        for split, scores in mean_scores(y_train, y_eval, names).items():
            out[split]["mean"] = scores
    if tfidf:
        for split, scores in ridge_scores(train_texts, y_train, eval_texts, y_eval, names,
                                          folds=folds, seed=seed).items():
            out[split]["tfidf"] = scores
    return out


def mean_scores(y_train: np.ndarray, y_eval: dict[str, np.ndarray], names: list[str]) -> dict[str, dict]:
    """What predicting the training mean of every target scores on each split."""
    means = as_target_matrix(y_train).mean(axis=0)
    out = {}
    for split, y in y_eval.items():
        y = as_target_matrix(y)
        scores = regression_metrics(y, np.broadcast_to(means, y.shape), names)
        out[split] = {**scores, "predicts": {name: float(m) for name, m in zip(names, means)}}
    return out


def choose_alpha(texts: np.ndarray, y: np.ndarray, *, folds: int, seed: int) -> dict:
    """Cross-validate every alpha in ALPHAS -> {"alpha", "folds", "metric", "scores": {alpha: mean R²}}.

    Folds are capped by the number of rows; below 2 there is no search and alpha is 1.0."""
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold

    folds = int(min(folds, len(y)))
    if folds < 2:
        return {"alpha": 1.0, "folds": 0, "metric": "r2", "scores": {},
                "note": "fewer than 2 training rows: no cross-validation, alpha=1"}
    scores = np.zeros((len(ALPHAS), folds))
    splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (fit_rows, held_rows) in enumerate(splitter.split(texts)):
        features = features_for(texts)
        x_fit = features.fit_transform(texts[fit_rows])
        x_held = features.transform(texts[held_rows])
        for i, alpha in enumerate(ALPHAS):
            model = make_ridge(alpha).fit(x_fit, y[fit_rows])
            scores[i, k] = r2_score(y[held_rows], model.predict(x_held).reshape(len(held_rows), -1))
    means = scores.mean(axis=1)
    best = int(np.argmax(means))  # the first of equal scores, as GridSearchCV
    return {"alpha": ALPHAS[best], "folds": folds, "metric": "r2",
            "scores": {f"{a:g}": float(m) for a, m in zip(ALPHAS, means)}}


def make_ridge(alpha: float = 1.0):
    from sklearn.linear_model import Ridge

    return Ridge(alpha=alpha)


def ridge_scores(train_texts: np.ndarray, y_train: np.ndarray, eval_texts: dict[str, np.ndarray],
                 y_eval: dict[str, np.ndarray], names: list[str], *, folds: int = 5, seed: int = 0) -> dict[str, dict]:
    """Fit TF-IDF + ridge on the training texts, score every held-out split -> {split: metrics}."""
    started = time.perf_counter()
    train_texts, y_train = np.asarray(train_texts, dtype=object), as_target_matrix(y_train)
    try:
        search = choose_alpha(train_texts, y_train, folds=folds, seed=seed)
        features = features_for(train_texts)
        model = make_ridge(search["alpha"]).fit(features.fit_transform(train_texts), y_train)
    except ValueError as exc:  # e.g. "empty vocabulary": texts without word or repeated character n-grams
        return {split: {"skipped": f"no TF-IDF features ({exc})"} for split in eval_texts}
    fit_seconds = time.perf_counter() - started
    out = {}
    for split, texts in eval_texts.items():
        x = features.transform(np.asarray(texts, dtype=object))
        y = as_target_matrix(y_eval[split])
        scores = regression_metrics(y, model.predict(x).reshape(y.shape), names)
        out[split] = {**scores, "alpha": search["alpha"], "cv": search, "features": int(x.shape[1]),
                      "fit_s": round(fit_seconds, 2)}
    return out
