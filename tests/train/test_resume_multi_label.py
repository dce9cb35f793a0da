"""Exact resume of a multi_label run: stopped by SIGTERM after step 3 (in-process: the handler saves a checkpoint),
then resumed, it logs the same per-step losses, tunes the same thresholds and ends with the same weights as a run
that was never stopped (fp32 CPU)."""

from __future__ import annotations

import json

import numpy as np
import yaml
from safetensors.torch import load_file

from multi_label_helpers import multi_label_recipe, topic_rows, write_jsonl
from tunesmith.cli import main

STEPS = 10  # 40 training rows (of 54, validation 0.25) / 8 per batch = 5 steps per epoch, 2 epochs


def run_with(tmp_path, name, raw):
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(yaml.safe_dump({**raw, "output": str(tmp_path / name)}))
    return str(recipe), tmp_path / name


def losses(run):
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in records if r["type"] == "train"]


def test_sigterm_then_resume_is_the_same_run(tiny_bert_dir, tmp_path, monkeypatch, capsys):
    train = write_jsonl(tmp_path / "train.jsonl", topic_rows(54, seed=5))
    raw = multi_label_recipe(tiny_bert_dir, train, tmp_path / "unused", epochs=2, lr=1e-3)
    raw.update(baselines=False, report={"html": False}, checkpoint={"every_steps": 2, "keep_last": 2})
    recipe, reference = run_with(tmp_path, "reference", raw)
    assert main(["train", recipe]) == 0

    recipe, run = run_with(tmp_path, "interrupted", raw)
    monkeypatch.setenv("TUNESMITH_TEST_SIGNAL_AFTER_STEP", "3:TERM")
    assert main(["train", recipe]) == 143
    monkeypatch.delenv("TUNESMITH_TEST_SIGNAL_AFTER_STEP")
    assert not (run / "eval.json").exists()
    capsys.readouterr()
    assert main(["train", recipe, "--resume"]) == 0
    assert "resuming from" in capsys.readouterr().out

    ours, theirs = losses(run), losses(reference)
    assert [s for s, _ in ours] == list(range(1, STEPS + 1)) == [s for s, _ in theirs]
    np.testing.assert_allclose([v for _, v in ours], [v for _, v in theirs], rtol=0, atol=1e-6)
    a, b = load_file(run / "model" / "model.safetensors"), load_file(reference / "model" / "model.safetensors")
    assert max((a[k].double() - b[k].double()).abs().max().item() for k in a) <= 1e-6
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["tunesmith_thresholds"] == json.loads((reference / "model" / "config.json").read_text())[
        "tunesmith_thresholds"]
    assert json.loads((run / "eval.json").read_text())["validation"]["micro_f1"] == \
        json.loads((reference / "eval.json").read_text())["validation"]["micro_f1"]
