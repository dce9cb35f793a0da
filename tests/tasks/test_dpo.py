"""task: dpo end to end on a tiny random Llama: it learns a preference, the reference is what it should be
(the base with the adapter off; a frozen copy for full fine-tuning; none for simpo), precomputed reference
log-probs train exactly as live ones, resume is exact, and the run is a causal LM with a report."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from task_fixtures import dpo_recipe
from tunesmith.cli import main
from tunesmith.config.recipe import validate_recipe
from tunesmith.errors import DataError, RecipeError
from tunesmith.recipes.finetune import FineTune, finetune
from tunesmith.tasks import make_task

# a tiny random model learns a preference at lr 1e-2, 200x full fine-tuning's default for pretrained models
pytestmark = pytest.mark.preflight_expected("lr_above_method")


def quiet(*_args, **_kwargs):
    pass


@pytest.fixture
def models(tiny_bert_dir, tiny_gpt2_dir, tiny_llama_dir):
    return {"bert": tiny_bert_dir, "gpt2": tiny_gpt2_dir, "llama": tiny_llama_dir}


def train_losses(run: Path) -> list[float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["type"] == "train"]


@pytest.mark.parametrize("method", ["lora", "full"])
def test_dpo_learns_the_preference_from_a_neutral_start(models, tmp_path, method):
    raw = dpo_recipe(models, tmp_path, method={"name": method})
    result = finetune(validate_recipe(raw), echo=quiet)
    before = result["baselines"]["validation"]["pretrained"]
    # the policy starts as the reference: every implicit reward is 0, a tie, counted one half
    assert before["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert before["reward_accuracy"] == 0.5 and before["reward_margin"] == pytest.approx(0, abs=1e-9)
    after = result["validation"]
    assert after["pairs"] == 12 and after["reward_accuracy"] >= 0.9, after
    assert after["reward_margin"] > 0.2 and after["loss"] < 0.7 * math.log(2)
    assert after["chosen_reward"] > after["rejected_reward"]
    assert result["preference"]["reference_model"] == (
        "the base model, adapter switched off" if method == "lora" else "a frozen copy of the pretrained model")
    assert [g["after"] for g in result["generations"]] and "messages" not in result["generations"][0]


def test_the_lora_reference_is_the_base_model_with_the_adapter_off(models, tmp_path):
    from transformers import AutoModelForCausalLM

    raw = dpo_recipe(models, tmp_path, method={"name": "lora"})
    raw["train"]["max_steps"] = 4
    run = FineTune(validate_recipe(raw), echo=quiet)
    run.setup()
    run.train()
    batch = next(iter(run.loaders.held_out["validation"]))
    task = run.task
    assert task.reference_model is None, "lora keeps no second copy"
    reference = task.reference_logps(run.model, batch)
    policy = task.pair_losses(run.model, batch, None)[1]
    base = AutoModelForCausalLM.from_pretrained(models["llama"]).eval()
    from tunesmith.evaluation.preference import SideLogps, sequence_logps

    with torch.no_grad():
        expected = SideLogps.from_sequences(*sequence_logps(base, batch))
    assert torch.allclose(reference.chosen, expected.chosen, atol=1e-5)
    assert torch.allclose(reference.rejected, expected.rejected, atol=1e-5)
    assert not torch.allclose(policy.chosen, expected.chosen, atol=1e-3), "the adapter has trained"


def test_a_precomputed_reference_trains_exactly_as_the_live_one(models, tmp_path):
    losses = {}
    for mode in ("live", "precomputed"):
        raw = dpo_recipe(models, tmp_path / mode, method={"name": "full"}, preference={"reference": mode})
        raw["train"]["max_steps"] = 6
        result = finetune(validate_recipe(raw), echo=quiet)
        losses[mode] = (train_losses(tmp_path / mode / "run"), result["validation"]["loss"])
    assert losses["precomputed"][0] == pytest.approx(losses["live"][0], abs=1e-5)
    assert losses["precomputed"][1] == pytest.approx(losses["live"][1], abs=1e-5)


def test_full_fine_tuning_keeps_a_frozen_reference_and_precomputed_drops_it(models, tmp_path):
    raw = dpo_recipe(models, tmp_path, method={"name": "full"})
    raw["train"]["max_steps"] = 3
    run = FineTune(validate_recipe(raw), echo=quiet)
    run.setup()
    frozen = {k: v.clone() for k, v in run.task.reference_model.state_dict().items()}
    run.train()
    assert all(not p.requires_grad for p in run.task.reference_model.parameters())
    assert all(torch.equal(frozen[k], v) for k, v in run.task.reference_model.state_dict().items())
    raw = dpo_recipe(models, tmp_path / "pre", method={"name": "full"}, preference={"reference": "precomputed"})
    raw["train"]["max_steps"] = 3
    run = FineTune(validate_recipe(raw), echo=quiet)
    run.setup()
    run.train()
    assert run.task.reference_model is None and run.task.kept_train is not None
    assert torch.isfinite(run.task.kept_train).all() and run.task.kept_train.shape == (36, 2)


@pytest.mark.parametrize("loss", ["ipo", "simpo"])
def test_ipo_and_reference_free_simpo_learn_too(models, tmp_path, loss):
    raw = dpo_recipe(models, tmp_path, method={"name": "full"}, preference={"loss": loss, "beta": 0.5 if loss == "ipo" else 2.0})
    run = FineTune(validate_recipe(raw), echo=quiet)
    run.setup()
    if loss == "simpo":
        assert run.task.reference_model is None, "simpo needs no reference model"
    run.train()
    result = run.finish()
    assert result["validation"]["reward_accuracy"] >= 0.9, result["validation"]


def test_settings_of_another_loss_are_refused_and_packing_is_not(models, tmp_path):
    with pytest.raises(RecipeError, match="label_smoothing applies to loss sigmoid"):
        validate_recipe(dpo_recipe(models, tmp_path, preference={"loss": "ipo", "label_smoothing": 0.1}))
    with pytest.raises(RecipeError, match="uses no reference model"):
        validate_recipe(dpo_recipe(models, tmp_path, preference={"loss": "simpo", "reference": "precomputed"}))
    # lm.packing: padding-free batches (tests/tasks/test_dpo_packing.py)
    assert make_task(validate_recipe(dpo_recipe(models, tmp_path, lm={"packing": True}))).lm.packing


def test_the_run_is_a_causal_lm_with_its_chat_template_and_a_report(models, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    raw = dpo_recipe(models, tmp_path, method={"name": "lora"}, report={"html": True})
    raw["train"]["max_steps"] = 4
    finetune(validate_recipe(raw), echo=quiet)
    run = tmp_path / "run"
    model = AutoModelForCausalLM.from_pretrained(run / "model")
    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    assert model.config.architectures[0].endswith("ForCausalLM") and tokenizer.chat_template
    html = (run / "report.html").read_text()
    assert 'id="preference"' in html and "reward accuracy" in html and 'id="generations"' in html
    assert json.loads((run / "inspect.json").read_text())["summary"]["error"] == 0


def test_resume_is_the_same_run(models, tmp_path):
    """Stopped by SIGTERM after step 3 (a checkpoint there), resumed: the same losses and weights."""
    from safetensors.torch import load_file

    raw = dpo_recipe(models, tmp_path, method={"name": "full"}, preference={"reference": "precomputed"},
                     checkpoint={"every_steps": 3, "keep_on_finish": True})
    raw["train"].update(max_steps=6)
    finetune(validate_recipe(dict(raw, output=str(tmp_path / "reference"))), echo=quiet)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(dict(raw, output=str(tmp_path / "resumed"))))
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo / "src"), "HF_HUB_OFFLINE": "1",
           "TUNESMITH_TEST_SIGNAL_AFTER_STEP": "3:TERM"}
    done = subprocess.run([sys.executable, "-m", "tunesmith.cli", "train", str(recipe)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 143, done.stderr[-2000:]
    assert main(["train", str(recipe), "--resume"]) == 0
    assert train_losses(tmp_path / "resumed") == pytest.approx(train_losses(tmp_path / "reference"), abs=1e-6)
    a = load_file(tmp_path / "resumed" / "model" / "model.safetensors")
    b = load_file(tmp_path / "reference" / "model" / "model.safetensors")
    assert all((a[k] - b[k]).abs().max() < 1e-6 for k in a)


def test_bad_pairs_are_dropped_and_named_or_stop_the_run_with_inspect_fail_on(models, tmp_path):
    raw = dpo_recipe(models, tmp_path, method={"name": "lora"})
    raw["train"]["max_steps"] = 1
    with open(raw["data"]["train"], "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"prompt": "say the word one", "chosen": "one", "rejected": "one "}) + "\n")
    lines = []
    result = finetune(validate_recipe(raw), echo=lines.append)
    assert result["data"]["train"] + result["data"]["validation"] == 48, "the identical pair was dropped"
    assert any("[identical_replies]" in line and "line 49" in line for line in lines)
    raw["inspect"] = {"fail_on": ["identical_replies"]}
    raw["output"] = str(tmp_path / "stopped")
    with pytest.raises(DataError, match="inspect found 1 problem\\(s\\) listed in inspect.fail_on: identical_replies"):
        finetune(validate_recipe(raw), echo=quiet)


@pytest.mark.parametrize("method", ["lora", "dora", "full"])
def test_the_metrics_before_training_are_the_reference_scored_against_itself(models, tmp_path, method):
    """before_training takes them from the reference pass (no second pass); a real policy pass agrees."""
    from tunesmith.evaluation.preference import PAIR_METRICS

    raw = dpo_recipe(models, tmp_path, method={"name": method, **({"dropout": 0.3} if method != "full" else {})})
    run = FineTune(validate_recipe(raw), echo=quiet)
    run.setup()
    loader = run.loaders.held_out["validation"]
    measured = run.task.evaluate(run.model, loader, run.accelerator)  # the policy, the reference computed live
    kept, before = run.task.score_with_reference(run.model, loader, run.accelerator, "reference")
    assert before["pairs"] == measured["pairs"] == 12 and torch.isfinite(kept).all()
    for name in PAIR_METRICS:
        assert before[name] == pytest.approx(measured[name], abs=1e-5), name


@pytest.mark.shared_data
@pytest.mark.real_model
def test_the_example_recipe_reads_hh_pairs_and_trains_smollm2(shared_data, tmp_path, monkeypatch):
    """examples/dpo.yaml as shipped reads 2,303 HH pairs (9 named and dropped) into 2,072 / 231; a 2-step run of
    it (small held-out share, short pairs) trains the real smollm2 with LoRA and starts at reward accuracy 0.5."""
    from tunesmith.config.recipe import load_recipe

    repo = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(repo)  # the recipe's paths are relative to the project root, as the README runs it
    recipe = load_recipe("examples/dpo.yaml")
    task = make_task(recipe)
    splits = task.load_data()
    assert (len(splits.train), len(splits.validation)) == (2072, 231)
    assert {f.code: f.count for f in splits.findings.findings} == {"empty_reply": 4, "prompt_mismatch": 5}
    recipe = load_recipe("examples/dpo.yaml", [
        f"output={tmp_path / 'run'}", "train.max_steps=2", "train.eval_every=2", "train.max_length=96",
        "data.validation.split=0.02", "lm.num_samples=1", "lm.sample_max_new_tokens=4", "report.html=false"])
    result = finetune(recipe, echo=quiet)
    assert result["baselines"]["validation"]["pretrained"]["reward_accuracy"] == 0.5
    assert result["steps"] == 2 and result["validation"]["pairs"] == 47
    assert 0 <= result["validation"]["reward_accuracy"] <= 1 and math.isfinite(result["validation"]["loss"])


@pytest.mark.parametrize("method", [{"name": "freeze", "freeze": "layers", "layers": 1}, {"name": "dora"}])
def test_every_other_method_trains_dpo_against_the_right_reference(models, tmp_path, method):
    """(bitfit: Llama has no biases and a causal LM no task head, so it is refused there, as for sft.)"""
    raw = dpo_recipe(models, tmp_path, method=method)
    method = method["name"]
    raw["train"]["max_steps"] = 3
    run = FineTune(validate_recipe(raw), echo=quiet)
    run.setup()
    assert (run.task.reference_model is None) == (method == "dora")
    run.train()
    result = run.finish()
    assert result["steps"] == 3 and math.isfinite(result["validation"]["loss"])
    assert result["validation"]["reward_margin"] != 0, "the policy moved away from the reference"
