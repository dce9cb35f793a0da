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
    """Accelerate's process-wide state would refuse the second precision; a bf16 run with eval_precision: fp32
    trains in bf16 autocast but evaluates in fp32, so its numbers are exactly what `tunesmith evaluate` gives."""
    train = write_csv(tmp_path / "train.csv", sentiment_rows(64, seed=5))
    validation = write_csv(tmp_path / "validation.csv", sentiment_rows(24, seed=6))
    results = {}
    for setting in ("bf16", "fp32"):
        raw = tiny_recipe(tiny_bert_dir, train, tmp_path / setting, epochs=2, precision=setting, eval_precision="fp32")
        raw["data"]["validation"] = str(validation)
        results[setting] = finetune(validate_recipe(raw), echo=quiet)
        assert results[setting]["environment"]["precision"] == setting
    again = TrainedRun(tmp_path / "bf16").evaluate_file(str(validation))
    assert again["loss"] == pytest.approx(results["bf16"]["validation"]["loss"], abs=1e-6)  # other batch shapes
    assert again["accuracy"] == results["bf16"]["validation"]["accuracy"]
    # the evaluations during training in the same precision: the best one equals the final pass over the best weights
    records = [json.loads(line) for line in (tmp_path / "bf16" / "metrics.jsonl").read_text().splitlines()]
    best = [r for r in records if r["type"] == "eval" and not r.get("final") and r["is_best"]][-1]
    assert best["loss"] == pytest.approx(results["bf16"]["validation"]["loss"], abs=1e-7)
    # bf16 autocast really changed the arithmetic: the two runs' losses differ, though not by much
    bf16, fp32 = results["bf16"]["validation"]["loss"], results["fp32"]["validation"]["loss"]
    assert bf16 != fp32 and bf16 == pytest.approx(fp32, abs=0.05)


@pytest.mark.parametrize("eval_precision,autocast", [("train", True), ("fp32", False)])
def test_eval_precision_decides_the_precision_of_every_evaluation(tiny_bert_dir, tmp_path, monkeypatch,
                                                                  eval_precision, autocast):
    """Every evaluation of the run (during training, the threshold tuned after it, the final ones on a test split)
    runs under bf16 autocast with eval_precision: train and outside it with fp32; training itself is bf16 in both;
    `tunesmith evaluate` of the run is fp32 either way."""
    from tunesmith.tasks.classification import ClassificationTask

    seen = []
    predict_probs = ClassificationTask.predict_probs

    def recording(self, *args, **kwargs):
        seen.append((kwargs.get("desc"), torch.is_autocast_enabled("cpu")))
        return predict_probs(self, *args, **kwargs)

    monkeypatch.setattr(ClassificationTask, "predict_probs", recording)
    train = write_csv(tmp_path / "train.csv", sentiment_rows(64, seed=5))
    test = write_csv(tmp_path / "test.csv", sentiment_rows(16, seed=7))
    raw = tiny_recipe(tiny_bert_dir, train, tmp_path / "run", epochs=1, precision="bf16",
                      eval_precision=eval_precision, eval_every=3)
    raw["data"]["test"] = str(test)
    raw["imbalance"] = {"threshold": {"tune": True}}
    result = finetune(validate_recipe(raw), echo=quiet)
    assert {desc for desc, _ in seen} == {"validation", "threshold", "test"}
    assert [on for _, on in seen] == [autocast] * len(seen)
    seen.clear()
    again = TrainedRun(tmp_path / "run").evaluate_file(str(test))  # `tunesmith evaluate`: fp32
    assert seen == [("evaluate", False)]
    if autocast:  # bf16 rounding apart
        assert again["loss"] != result["test"]["loss"] and again["loss"] == pytest.approx(result["test"]["loss"],
                                                                                           abs=0.02)
    else:
        assert again["loss"] == pytest.approx(result["test"]["loss"], abs=1e-6)
