"""tunesmith plan --quality: each method that fits trains a short real budget per seed and is scored on a
validation sample; the recommendation weighs the measured scores, their spread and the measured cost."""

from __future__ import annotations

import json

import pytest
import yaml

from pipeline_helpers import sentiment_rows, tiny_recipe, write_csv
from tunesmith.cli import main
from tunesmith.config.method import MethodSpec, default_lr
from tunesmith.config.recipe import validate_recipe
from tunesmith.data.prepare import load_labelled_splits
from tunesmith.recipes.finetune import finetune
from tunesmith.recipes.plan import PlanError, strength
from tunesmith.recipes.plan_quality import (QualityProbe, certainty, plan_with_quality, probe_recipe, quality_probe,
                                            recommend_by_quality)


def quiet(*_args, **_kwargs):
    pass


def fake_worker(recipe, spec, steps, timeout_s):
    """Made-up cost measurements (tests/recipes/test_plan.py measures for real): full costs the most."""
    step = {"full": 0.4, "lora": 0.2, "freeze": 0.15, "bitfit": 0.1}[spec.name]
    return {"device": "cpu", "trainable_params": 1, "total_params": 2, "fb_s": step, "optimizer_s": 0.01,
            "fb_s_all": [step], "timed_padded_tokens": [100], "epoch_padded_tokens": 600, "epoch_batches": 6,
            "eval_s_per_token": 1e-4, "validation_padded_tokens": 200, "test_padded_tokens": 0, "save_s": 0.1,
            "checkpoint_s": 0.1, "tokenize_s_per_row": 1e-4, "load_s": 1.0, "peak_bytes": 2**30,
            "peak_kind": "rss", "dataset_bytes_per_row": 0.0, "measured_steps": 1}


@pytest.fixture
def fake_costs(monkeypatch):
    import tunesmith.recipes.plan as plan_module

    monkeypatch.setattr(plan_module, "run_worker", fake_worker)


def sentiment_recipe(tiny_bert_dir, tmp_path, **train) -> dict:
    path = write_csv(tmp_path / "train.csv", sentiment_rows(64, seed=2))
    raw = tiny_recipe(tiny_bert_dir, path, tmp_path / "run", epochs=2, **train)
    del raw["train"]["lr"]  # each method brings its own default
    return raw


def test_the_probe_trains_each_method_per_seed_and_scores_it_on_a_validation_sample(
        tiny_bert_dir, tmp_path, fake_costs):
    recipe = validate_recipe(sentiment_recipe(tiny_bert_dir, tmp_path))
    before = recipe.model_dump(mode="json")
    probe = QualityProbe(epochs=None, steps=100, seeds=2, rows=10)
    result = plan_with_quality(recipe, probe, echo=quiet)

    assert recipe.model_dump(mode="json") == before  # derived recipes only
    assert result["quality"]["metric"] == "macro_f1" and result["quality"]["mode"] == "max"
    assert result["quality"]["steps"] == 12  # 100 asked, capped at the recipe's own 2 epochs x 6 steps
    assert result["quality"]["validation_rows"] == 10
    for row in result["candidates"]:
        quality = row["quality"]
        assert "error" not in quality, quality
        assert quality["seeds"] == [0, 1] and len(quality["scores"]) == 2 and len(quality["seconds"]) == 2
        assert all(0.0 <= score <= 1.0 for score in quality["scores"])
        assert quality["mean"] == pytest.approx(sum(quality["scores"]) / 2)
        assert quality["sd"] == pytest.approx(abs(quality["scores"][0] - quality["scores"][1]) / 2 ** 0.5)
        assert quality["validation_rows"] == 10  # 16 held-out rows, sampled down to --quality-rows
        assert quality["lr"] == default_lr(MethodSpec(**row["spec"]))  # lora 1e-3, full 5e-5, bitfit 5e-3
    assert {row["spec"]["name"] for row in result["candidates"]} == {"full", "lora", "freeze", "bitfit"}
    assert result["recommended"] in result["candidates"]
    assert result["quality"]["by_strength_alone"] == "full"

    # a probe's score is the validation metric of the derived recipe's real run, reproducibly
    lora = next(row for row in result["candidates"] if row["spec"]["name"] == "lora")
    again = finetune(probe_recipe(recipe, MethodSpec(**lora["spec"]), steps=12, seed=1, rows=10,
                                  output=tmp_path / "again"), echo=quiet)
    assert again["steps"] == 12 and again["data"]["validation"] == 10 and "test" not in again
    assert again["best"]["value"] == pytest.approx(lora["quality"]["scores"][1], abs=1e-6)
    assert not (tmp_path / "again" / "report.html").exists()
    assert again["baselines"] in ({}, None) or not any(again["baselines"].values())


