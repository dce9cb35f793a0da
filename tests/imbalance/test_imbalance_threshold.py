"""Binary decision thresholds, the new metrics, the collapse warning, and a threshold that survives
a reload: stored in RUN/model/config.json and applied by predict and evaluate."""

import json

import numpy as np
import pytest

from imbalance_data import quiet, recipe, skewed_rows, write_csv
from tunesmith.errors import RecipeError
from tunesmith.evaluation.classification import METRIC_NAMES, classification_metrics
from tunesmith.imbalance.configure import collapse_message
from tunesmith.imbalance.threshold import decide, score_at, threshold_scores, tune_threshold

P = np.array([0.9, 0.6, 0.4, 0.3, 0.2, 0.1])
POS = np.array([1, 1, 1, 0, 0, 0], dtype=bool)


def test_tuning_finds_the_separating_cut():
    best = tune_threshold(P, POS, "positive_f1")
    assert best["value"] == pytest.approx(0.35)  # midway between 0.4 (last positive) and 0.3
    assert best["score"] == 1.0
    assert best["score_at_0.5"] == pytest.approx(0.8)  # tp 2, fn 1: 2*2 / (2*2 + 1)


def test_every_cut_scores_like_a_direct_count():
    thresholds, scores = threshold_scores(P, POS, "macro_f1")
    assert len(thresholds) == len(P) + 1  # "nothing positive", then one cut per distinct value
    for t, s in zip(thresholds, scores):
        assert s == pytest.approx(score_at(P, POS, "macro_f1", t))
    assert scores[0] == pytest.approx((0 + 2 * 3 / (2 * 3 + 3)) / 2)  # nothing positive: F1(neg) = 2/3


def test_ties_go_to_the_cut_closest_to_one_half():
    p = np.array([0.95, 0.9, 0.2, 0.05])
    assert tune_threshold(p, np.array([1, 1, 0, 0], bool), "accuracy")["value"] == pytest.approx(0.55)


def test_decide_applies_a_threshold_to_the_positive_class_only_for_binary():
    probs = np.array([[0.7, 0.3], [0.4, 0.6], [0.2, 0.8]])
    assert decide(probs).tolist() == [0, 1, 1]
    assert decide(probs, 0.25, positive=1).tolist() == [1, 1, 1]
    assert decide(probs, 0.7, positive=1).tolist() == [0, 0, 1]
    assert decide(probs, 0.5, positive=0).tolist() == [0, 1, 1]
    three = np.array([[0.2, 0.3, 0.5]])
    assert decide(three, 0.1, positive=1).tolist() == [2]


def test_balanced_accuracy_and_pr_auc():
    y_true = np.array([1, 0, 1, 0, 0, 0])
    probs = np.array([[0.1, 0.9], [0.2, 0.8], [0.7, 0.3], [0.9, 0.1], [0.8, 0.2], [0.6, 0.4]])
    y_pred = probs.argmax(-1)  # [1, 1, 0, 0, 0, 0]
    m = classification_metrics(y_true, y_pred, ["neg", "pos"], probs=probs, positive=1)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    # ranking by P(pos): pos 0.9, neg 0.8, neg 0.4, pos 0.3 -> AP = 1/2 * 1 + 1/2 * 2/4
    assert m["pr_auc"] == pytest.approx(0.75)
    assert m["positive_label"] == "pos" and m["per_class"]["pos"]["recall"] == 0.5
    assert {"balanced_accuracy", "pr_auc"} <= set(METRIC_NAMES)
    assert "pr_auc" not in classification_metrics(y_true, y_pred, ["neg", "pos"])  # no probabilities


def test_collapse_warning():
    y_true = np.array([0] * 80 + [1] * 20)
    collapsed = collapse_message(y_true, np.zeros(100, int), ["ham", "spam"], 0.95)
    assert "collapsed towards 'ham'" in collapsed and "'spam' 0 times for 20 true" in collapsed
    healthy = np.array([0] * 78 + [1] * 2 + [1] * 15 + [0] * 5)
    assert collapse_message(y_true, healthy, ["ham", "spam"], 0.95) is None
    # a majority that really is 97% of the data is not a collapse
    skew = np.array([0] * 97 + [1] * 3)
    assert collapse_message(skew, np.zeros(100, int), ["ham", "spam"], 0.95) is None


