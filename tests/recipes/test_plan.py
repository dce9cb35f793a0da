"""tunesmith plan: real measured steps for every candidate method, budgets, and the recommendation."""

from __future__ import annotations

import pytest

from pipeline_helpers import sentiment_rows, tiny_recipe, write_csv
from tunesmith.cli import main
from tunesmith.config.method import MethodSpec
from tunesmith.cli.plan_tables import print_plan
from tunesmith.recipes.plan import PlanError, parse_duration, parse_memory, plan, recommend, strength
from tunesmith.config.recipe import validate_recipe


def quiet(*_args, **_kwargs):
    pass


def test_plan_measures_every_method_on_a_tiny_model(tiny_bert_dir, tmp_path, capsys):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(64, seed=2))
    recipe = validate_recipe(tiny_recipe(tiny_bert_dir, train, tmp_path / "run", epochs=2))
    result = plan(recipe, time_budget_s=3600, memory_budget=64 * 2**30, steps=2, echo=quiet)

    rows = {row["spec"]["name"]: row for row in result["candidates"]}
    assert list(rows) == ["full", "lora", "freeze", "bitfit"]  # strongest first
    assert rows["freeze"]["spec"] == {"name": "freeze", "gradient_checkpointing": False, "freeze": "layers",
                                      "layers": 1}  # the lower half of the 2 layers
    for name, row in rows.items():
        assert "error" not in row, row
        assert row["measured_steps"] == 2 and len(row["fb_s_all"]) == 2 and all(t > 0 for t in row["fb_s_all"])
        assert row["step_s"] > 0 and row["optimizer_s"] > 0 and row["eval_s_per_token"] > 0
        assert row["epoch_s"] > 0 and row["total_s"] >= row["train_s"] > 0
        assert 50 * 2**20 < row["measured_peak_bytes"] < 8 * 2**30  # a real process's RSS
        assert row["peak_bytes"] == int((row["measured_peak_bytes"] + row["dataset_bytes"]) * 1.3)
        assert row["fits"] is True
    assert rows["full"]["trainable_params"] == rows["full"]["total_params"]
    assert rows["bitfit"]["trainable_params"] < rows["lora"]["trainable_params"] < rows["full"]["trainable_params"]
    # projection: 48 training rows / batch 8 = 6 batches per epoch, 2 epochs
    assert (result["batches_per_epoch"], result["total_steps"]) == (6, 12)
    full = rows["full"]
    assert full["epoch_batches"] == 6 and full["epoch_padded_tokens"] >= 48  # at least a token per row
    per_token = sum(full["fb_s_all"]) / sum(full["timed_padded_tokens"])
    assert full["train_s"] == pytest.approx(2 * per_token * full["epoch_padded_tokens"] + 12 * full["optimizer_s"],
                                            abs=0.1)
    assert full["save_s"] > 0 and full["checkpoint_s"] > 0
    assert result["recommended"]["spec"]["name"] == "full"
    assert "strongest candidate and fits" in result["reason"]
    print_plan(result)
    shown = capsys.readouterr().out
    assert "recommended: full" in shown and "bitfit" in shown


def row(name, total_s, peak_gib, fits_time=None, fits_memory=None, **spec):
    method = MethodSpec(name=name, **spec)
    fits = fits_time is not False and fits_memory is not False
    return {"method": method.describe(), "spec": method.model_dump(mode="json"), "strength": strength(method),
            "total_s": total_s, "peak_bytes": int(peak_gib * 2**30), "fits_time": fits_time,
            "fits_memory": fits_memory, "fits": fits}


def test_recommendation_is_the_strongest_that_fits_and_says_why():
    rows = [row("full", 3000, 6.0, fits_time=False, fits_memory=True),
            row("lora", 1200, 3.0, fits_time=True, fits_memory=True),
            row("bitfit", 800, 2.5, fits_time=True, fits_memory=True)]
    choice, reason = recommend(rows, 1800, 8 * 2**30)
    assert choice["spec"]["name"] == "lora"
    assert reason.startswith("full does not fit (projected 50m00s > 30m00s)")
    assert "lora r=8 is the strongest that fits (projected 20m00s of 30m00s, peak 3.00 GiB of 8.00 GiB)" in reason

    too_big = [row("full", 100, 9.0, fits_time=True, fits_memory=False),
               row("bitfit", 50, 8.5, fits_time=True, fits_memory=False)]
    choice, reason = recommend(too_big, 1800, 8 * 2**30)
    assert choice is None and reason.startswith("nothing fits the budget") and "the smallest bitfit" in reason


def test_budgets_parse_and_bad_ones_are_one_line_errors(capsys):
    assert parse_duration("30m") == 1800 and parse_duration("1h30m") == 5400 and parse_duration("1.5h") == 5400
    assert parse_memory("8GB") == 8 * 10**9 and parse_memory("8GiB") == parse_memory("8g") == 8 * 2**30
    for bad in ("30", "soon", "30m!"):
        with pytest.raises(PlanError):
            parse_duration(bad)
    assert main(["plan", "no-such.yaml", "--memory-budget", "lots"]) == 2
    assert "--memory-budget 'lots': expected a size" in capsys.readouterr().err


def test_over_the_memory_budget_a_method_is_measured_again_with_gradient_checkpointing(
        tiny_bert_dir, tmp_path, monkeypatch):
    """plan's decisions on made-up measurements (the measuring itself is tested above)."""
    import tunesmith.recipes.plan as plan_module

    def fake_worker(recipe, spec, steps, timeout_s):
        big = {"full": 6, "lora": 3, "freeze": 2, "bitfit": 2}[spec.name] * 2**30
        peak = big // 2 if spec.gradient_checkpointing else big
        if spec.name == "full" and not spec.gradient_checkpointing:
            raise PlanError("killed by signal 9 (out of memory?)")
        return {"device": "cpu", "trainable_params": 1, "total_params": 2, "fb_s": 0.1, "optimizer_s": 0.01,
                "fb_s_all": [0.1], "timed_padded_tokens": [100], "epoch_padded_tokens": 600, "epoch_batches": 6,
                "eval_s_per_token": 1e-4, "validation_padded_tokens": 200, "test_padded_tokens": 0, "save_s": 0.1,
                "checkpoint_s": 0.1, "tokenize_s_per_row": 1e-4, "load_s": 1.0, "peak_bytes": peak,
                "peak_kind": "rss", "dataset_bytes_per_row": 0.0, "measured_steps": 1}

    monkeypatch.setattr(plan_module, "run_worker", fake_worker)
    train = write_csv(tmp_path / "train.csv", sentiment_rows(64, seed=2))
    recipe = validate_recipe(tiny_recipe(tiny_bert_dir, train, tmp_path / "run", epochs=2))
    result = plan(recipe, memory_budget=int(3.5 * 2**30), steps=1, memory_headroom=1.0, echo=quiet)
    methods = [row["method"] for row in result["candidates"]]
    assert methods == ["full", "full + gradient checkpointing", "lora r=8", "freeze layers 1", "bitfit"]
    assert "error" in result["candidates"][0] and result["candidates"][1]["fits"] is True
    assert result["recommended"]["method"] == "full + gradient checkpointing"
    assert result["reason"].startswith("full does not fit (failed: killed by signal 9 (out of memory?))")
