"""The speed harness's summary: ratios against each Trainer and the issue's targets, met or missed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def harness():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("classification_speed", BENCHMARKS / "classification_speed.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def contender(train_s, accuracy, curve, rss=1000.0):
    return {"train_s": train_s, "accuracy": accuracy, "peak_rss_mb": rss,
            "curve": [{"step": s, "train_s": t, "accuracy": a} for s, t, a in curve]}


def test_ratios_time_to_target_and_verdicts():
    bench = harness()
    results = {
        "tunesmith": contender(40.0, 0.84, [(50, 10.0, 0.80), (100, 20.0, 0.835), (150, 30.0, 0.84)]),
        "trainer_default": contender(400.0, 0.842, [(50, 100.0, 0.81), (100, 200.0, 0.829), (150, 300.0, 0.842)]),
        "trainer_tuned": contender(44.0, 0.83, [(50, 11.0, 0.79), (100, 22.0, 0.831), (150, 44.0, 0.83)], rss=800.0),
    }
    summary = bench.summarize(results, 8000, 0.83)
    default, tuned = summary["ratios"]["trainer_default"], summary["ratios"]["trainer_tuned"]
    assert default["speedup_train_s"] == 10.0 and default["speedup_time_to_target"] == 15.0  # 300 s vs 20 s
    assert tuned["speedup_train_s"] == 1.1 and tuned["speedup_time_to_target"] == 1.1
    assert tuned["peak_rss_ratio"] == 1.25 and default["accuracy_delta"] == -0.002
    assert summary["targets"] == {">=3x run_glue-default Trainer at equal accuracy": "met",
                                  ">=1.2x tuned Trainer throughput at equal accuracy": "missed"}


def test_a_faster_run_that_loses_accuracy_misses_the_target():
    bench = harness()
    results = {
        "tunesmith": contender(10.0, 0.80, [(50, 10.0, 0.80)]),
        "trainer_default": contender(400.0, 0.84, [(50, 400.0, 0.84)]),
        "trainer_tuned": contender(44.0, 0.84, [(50, 44.0, 0.84)]),
    }
    summary = bench.summarize(results, 8000, 0.83)
    assert summary["ratios"]["trainer_tuned"]["speedup_time_to_target"] is None  # tunesmith never got there
    assert set(summary["targets"].values()) == {"missed"}  # 40x and 4.4x faster, but 4 points worse
