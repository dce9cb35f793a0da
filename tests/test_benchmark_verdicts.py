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


def run(seed, train_s, accuracy, curve, process_s=60.0):
    return {"seed": seed, "train_s": train_s, "accuracy": accuracy, "process_s": process_s, "peak_rss_mb": 1000.0,
            "padding_fraction": 0.05, "curve": [{"step": s, "train_s": t, "accuracy": a} for s, t, a in curve]}


def test_seed_summary_targets_the_random_trainers_mean_and_takes_the_median_time():
    bench = harness()
    results = {
        "tunesmith": [run(0, 30.0, 0.85, [(50, 10.0, 0.84), (100, 20.0, 0.85)], process_s=40.0),
                      run(1, 30.0, 0.84, [(50, 10.0, 0.80), (100, 20.0, 0.84)], process_s=42.0),
                      run(2, 30.0, 0.83, [(50, 10.0, 0.80), (100, 20.0, 0.83)], process_s=44.0)],
        "trainer_random": [run(0, 140.0, 0.85, [(50, 70.0, 0.80), (100, 140.0, 0.85)]),
                           run(1, 140.0, 0.84, [(50, 70.0, 0.84), (100, 140.0, 0.84)]),
                           run(2, 140.0, 0.83, [(50, 70.0, 0.80), (100, 140.0, 0.83)])],
        "trainer_tuned": [run(s, 28.0, 0.82, [(50, 14.0, 0.81), (100, 28.0, 0.82)], process_s=35.0)
                          for s in range(3)],
    }
    summary = bench.summarize(results, 8000, None)
    assert summary["target"] == 0.84  # trainer_random's mean final accuracy
    stats = summary["contenders"]
    assert stats["tunesmith"]["time_to_target_s"] == [10.0, 20.0, None]
    assert stats["tunesmith"]["median_time_to_target_s"] == 20.0
    assert stats["trainer_random"]["median_time_to_target_s"] == 140.0  # 140, 70, never
    assert stats["trainer_tuned"]["median_time_to_target_s"] is None  # never reaches 0.84
    verdict = summary["targets"]["tunesmith"]
    assert verdict["speedup_to_target_vs_fastest_trainer"] == 7.0 and verdict[">=2x to the target"] == "met"
    assert verdict["last_accuracy_minus_trainer_random_points"] == 0.0
    assert verdict["process_s_ratio_vs_trainer_tuned"] == 1.2  # 42 s vs 35 s
    assert verdict["whole process faster than trainer_tuned"] == "missed"


def test_a_faster_run_that_loses_accuracy_misses_the_targets():
    bench = harness()
    results = {
        "tunesmith": [run(0, 10.0, 0.80, [(50, 10.0, 0.80)], process_s=20.0)],
        "trainer_random": [run(0, 140.0, 0.84, [(50, 140.0, 0.84)])],
        "trainer_tuned": [run(0, 44.0, 0.84, [(50, 44.0, 0.84)])],
    }
    summary = bench.summarize(results, 8000, None)
    verdict = summary["targets"]["tunesmith"]
    assert verdict["speedup_to_target_vs_fastest_trainer"] is None  # tunesmith never got there
    assert verdict[">=2x to the target"] == "missed" and verdict["accuracy within 0.3 point"] == "missed"
    assert verdict["whole process faster than trainer_tuned"] == "met"


def test_last_and_best_accuracy_differ_and_no_trainer_reaching_the_target_is_said():
    """Accuracy targets compare the last evaluation (the model at the end of the epoch) for every contender;
    the best evaluation (the model tunesmith keeps) is reported beside it."""
    bench = harness()
    results = {
        "tunesmith": [run(s, 30.0, 0.85, [(50, 10.0, 0.85), (100, 20.0, 0.83)]) for s in range(3)],
        "trainer_random": [run(0, 140.0, 0.87, [(50, 70.0, 0.80), (100, 140.0, 0.87)]),
                           run(1, 140.0, 0.80, [(50, 70.0, 0.79), (100, 140.0, 0.80)]),
                           run(2, 140.0, 0.82, [(50, 70.0, 0.81), (100, 140.0, 0.82)])],
    }
    summary = bench.summarize(results, 8000, None)
    stats = summary["contenders"]["tunesmith"]
    assert stats["last_accuracy"]["mean"] == 0.83 and stats["best_accuracy"]["mean"] == 0.85
    assert summary["target"] == 0.83 and stats["seeds_reaching_target"] == 3
    assert summary["contenders"]["trainer_random"]["median_time_to_target_s"] is None  # 1 seed of 3
    verdict = summary["targets"]["tunesmith"]
    assert verdict["no trainer reaches the target in most seeds"] and verdict[">=2x to the target"] == "met"
    assert verdict["last_accuracy_minus_trainer_random_points"] == 0.0
