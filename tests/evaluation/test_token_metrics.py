"""Token classification metrics (evaluation/token_classification.py) against numbers worked out by hand."""

from __future__ import annotations

import pytest

from tunesmith.evaluation.token_classification import (BOUNDED_METRICS, METRIC_NAMES, entity_metrics, metric_mode,
                                                       strict_entities)

GOLD = [["B-PER", "I-PER", "O", "B-LOC"],            # PER(0,2) LOC(3,4)
        ["B-ORG", "I-ORG", "I-ORG", "O", "B-MISC"]]  # ORG(0,3) MISC(4,5)
PRED = [["B-PER", "I-PER", "O", "B-ORG"],            # PER right; LOC predicted as ORG (same span)
        ["B-ORG", "I-ORG", "O", "O", "O"]]           # ORG(0,2): a partial span, wrong in strict mode; MISC missed


def test_hand_computed_scores_with_a_partial_span_counted_wrong():
    m = entity_metrics(GOLD, PRED)
    # 4 gold entities, 3 predicted, 1 right (PER): P = 1/3, R = 1/4, F1 = 2PR/(P+R) = (1/6)/(7/12) = 2/7
    assert m["precision"] == pytest.approx(1 / 3)
    assert m["recall"] == pytest.approx(1 / 4)
    assert m["f1"] == pytest.approx(2 / 7)
    # tags: sentence 1 has 3 of 4 right, sentence 2 has 3 of 5 (I-ORG/O at 2 and B-MISC/O at 4 wrong): 6/9
    assert m["token_accuracy"] == pytest.approx(6 / 9)
    assert (m["n"], m["entities"], m["predicted"]) == (2, 4, 3)
    assert m["per_type"] == {
        "LOC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
        "MISC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
        "ORG": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},  # 2 predicted, neither right
        "PER": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}}
    assert m["type_confusion"] == {
        "gold": {"LOC": {"ORG": 1}, "MISC": {"missed": 1}, "ORG": {"wrong span": 1}, "PER": {"PER": 1}},
        "spurious": {}}


def test_strict_mode_ignores_an_i_tag_that_starts_nothing():
    gold = [["O", "B-PER", "I-PER", "O"]]
    pred = [["O", "I-PER", "I-PER", "O"]]  # the lenient conlleval reading would call this PER(1,3) right
    m = entity_metrics(gold, pred)
    assert (m["precision"], m["recall"], m["f1"], m["predicted"]) == (0.0, 0.0, 0.0, 0)
    assert m["token_accuracy"] == pytest.approx(3 / 4)
    assert m["type_confusion"]["gold"] == {"PER": {"missed": 1}}
    assert strict_entities(pred) == [] and strict_entities(gold) == [(0, "PER", 1, 3)]


def test_spurious_predictions_and_a_perfect_type():
    gold = [["B-LOC", "O", "O", "B-PER", "I-PER"], ["O", "O"]]
    pred = [["B-LOC", "O", "B-ORG", "B-PER", "I-PER"], ["B-MISC", "I-MISC"]]
    m = entity_metrics(gold, pred)
    # gold LOC, PER both right; predicted ORG(2,3) and MISC(0,2) overlap nothing: P = 2/4, R = 2/2, F1 = 2/3
    assert (m["precision"], m["recall"]) == (0.5, 1.0)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["type_confusion"] == {"gold": {"LOC": {"LOC": 1}, "PER": {"PER": 1}},
                                   "spurious": {"MISC": 1, "ORG": 1}}
    assert m["per_type"]["ORG"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_overlapping_wrong_span_is_not_spurious():
    m = entity_metrics([["B-ORG", "I-ORG", "I-ORG"]], [["O", "B-ORG", "I-ORG"]])
    assert m["type_confusion"] == {"gold": {"ORG": {"wrong span": 1}}, "spurious": {}}
    assert (m["precision"], m["recall"], m["f1"]) == (0.0, 0.0, 0.0)


def test_no_entities_at_all_scores_zero_not_nan():
    m = entity_metrics([["O", "O"]], [["O", "O"]])
    assert (m["precision"], m["recall"], m["f1"], m["token_accuracy"]) == (0.0, 0.0, 0.0, 1.0)
    assert m["per_type"] == {} and m["entities"] == 0


def test_perfect_prediction():
    m = entity_metrics(GOLD, GOLD)
    assert (m["precision"], m["recall"], m["f1"], m["token_accuracy"]) == (1.0, 1.0, 1.0, 1.0)


def test_mismatched_lengths_are_a_value_error():
    with pytest.raises(ValueError, match="differ"):
        entity_metrics([["O", "O"]], [["O"]])
    with pytest.raises(ValueError, match="differ"):
        entity_metrics([["O"]], [])


def test_metric_names_and_modes():
    assert METRIC_NAMES == ("loss", "f1", "precision", "recall", "token_accuracy")
    assert set(BOUNDED_METRICS) == set(METRIC_NAMES) - {"loss"}
    assert [metric_mode(name) for name in METRIC_NAMES] == ["min", "max", "max", "max", "max"]