def test_the_probe_keeps_the_recipes_own_learning_rate(tiny_bert_dir, tmp_path):
    raw = sentiment_recipe(tiny_bert_dir, tmp_path)
    raw["train"]["lr"] = 3e-4
    recipe = validate_recipe(raw)
    derived = probe_recipe(recipe, MethodSpec(name="bitfit"), steps=5, seed=7, rows=4, output=tmp_path / "p")
    assert derived.train.lr == 3e-4 and derived.lr_source == "the recipe"
    assert (derived.train.max_steps, derived.train.eval_every, derived.train.seed) == (5, 5, 7)
    assert derived.data.validation.max_rows == 4 and derived.method.name == "bitfit"
    assert derived.quality_gate is None and not derived.report.html and not derived.baselines.tfidf
    assert recipe.train.max_steps is None and recipe.method.name == "full"  # the validated recipe is unchanged
    unset = probe_recipe(validate_recipe(sentiment_recipe(tiny_bert_dir, tmp_path)), MethodSpec(name="lora"),
                         steps=5, seed=0, rows=4, output=tmp_path / "q")
    assert unset.train.lr == 1e-3 and unset.lr_source == "the default for method lora"


def test_validation_max_rows_is_a_seeded_sample(tmp_path):
    path = write_csv(tmp_path / "train.csv", sentiment_rows(100, seed=3))
    dev = write_csv(tmp_path / "dev.csv", sentiment_rows(50, seed=4))
    spec = validate_recipe({"model": "m", "data": {"train": str(path),
                                                   "validation": {"path": str(dev), "max_rows": 20}}}).data
    first, again = load_labelled_splits(spec, seed=5), load_labelled_splits(spec, seed=5)
    other = load_labelled_splits(spec, seed=6)
    assert len(first.validation) == 20 and len(first.train) == 100
    assert list(first.validation["line"]) == list(again.validation["line"])
    assert list(first.validation["line"]) != list(other.validation["line"])
    assert list(first.validation["line"]) == sorted(first.validation["line"])  # the file's order is kept
    assert any("a random sample of 20 of its 50 rows" in note for note in first.notes)
    held = validate_recipe({"model": "m", "data": {"train": str(path), "validation": {"split": 0.3, "max_rows": 100}}})
    splits = load_labelled_splits(held.data, seed=0)
    assert len(splits.validation) == 30 and not splits.notes  # no larger than max_rows: all of it
    with pytest.raises(Exception, match="max_rows"):
        validate_recipe({"model": "m", "data": {"train": str(path), "validation": {"max_rows": 0}}})


# ---- the recommendation, on made-up probes ---------------------------------------------------------------


def probed(name, total_s, scores, fits=True, **spec):
    import statistics

    method = MethodSpec(name=name, **spec)
    quality = ({"scores": scores, "mean": statistics.fmean(scores), "min": min(scores), "max": max(scores),
                "sd": statistics.stdev(scores) if len(scores) > 1 else None} if fits
               else {"skipped": "does not fit the budget"})
    return {"method": method.describe(), "spec": method.model_dump(mode="json"), "strength": strength(method),
            "total_s": total_s, "peak_bytes": 2**30, "fits": fits, "quality": quality}


def test_a_clearly_better_expensive_method_wins_when_it_fits():
    rows = [probed("full", 3000, [0.90, 0.91, 0.905]), probed("lora", 1000, [0.80, 0.82, 0.81]),
            probed("bitfit", 500, [0.70, 0.72, 0.71])]
    choice, reason = recommend_by_quality(rows, "max", "accuracy")
    assert choice["method"] == "full"
    assert reason.startswith("full (accuracy 0.9050 ± 0.0050 over 3 seeds, projected 50m00s) has the best mean;")
    assert "the next, lora r=8 (accuracy 0.8100 ± 0.0100" in reason
    # the noise: the median of the three sds (0.005, 0.01, 0.01)
    assert "is 0.0950 behind; the gap is 9.5x the probe's noise (sd 0.0100): a clear difference" in reason


def test_a_materially_cheaper_method_within_the_noise_of_the_best_is_preferred():
    rows = [probed("full", 3000, [0.90, 0.92, 0.91]), probed("lora", 1000, [0.90, 0.91, 0.905]),
            probed("bitfit", 500, [0.60, 0.62, 0.61])]
    choice, reason = recommend_by_quality(rows, "max", "macro_f1")
    assert choice["method"] == "lora r=8"  # 0.005 below full's mean, the noise is 0.01; bitfit is far below
    assert reason.startswith("lora r=8 (macro_f1 0.9050 ± 0.0050 over 3 seeds, projected 16m40s) cannot be told "
                             "from the best mean, full (macro_f1 0.9100 ± 0.0100")
    assert "the gap 0.0050 is 0.5x the probe's noise (sd 0.0100): too close to call" in reason
    assert reason.endswith("so the cheaper one is recommended")
    # only 4% cheaper: the best mean stays
    rows[1]["total_s"] = 2880
    choice, reason = recommend_by_quality(rows, "max", "macro_f1")
    assert choice["method"] == "full" and "not at least 10% cheaper, so the best mean stays" in reason
    # a clearer gap: full is chosen
    rows[1] = probed("lora", 1000, [0.85, 0.86, 0.855])
    assert recommend_by_quality(rows, "max", "macro_f1")[0]["method"] == "full"


