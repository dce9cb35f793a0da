"""A LoRA run stopped by SIGTERM and resumed from its checkpoint ends as the same run as one never stopped."""

from __future__ import annotations

import json

import yaml

from pipeline_helpers import sentiment_rows, tiny_recipe, write_csv
from tunesmith.cli import main


def test_lora_run_interrupted_and_resumed_is_the_same_run(tiny_bert_dir, tmp_path, monkeypatch, capsys):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(48, seed=5))
    raw = tiny_recipe(tiny_bert_dir, train, tmp_path / "straight", epochs=2, lr=5e-2)
    raw["method"] = {"name": "lora", "r": 4}
    raw["report"] = {"html": False}
    straight = tmp_path / "straight.yaml"
    straight.write_text(yaml.safe_dump(raw))
    assert main(["train", str(straight)]) == 0

    raw["output"] = str(tmp_path / "resumed")
    resumed = tmp_path / "resumed.yaml"
    resumed.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("TUNESMITH_TEST_SIGNAL_AFTER_STEP", "3:TERM")
    assert main(["train", str(resumed)]) == 143
    monkeypatch.delenv("TUNESMITH_TEST_SIGNAL_AFTER_STEP")
    assert main(["train", str(resumed), "--resume"]) == 0
    capsys.readouterr()

    a = json.loads((tmp_path / "straight" / "eval.json").read_text())
    b = json.loads((tmp_path / "resumed" / "eval.json").read_text())
    assert a["steps"] == b["steps"] == 10 and a["best"] == b["best"]
    assert a["validation"]["loss"] == b["validation"]["loss"]
    assert (tmp_path / "straight" / "adapter" / "adapter_model.safetensors").read_bytes() == \
        (tmp_path / "resumed" / "adapter" / "adapter_model.safetensors").read_bytes()
