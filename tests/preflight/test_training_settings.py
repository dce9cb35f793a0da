"""The settings check on its own: learning rate against the method, warm-up, steps, batch size."""

from __future__ import annotations

from types import SimpleNamespace

from tunesmith.config.recipe import validate_recipe
from tunesmith.preflight.settings import check_training_settings


def findings(method="full", rows=100, total_steps=100, **train):
    recipe = validate_recipe({"model": "m", "data": {"train": "t.csv"}, "method": {"name": method}, "train": train})
    context = SimpleNamespace(recipe=recipe, total_steps=total_steps, datasets={"train": list(range(rows))})
    return {f.code: f for f in check_training_settings(context)}


def test_method_default_rates_raise_nothing():
    for method in ("full", "lora", "dora", "bitfit", "freeze"):
        assert findings(method) == {}, method


def test_a_full_fine_tuning_rate_under_lora():
    found = findings("lora", lr=5e-5)
    assert list(found) == ["lr_below_method"]
    assert "20x below method lora's default (0.001)" in found["lr_below_method"].message
    assert "--set train.lr=0.001" in found["lr_below_method"].message


def test_a_lora_rate_under_full_fine_tuning():
    assert list(findings("full", lr=1e-2)) == ["lr_above_method"]
    assert findings("full", lr=1e-3) == {}  # 20x: high, not absurd


def test_warmup_steps_and_batch():
    assert list(findings(warmup=150)) == ["warmup_too_long"]
    assert findings(warmup=0.5) == {}
    few = findings(total_steps=4, rows=8, batch_size=16)
    assert set(few) == {"few_steps", "batch_over_rows"} and all(f.severity == "info" for f in few.values())
