"""The real packaged MiniLM fine-tuned on a small slice of the shipped SMS Spam data."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunesmith.config.recipe import validate_recipe
from tunesmith.recipes.finetune import finetune

REPO = Path(__file__).resolve().parents[2]
SMS = REPO / "data" / "sms_spam" / "SMSSpamCollection"


@pytest.mark.real_model
def test_minilm_beats_the_majority_class_on_sms(tmp_path):
    lines = SMS.read_text(encoding="utf-8").splitlines()
    (tmp_path / "sms.tsv").write_text("\n".join(lines[:800]) + "\n", encoding="utf-8")
    recipe = validate_recipe({
        "model": "minilm",
        "data": {"train": str(tmp_path / "sms.tsv"), "header": False, "columns": {"label": 0, "text": 1},
                 "validation": {"split": 0.25}},
        "train": {"epochs": 2, "batch_size": 16, "lr": 1e-4, "max_length": 64, "seed": 0},
        "output": str(tmp_path / "run"),
    })
    result = finetune(recipe, echo=lambda *a: None)
    validation = result["validation"]
    majority = result["baselines"]["validation"]["majority"]
    assert majority["predicts"] == "ham"
    assert validation["macro_f1"] >= majority["macro_f1"] + 0.3
    assert validation["per_class"]["spam"]["f1"] >= 0.8
    assert validation["accuracy"] > majority["accuracy"]
