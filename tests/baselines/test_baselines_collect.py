"""collect_baselines: the task's own baselines per split, the scratch run, and failures that never cost the run."""

from __future__ import annotations

from types import SimpleNamespace

from tunesmith.recipes.baselines import collect_baselines
from tunesmith.config.recipe import validate_recipe


class FakeTask:
    summary_columns = ("loss", "accuracy", "macro_f1")

    def baselines(self, splits):
        return {"validation": {"majority": {"predicts": "ham", "accuracy": 0.8, "macro_f1": 0.44}}}


def recipe(**baselines):
    return validate_recipe({"model": "m", "data": {"train": "t.csv"}, "baselines": baselines})


def test_scratch_results_join_each_split(monkeypatch, tmp_path):
    def fake_scratch(recipe, run_path, finetune, echo):
        return {"splits": {"validation": {"accuracy": 0.7, "macro_f1": 0.6}},
                "run": {"run": "baselines/scratch", "steps": 10}}

    monkeypatch.setattr("tunesmith.recipes.baselines.train_from_scratch", fake_scratch)
    lines = []
    out = collect_baselines(recipe(scratch=True), FakeTask(), ["validation", "test"], SimpleNamespace(path=tmp_path),
                            finetune=None, echo=lines.append)
    assert out["validation"]["scratch"] == {"accuracy": 0.7, "macro_f1": 0.6, "run": "baselines/scratch", "steps": 10}
    assert set(out["validation"]) == {"majority", "scratch"} and out["test"] == {}
    assert any("majority accuracy 0.8000" in line and "scratch accuracy 0.7000" in line for line in lines)


def test_a_failing_baseline_is_a_warning_not_a_lost_run(monkeypatch, tmp_path):
    def broken(*_args, **_kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr("tunesmith.recipes.baselines.train_from_scratch", broken)
    lines = []
    out = collect_baselines(recipe(scratch=True), FakeTask(), ["validation"], SimpleNamespace(path=tmp_path),
                            finetune=None, echo=lines.append)
    assert "failed" in out["validation"]["scratch"]["skipped"] and "majority" in out["validation"]
    assert any("scratch baseline failed (RuntimeError: out of memory)" in line for line in lines)


def test_scratch_recipe_trains_every_weight_without_recursing(tmp_path):
    from tunesmith.recipes.scratch import scratch_recipe

    base = validate_recipe({"model": "minilm", "data": {"train": "t.csv"}, "method": "lora", "resume": True,
                            "baselines": {"scratch": True}, "report": {"trackers": ["tensorboard"]},
                            "train": {"lr": 1e-3, "epochs": 2}})
    derived = scratch_recipe(base, tmp_path / "init", tmp_path / "run" / "baselines" / "scratch")
    assert derived.model == str(tmp_path / "init") and derived.output.endswith("baselines/scratch")
    assert derived.method.name == "full" and derived.resume == "auto"
    assert derived.baselines.enabled == [] and not derived.report.html and derived.report.trackers == []
    assert derived.train == base.train and derived.data == base.data  # the same recipe and budget
