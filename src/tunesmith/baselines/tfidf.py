"""The TF-IDF baseline: word and character n-gram TF-IDF features + logistic regression.

    features   FeatureUnion of TfidfVectorizer(word 1-2 grams) and TfidfVectorizer(char_wb 2-5 grams, min_df 2),
               sublinear term frequency
    model      LogisticRegression (L2, lbfgs); C along C_GRID, chosen by stratified k-fold cross-validation on
               the training set (from the grid's middle outwards: choose_c), scored with the metric the
               fine-tuned model is selected on
               (macro_f1 -> f1_macro, accuracy, weighted_f1 -> f1_weighted, balanced_accuracy,
               loss -> neg_log_loss; any other, e.g. pr_auc, -> f1_macro)

The vectorizers are refitted inside every fold, so the held-out fold never shapes the vocabulary or the
IDF weights: each C's score is `GridSearchCV(Pipeline([features, LogisticRegression]), {"C": C_GRID},
cv=StratifiedKFold(k, shuffle=True, random_state=seed))`'s to float rounding, only faster: the training texts are
analysed into n-gram counts once (CountedTexts), and each fold's vocabulary, IDF weights and features are derived
from the counts of its rows, once per round of the search. The folds are scored in parallel worker processes (one per
CPU core, up to one per fold) when the training set has PARALLEL_MIN_ROWS rows or more: every fold computes the same
numbers in a worker as in this process. The chosen C is then refitted on the whole training set and scored on every
held-out split with the same metrics as the fine-tuned model (plus log loss).
"""

from __future__ import annotations

import os
import time
import warnings

import numpy as np

from tunesmith.evaluation.classification import classification_metrics

C_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0)
SCORING = {"accuracy": "accuracy", "macro_f1": "f1_macro", "weighted_f1": "f1_weighted",
           "balanced_accuracy": "balanced_accuracy", "loss": "neg_log_loss"}
PAIR_SEPARATOR = "\n"
PARALLEL_MIN_ROWS = 2000  # below it, starting the worker processes (~1 s) costs more than the folds take


def make_features():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    return FeatureUnion([
        ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True)),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)),
    ])


class CountedTexts:
    """The training texts analysed once by each vectorizer of make_features() (its n-gram counts, min_df 1).

    `fitted(rows)` gives what make_features().fit(texts[rows]) would: each vectorizer's vocabulary is the terms
    of those rows with document frequency >= its min_df (in the sorted order CountVectorizer keeps), its IDF
    weights those rows' - without analysing any text again. The features equal scikit-learn's up to float
    rounding (~1e-16: the order of a row's entries, in which scikit-learn's own fit_transform and transform of
    the same rows differ too)."""

    def __init__(self, texts: np.ndarray):
        from sklearn.feature_extraction.text import CountVectorizer

        count_params = set(CountVectorizer().get_params())
        self.blocks = []
        for _, vectorizer in make_features().transformer_list:
            params = vectorizer.get_params()
            if not isinstance(params["min_df"], int) or params["max_df"] != 1.0 or params["max_features"]:
                raise ValueError("CountedTexts supports an integer min_df only, without max_df or max_features")
            counter = CountVectorizer(**{**{k: v for k, v in params.items() if k in count_params}, "min_df": 1})
            self.blocks.append((counter, counter.fit_transform(texts).tocsr(), params))

    def without_vocabularies(self) -> "CountedTexts":
        """The counts alone, for the cross-validation's workers: `fitted(rows).rows(r)` needs no vocabulary (only
        `transform` of new texts does), and the character n-gram vocabulary is the bulk of what a worker is sent."""
        light = object.__new__(CountedTexts)
        light.blocks = [(None, counts, params) for _, counts, params in self.blocks]
        return light

    def fitted(self, rows: np.ndarray) -> "FoldFeatures":
        from sklearn.feature_extraction.text import TfidfTransformer

        parts = []
        for counter, counts, params in self.blocks:
            subset = counts[rows]
            keep = np.flatnonzero(np.bincount(subset.indices, minlength=counts.shape[1]) >= params["min_df"])
            idf = TfidfTransformer(norm=params["norm"], use_idf=params["use_idf"], smooth_idf=params["smooth_idf"],
                                   sublinear_tf=params["sublinear_tf"]).fit(subset[:, keep].astype(np.float64))
            parts.append((counter, counts, keep, idf))
        return FoldFeatures(parts)


class FoldFeatures:
    """make_features() as fitted on some training rows: `rows(r)` for training rows (from their counts),
    `transform(texts)` for any other texts."""

    def __init__(self, parts):
        self.parts = parts

    def rows(self, rows: np.ndarray):
        return self._stack([idf.transform(counts[rows][:, keep].astype(np.float64))
                            for _, counts, keep, idf in self.parts])

    def transform(self, texts: np.ndarray):
        return self._stack([idf.transform(counter.transform(texts)[:, keep].astype(np.float64))
                            for counter, _, keep, idf in self.parts])

    @staticmethod
    def _stack(blocks):
        from scipy import sparse

        return sparse.hstack(blocks).tocsr()


def make_classifier(c: float = 1.0):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=2000)


def texts_of(frame) -> np.ndarray:
    """One string per row: the text, or text and text_pair joined by a newline."""
    texts = frame["text"].astype(str)
    if "text_pair" in frame.columns:
        texts = texts + PAIR_SEPARATOR + frame["text_pair"].astype(str)
    return np.asarray(texts.tolist(), dtype=object)