def test_a_cheap_method_unstable_across_seeds_is_not_preferred():
    """The probes of docs/benchmarks.md (MiniLM, SST-2, 100 steps): bitfit collapsed on one seed; its sd (0.17)
    must not make it a tie with full (0.7695) because its mean is far below."""
    rows = [probed("full", 148, [0.7715, 0.7676]), probed("lora", 142, [0.7734, 0.7637]),
            probed("freeze", 60, [0.7656, 0.7559], freeze="layers", layers=3), probed("bitfit", 89, [0.7598, 0.5176])]
    choice, reason = recommend_by_quality(rows, "max", "accuracy")
    assert choice["method"] == "full"  # lora is a tie but only 4% cheaper; freeze is 0.009 below, past the noise
    assert "unstable across seeds: bitfit (0.5176 to 0.7598)" in reason
    # a cheaper method with a mean within the noise (0.005) but a worst seed 0.02 below the best's is no tie
    rows = [probed("full", 3000, [0.90, 0.91, 0.905]), probed("lora", 1000, [0.93, 0.88, 0.895]),
            probed("bitfit", 500, [0.60, 0.61, 0.605])]
    assert recommend_by_quality(rows, "max", "accuracy")[0]["method"] == "full"
    rows[1] = probed("lora", 1000, [0.915, 0.90, 0.897])  # mean 0.001, worst seed 0.003 below: a tie, 3x cheaper
    assert recommend_by_quality(rows, "max", "accuracy")[0]["method"] == "lora r=8"


def test_a_method_over_the_budget_is_never_chosen_and_lower_is_better_for_a_loss():
    rows = [probed("full", 9000, [], fits=False), probed("lora", 1000, [2.1, 2.2]),
            probed("bitfit", 500, [1.5, 1.6])]
    choice, reason = recommend_by_quality(rows, "min", "loss")
    assert choice["method"] == "bitfit"  # the lower loss
    assert reason.endswith("; not probed, over the budget: full")
    assert recommend_by_quality([probed("full", 9000, [], fits=False)], "max", "loss")[0] is None
    failed = probed("lora", 1000, [0.9])
    failed["quality"] = {"scores": [], "error": "seed 0: the loss became nan"}
    choice, reason = recommend_by_quality([failed, probed("bitfit", 500, [0.5])], "max", "accuracy")
    assert choice["method"] == "bitfit" and "probe failed: lora r=8 (seed 0: the loss became nan)" in reason
    assert "the only candidate" in reason


def test_how_sure_is_said_in_words():
    assert certainty(0.03, 0.01)[0] == "clear" and certainty(0.015, 0.01)[0] == "probable"
    assert certainty(0.005, 0.01)[0] == "too close to call" and certainty(0.01, None)[0] == "unknown"
    assert certainty(0.01, 0.0)[0] == "clear" and certainty(0.0, 0.0)[0] == "too close to call"


# ---- the command -----------------------------------------------------------------------------------------


def test_plan_quality_through_the_cli_writes_every_probes_scores(tiny_bert_dir, tmp_path, fake_costs, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(sentiment_recipe(tiny_bert_dir, tmp_path)))
    out = tmp_path / "plan.json"
    code = main(["plan", str(recipe), "--steps", "1", "--time-budget", "1h", "--quality", "--quality-budget",
                 "3steps", "--quality-seeds", "2", "--quality-rows", "12", "--output", str(out)])
    assert code == 0
    shown = capsys.readouterr().out
    written = json.loads(out.read_text())
    assert "quality" in shown and "probe" in shown and "recommended:" in shown
    assert all(f"{row['quality']['mean']:.4f}" in shown for row in written["candidates"])
    assert written["quality"]["seeds"] == 2 and written["quality"]["steps"] == 3
    assert written["quality"]["validation_rows"] == 12
    for row in written["candidates"]:
        assert len(row["quality"]["scores"]) == 2 and row["quality"]["seeds"] == [0, 1]
        assert row["quality"]["validation_rows"] == 12
    assert written["recommended"]["method"] in {row["method"] for row in written["candidates"]}
    assert written["quality"]["confidence"]["words"] in {"clear", "probable", "too close to call"}


def test_quality_options_are_checked(capsys):
    assert main(["plan", "no-such.yaml", "--quality-seeds", "2"]) == 2
    assert "--quality-seeds goes with --quality" in capsys.readouterr().err
    assert main(["plan", "no-such.yaml", "--quality", "--quality-budget", "soon"]) == 2
    assert "--quality-budget 'soon': expected a fraction of an epoch" in capsys.readouterr().err
    assert quality_probe("0.5epoch").epochs == 0.5 and quality_probe("200 steps").steps == 200
    assert quality_probe("0.25").steps_for(2100) == 525 and quality_probe("2steps").steps_for(63) == 2
    assert quality_probe("0.25").steps_for(63) == 100  # an epoch budget trains at least 100 steps
    for bad in ("0", "1.5steps", "-1"):
        with pytest.raises(PlanError):
            quality_probe(bad)
    with pytest.raises(PlanError, match="--quality-seeds must be at least 1"):
        quality_probe("0.25", seeds=0)
