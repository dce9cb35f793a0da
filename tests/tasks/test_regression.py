"""task: regression end to end on a tiny BERT: values in the user's units, several targets, symmetric pairs,
and a RUN/model that transformers loads as a regression head."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest
from transformers import AutoModelForSequenceClassification

from pipeline_helpers import POSITIVE, sentiment_rows, tiny_recipe
from tunesmith.config.recipe import validate_recipe
from tunesmith.errors import RecipeError
from tunesmith.recipes.finetune import finetune
from tunesmith.recipes.predict import TrainedRun


def scored_rows(n: int, seed: int = 0) -> list[dict]:
    """score = 10 x the number of positive words + 100 (far from 0 and 1: the scaling must be undone);
    length = the number of characters."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        text = sentiment_rows(1, seed=rng.randrange(10**6))[0][1]
        positives = sum(word in POSITIVE for word in text.split())
        rows.append({"text": text, "other": "the film", "score": 100 + 10 * positives + rng.random(),
                     "length": len(text)})
    return rows


def recipe_for(model_dir, tmp_path, rows, **overrides):
    path = tmp_path / "scores.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    raw = tiny_recipe(model_dir, path, tmp_path / "run", epochs=3, early_stopping={"metric": "pearson"})
    raw.update(task="regression", baselines=False, report={"html": False})
    raw["data"].update(columns={"text": "text", "label": "score"}, validation={"split": 0.25})
    for key, value in overrides.items():
        section, _, sub = key.partition("__")
        raw.setdefault(section, {})[sub] = value
    return validate_recipe(raw)


def test_predictions_are_in_the_users_units(tiny_bert_dir, tmp_path):
    result = finetune(recipe_for(tiny_bert_dir, tmp_path, scored_rows(80)), echo=lambda line: None)
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    scaling = config["tunesmith_target_scaling"]
    assert config["problem_type"] == "regression" and scaling["names"] == ["score"]
    assert 100 < scaling["mean"][0] < 130 and scaling["std"][0] > 1
    saved = pd.read_csv(tmp_path / "run" / "predictions_validation.csv")
    run = TrainedRun(tmp_path / "run")
    frame = run.read(str(tmp_path / "scores.csv"), require_label=False)
    predicted = run.predict_frame(frame)["prediction"].to_numpy()
    assert 90 < predicted.mean() < 140  # back on the data's scale, not standardised
    raw = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "model")
    assert raw.config.num_labels == 1 and raw.config.problem_type == "regression"
    assert set(saved.columns) == {"true_score", "pred_score"} and len(saved) == result["data"]["validation"]
    assert result["validation"]["rmse"] == pytest.approx(
        float(np.sqrt(np.mean((saved.pred_score - saved.true_score) ** 2))), rel=1e-4)


@pytest.mark.preflight_expected("lr_above_method")  # a high rate, so later evaluations are worse
def test_the_saved_predictions_are_the_best_models_when_a_later_evaluation_was_worse(tiny_bert_dir, tmp_path):
    """RUN/predictions_validation.csv comes from the final pass over the reloaded best model (saves_final_outputs),
    not from the newest evaluation during training, nor is that pass replaced by the best step's metrics."""
    recipe = recipe_for(tiny_bert_dir, tmp_path, scored_rows(80), train__lr=0.05, train__eval_every=2,
                        train__early_stopping={"metric": "pearson", "patience": 100})
    result = finetune(recipe, echo=lambda line: None)
    assert result["best"]["step"] < result["steps"]  # later evaluations were worse: the newest is not the best
    saved = pd.read_csv(tmp_path / "run" / "predictions_validation.csv")
    assert result["validation"]["rmse"] == pytest.approx(
        float(np.sqrt(np.mean((saved.pred_score - saved.true_score) ** 2))), rel=1e-4)
    assert result["validation"]["pearson"] == pytest.approx(result["best"]["value"], abs=1e-3)


def test_several_targets(tiny_bert_dir, tmp_path):
    recipe = recipe_for(tiny_bert_dir, tmp_path, scored_rows(80),
                        data__columns={"text": "text", "label": ["score", "length"]})
    result = finetune(recipe, echo=lambda line: None)
    assert set(result["validation"]["per_target"]) == {"score", "length"}
    predictions = TrainedRun(tmp_path / "run").predict_texts(["great movie", "awful film and story"])
    assert {"prediction_score", "prediction_length"} <= set(predictions.columns)


def test_symmetric_pairs_train_on_both_orders(tiny_bert_dir, tmp_path):
    recipe = recipe_for(tiny_bert_dir, tmp_path, scored_rows(40), regression__symmetric_pairs=True,
                        data__columns={"text": "text", "text_pair": "other", "label": "score"})
    lines = []
    result = finetune(recipe, echo=lines.append)
    assert any("both orders of each pair (60 rows per epoch)" in line for line in lines)
    assert result["steps"] == 3 * 8  # 60 rows / batch 8 -> 8 batches an epoch
    with pytest.raises(RecipeError, match="symmetric_pairs: swaps the two texts of a pair, but data.columns has no"):
        single = tmp_path / "single"
        single.mkdir()
        finetune(recipe_for(tiny_bert_dir, single, scored_rows(40), regression__symmetric_pairs=True))