def scoring_for(metric: str) -> str:
    """The scikit-learn scorer matching the recipe's early-stopping metric (f1_macro for any other)."""
    return SCORING.get(metric, "f1_macro")


def choose_c(texts: np.ndarray, y: np.ndarray, *, scoring: str, folds: int, seed: int,
             counted: CountedTexts | None = None, workers: int | None = None) -> dict:
    """Cross-validate C along C_GRID -> {"C", "folds", "metric", "scores": {C: mean score of each C tried}}.

    The walk starts from the grid's middle three values and goes on outwards while the best so far is at an
    edge of what was tried (next_cs): the C GridSearchCV over the whole grid chooses whenever the mean score
    rises then falls along the grid, the usual shape, for 3 of its 5 fits when the best is inside. Folds are
    capped by the rarest class (each fold needs every class); below 2 there is no search and C is 1.0.
    `counted`: these texts already analysed (else they are, here). `workers`: processes scoring the folds
    (default: fold_workers); the scores do not depend on it.
    """
    from joblib import Parallel, delayed
    from sklearn.model_selection import StratifiedKFold

    folds = int(min(folds, np.bincount(y).min()))
    if folds < 2:
        return {"C": 1.0, "folds": 0, "metric": scoring, "scores": {},
                "note": "a class has fewer than 2 training rows: no cross-validation, C=1"}
    counts = (counted or CountedTexts(texts)).without_vocabularies()
    splits = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(texts, y))
    workers = fold_workers(len(texts), folds) if workers is None else workers
    means: dict[float, float] = {}
    with Parallel(n_jobs=workers, backend="loky") as parallel:
        cs = list(C_GRID[1:-1])
        while cs:
            per_fold = parallel(delayed(score_fold)(counts, y, fit_rows, held_rows, scoring, cs)
                                for fit_rows, held_rows in splits)
            means.update(zip(cs, np.asarray(per_fold).mean(axis=0)))  # folds x C -> the mean score of each C
            cs = next_cs(means)
    return {"C": best_c(means), "folds": folds, "metric": scoring,
            "scores": {f"{c:g}": float(means[c]) for c in sorted(means)}}


def best_c(means: dict[float, float]) -> float:
    """The C of the highest mean score; of equal scores the smallest C, as GridSearchCV."""
    return max(sorted(means), key=lambda c: means[c])


def next_cs(means: dict[float, float]) -> list[float]:
    """The grid's neighbours of the best C so far that were not tried yet: none once the best is inside."""
    best = C_GRID.index(best_c(means))
    return [C_GRID[i] for i in (best - 1, best + 1) if 0 <= i < len(C_GRID) and C_GRID[i] not in means]


def score_fold(counts: CountedTexts, y: np.ndarray, fit_rows: np.ndarray, held_rows: np.ndarray,
               scoring: str, cs: list[float]) -> list[float]:
    """One fold: features fitted on its training rows, a classifier per C in `cs`, each scored on the held-out
    rows."""
    from sklearn.metrics import get_scorer

    scorer = get_scorer(scoring)
    features = counts.fitted(fit_rows)
    x_fit, x_held = features.rows(fit_rows), features.rows(held_rows)
    return [float(scorer(_fit(make_classifier(c), x_fit, y[fit_rows]), x_held, y[held_rows])) for c in cs]


def fold_workers(rows: int, folds: int) -> int:
    """Processes for the folds: one per usable CPU core, at most one per fold; one below PARALLEL_MIN_ROWS."""
    if rows < PARALLEL_MIN_ROWS:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(folds, cores))


def tfidf_scores(train_texts: np.ndarray, y_train: np.ndarray, eval_texts: dict[str, np.ndarray],
                 y_eval: dict[str, np.ndarray], names: list[str], *, metric: str = "macro_f1", folds: int = 5,
                 seed: int = 0, positive: int | None = None) -> dict[str, dict]:
    """Fit on the training texts, score every held-out split -> {split: metrics}.

    `positive` (binary tasks) adds the positive class's PR-AUC, as for the fine-tuned model."""
    from sklearn.metrics import log_loss

    started = time.perf_counter()
    y_train = np.asarray(y_train)
    if len(np.unique(y_train)) < 2:
        return {split: {"skipped": "the training data has a single class"} for split in eval_texts}
    try:
        counted = CountedTexts(train_texts)
        search = choose_c(train_texts, y_train, scoring=scoring_for(metric), folds=folds, seed=seed, counted=counted)
        every_row = np.arange(len(train_texts))
        features = counted.fitted(every_row)
        classifier = _fit(make_classifier(search["C"]), features.rows(every_row), y_train)
    except ValueError as exc:  # e.g. "empty vocabulary": texts without word or repeated character n-grams
        return {split: {"skipped": f"no TF-IDF features ({exc})"} for split in eval_texts}
    fit_seconds = time.perf_counter() - started
    labels = list(range(len(names)))
    out = {}
    for split, texts in eval_texts.items():
        x = features.transform(texts)
        y = np.asarray(y_eval[split])
        probs = np.zeros((len(y), len(names)))
        probs[:, classifier.classes_] = classifier.predict_proba(x)
        scores = classification_metrics(y, classifier.predict(x), names, probs=probs, positive=positive)
        scores["loss"] = float(log_loss(y, probs, labels=labels)) if len(y) else None
        out[split] = {**scores, "C": search["C"], "cv": search, "features": int(x.shape[1]),
                      "fit_s": round(fit_seconds, 2)}
    return out


def _fit(classifier, x, y):
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return classifier.fit(x, y)
