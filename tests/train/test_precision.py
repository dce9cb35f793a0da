"""train.precision: what `auto` picks, and bf16 and fp32 runs side by side in one process."""

from __future__ import annotations

import io
import json

import pytest
import torch

from pipeline_helpers import sentiment_rows, tiny_recipe, write_csv
from tunesmith.recipes.predict import TrainedRun
from tunesmith.config.recipe import validate_recipe
from tunesmith.recipes.finetune import finetune
from tunesmith.train import precision


def quiet(*_args, **_kwargs):
    pass


@pytest.mark.parametrize("flags,expected", [
    ("fpu sse2 avx512f avx512_bf16 avx512_vnni", "bf16"),
    ("fpu sse2 amx_bf16 amx_tile", "bf16"),
    ("fpu sse2 avx2 avx512f", "no"),
])
def test_auto_uses_bf16_on_a_cpu_that_computes_it_natively(monkeypatch, flags, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("builtins.open", lambda *a, **k: io.StringIO(f"processor\t: 0\nflags\t\t: {flags}\n"))
    assert precision.mixed_precision("auto") == expected
    assert precision.mixed_precision("fp32") == "no"
    assert precision.mixed_precision("bf16") == "bf16"


def test_bf16_then_fp32_runs_in_one_process(tiny_bert_dir, tmp_path):
    """Accelerate's process-wide state would refuse the second precision; a bf16 run trains in bf16 autocast but
    evaluates in fp32, so its numbers are exactly what `tunesmith evaluate` gives for its saved model."""
    train = write_csv(tmp_path / "train.csv", sentiment_rows(64, seed=5))
    validation = write_csv(tmp_path / "validation.csv", sentiment_rows(24, seed=6))
    results = {}
    for setting in ("bf16", "fp32"):
        raw = tiny_recipe(tiny_bert_dir, train, tmp_path / setting, epochs=2, precision=setting)
        raw["data"]["validation"] = str(validation)
        results[setting] = finetune(validate_recipe(raw), echo=quiet)
        assert results[setting]["environment"]["precision"] == setting
    again = TrainedRun(tmp_path / "bf16").evaluate_file(str(validation))
    assert again["loss"] == pytest.approx(results["bf16"]["validation"]["loss"], abs=1e-6)  # other batch shapes
    assert again["accuracy"] == results["bf16"]["validation"]["accuracy"]
    # evaluations during training are fp32 too: the best one equals the final pass over the reloaded best weights
    records = [json.loads(line) for line in (tmp_path / "bf16" / "metrics.jsonl").read_text().splitlines()]
    best = [r for r in records if r["type"] == "eval" and not r.get("final") and r["is_best"]][-1]
    assert best["loss"] == pytest.approx(results["bf16"]["validation"]["loss"], abs=1e-7)
    # bf16 autocast really changed the arithmetic: the two runs' losses differ, though not by much
    bf16, fp32 = results["bf16"]["validation"]["loss"], results["fp32"]["validation"]["loss"]
    assert bf16 != fp32 and bf16 == pytest.approx(fp32, abs=0.05)