@pytest.fixture(scope="module")
def threshold_run(tiny_bert_dir, tmp_path_factory):
    from tunesmith.config.recipe import validate_recipe
    from tunesmith.recipes.finetune import finetune

    root = tmp_path_factory.mktemp("threshold")
    train = write_csv(root / "train.csv", skewed_rows(120, positive_every=4, seed=3))
    held = write_csv(root / "held.csv", [(lab, t.replace(" n", " h")) for lab, t in skewed_rows(40, 4, seed=11)])
    raw = recipe(tiny_bert_dir, train, root / "run", epochs=2,
                 early_stopping={"metric": "pr_auc"},
                 imbalance={"class_weights": "sqrt_inverse", "threshold": {"tune": True, "metric": "positive_f1"}})
    return finetune(validate_recipe(raw), echo=quiet), root / "run", held


def test_threshold_is_stored_with_the_model(threshold_run):
    result, run, _ = threshold_run
    stored = json.loads((run / "model" / "config.json").read_text())["tunesmith_threshold"]
    assert stored == result["imbalance"]["threshold"]
    assert stored["label"] == "pos" and stored["metric"] == "positive_f1" and 0 < stored["value"] < 1
    assert json.loads((run / "model" / "config.json").read_text())["tunesmith_positive_label"] == "pos"
    assert result["best"]["metric"] == "pr_auc" and "pr_auc" in result["validation"]
    assert "balanced_accuracy" in result["validation"]
    assert json.loads((run / "eval.json").read_text())["imbalance"]["threshold"] == stored


def test_predict_and_evaluate_apply_the_stored_threshold(threshold_run):
    from tunesmith.recipes.predict import TrainedRun

    result, run, held = threshold_run
    trained = TrainedRun(run)
    assert trained.task.threshold == result["imbalance"]["threshold"]
    frame = trained.predict_frame(trained.read(str(held), require_label=False))
    t = trained.task.threshold["value"]
    assert (frame["prediction"] == np.where(frame["prob_pos"] >= t, "pos", "neg")).all()

    # move the stored threshold out of reach: a reloaded run must now never predict 'pos'
    config_path = run / "model" / "config.json"
    config = json.loads(config_path.read_text())
    config["tunesmith_threshold"]["value"] = 1.01
    config_path.write_text(json.dumps(config))
    try:
        strict = TrainedRun(run)
        assert set(strict.predict_texts(["a wonderful superb film", "awful boring plot"])["prediction"]) == {"neg"}
        metrics = strict.evaluate_file(str(held))
        assert metrics["per_class"]["pos"]["recall"] == 0.0
        assert metrics["pr_auc"] == pytest.approx(trained.evaluate_file(str(held))["pr_auc"])  # ranking unchanged
    finally:
        config["tunesmith_threshold"]["value"] = t
        config_path.write_text(json.dumps(config))


def test_threshold_and_pr_auc_need_a_binary_task(tiny_bert_dir, tmp_path):
    from tunesmith.config.recipe import validate_recipe
    from tunesmith.tasks import make_task

    rows = [(["a", "b", "c"][i % 3], f"text number {i}") for i in range(30)]
    train = write_csv(tmp_path / "three.csv", rows)
    for extra, message in (({"imbalance": {"threshold": {"tune": True}}}, "threshold tuning is for binary"),
                           ({"train": {"early_stopping": {"metric": "pr_auc"}}}, "pr_auc is defined for binary")):
        raw = recipe(tiny_bert_dir, train, tmp_path / "run")
        for key, value in extra.items():
            raw[key].update(value)
        with pytest.raises(RecipeError, match=message):
            make_task(validate_recipe(raw)).load_data()
