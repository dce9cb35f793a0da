"""Preflight in real (tiny) runs: each fault planted, its finding asserted; clean runs raise none and train the
same weights as runs without preflight."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

import tunesmith.preflight.head as head_checks
from lm_helpers import lm_recipe, number_rows, shakespeare_slice, write_json
from pipeline_helpers import sentiment_rows, tiny_recipe, write_csv
from tunesmith.config.recipe import validate_recipe
from tunesmith.data.chat import DEFAULT_CHAT_TEMPLATE
from tunesmith.preflight import CHECKS, PreflightError
from tunesmith.recipes.finetune import FineTune, finetune
from tunesmith.tasks.classification import ClassificationTask
from tunesmith.tasks.lm import LMTask
from tunesmith.tasks.sft import SFTTask


def classifier_recipe(tmp_path, model_dir, method="full", preflight=None, **train):
    tmp_path.mkdir(parents=True, exist_ok=True)
    raw = tiny_recipe(model_dir, write_csv(tmp_path / "train.csv", sentiment_rows(64)), tmp_path / "run",
                      epochs=1, **train)
    raw["method"] = {"name": method}
    raw["baselines"] = False
    raw["report"] = {"html": False}
    raw["preflight"] = preflight or {}
    return validate_recipe(raw)


def sft_recipe(tmp_path, model_dir, rows=None, preflight=None, **train):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = write_json(tmp_path / "train.json", rows or number_rows(40))
    raw = lm_recipe(model_dir, "sft", path, tmp_path / "run", epochs=1, **train)
    raw["baselines"] = False
    raw["report"] = {"html": False}
    raw["preflight"] = preflight or {}
    return validate_recipe(raw)


def set_up(recipe):
    run = FineTune(recipe, echo=lambda line: None)
    run.setup()
    return run


def codes(run, severity=None):
    """The codes of the run's findings of `severity` (default: warnings and errors)."""
    return [f.code for f in run.preflight.findings if f.severity == severity or severity is None and f.severity != "info"]


def test_clean_classifier_run_runs_every_check_and_records_them(tmp_path, tiny_bert_dir):
    result = finetune(classifier_recipe(tmp_path, tiny_bert_dir, preflight={"loss_probe": True}),
                      echo=lambda line: None)
    preflight = result["preflight"]
    assert preflight["checks"] == list(CHECKS)
    assert preflight["summary"]["error"] == 0 and preflight["summary"]["warning"] == 0
    inspect = json.loads((tmp_path / "run" / "inspect.json").read_text())
    assert inspect["preflight"]["checks"] == list(CHECKS)
    assert "findings" in inspect  # the data inspection is kept beside it


def test_preflight_changes_nothing_the_run_trains(tmp_path, tiny_bert_dir):
    weights = []
    for name, spec in (("on", {"loss_probe": True}), ("off", {"enabled": False})):
        recipe = classifier_recipe(tmp_path / name, tiny_bert_dir, preflight=spec)
        finetune(recipe, echo=lambda line: None)
        weights.append(load_file(str(tmp_path / name / "run" / "model" / "model.safetensors")))
    assert weights[0].keys() == weights[1].keys()
    assert all((weights[0][k] == weights[1][k]).all() for k in weights[0])


@pytest.mark.preflight_fault
def test_lora_head_left_out_of_the_adapter_is_caught(tmp_path, tiny_bert_dir, monkeypatch):
    from peft import LoraConfig, get_peft_model

    def plain_lora(self, model, spec):  # PEFT without task_type or modules_to_save: the head is frozen, not saved
        return get_peft_model(model, LoraConfig(r=spec.r, lora_alpha=spec.alpha, target_modules=["query", "value"]))

    monkeypatch.setattr("tunesmith.methods.lora.LoRA.apply", plain_lora)
    recipe = classifier_recipe(tmp_path, tiny_bert_dir, method="lora")
    with pytest.raises(PreflightError, match=r"\[head_frozen\].*nothing was trained"):
        set_up(recipe)
    assert not (tmp_path / "run" / "model").exists()
    ignored = classifier_recipe(tmp_path, tiny_bert_dir, method="lora", preflight={
        "ignore": ["head_frozen", "head_not_saved", "head_round_trip"]})
    run = set_up(ignored)
    assert {"head_frozen", "head_not_saved", "head_round_trip"} <= set(codes(run, "warning"))
    assert sorted(run.preflight.ignored) == ["head_frozen", "head_not_saved", "head_round_trip"]


@pytest.mark.preflight_fault
def test_a_save_that_drops_the_head_fails_the_round_trip(tmp_path, tiny_bert_dir, monkeypatch):
    real = head_checks.load_best_weights

    def without_head(model, run):
        state = model.state_dict()
        kept = {k: v.clone() for k, v in state.items() if k.startswith("classifier")}
        real(model, run)
        model.load_state_dict({**model.state_dict(), **kept})  # the copy keeps its scrambled head

    monkeypatch.setattr(head_checks, "load_best_weights", without_head)
    recipe = classifier_recipe(tmp_path, tiny_bert_dir, preflight={"ignore": ["head_round_trip"]})
    run = set_up(recipe)
    finding = run.preflight.by_code("head_round_trip")
    assert finding is not None and "reload of its best model" in finding.message
    assert codes(run) == ["head_round_trip"]  # the head is trainable and saved: only the reload is wrong


@pytest.mark.preflight_fault
def test_tokens_added_without_resizing_are_out_of_range(tmp_path, tiny_bert_dir, monkeypatch):
    real = ClassificationTask.load_model

    def with_new_token(self, model_dir):
        model, tokenizer = real(self, model_dir)
        tokenizer.add_tokens(["zqxtoken"])
        return model, tokenizer

    monkeypatch.setattr(ClassificationTask, "load_model", with_new_token)
    rows = [(label, text + " zqxtoken") for label, text in sentiment_rows(64)]
    raw = classifier_recipe(tmp_path, tiny_bert_dir).to_mapping()
    raw["data"]["train"] = str(write_csv(tmp_path / "new.csv", rows))
    with pytest.raises(PreflightError, match=r"\[vocabulary_out_of_range\].*30,522 embedding rows"):
        set_up(validate_recipe(raw))
    ignored = validate_recipe({**raw, "preflight": {"ignore": ["vocabulary_out_of_range"]}})
    with pytest.raises(IndexError):  # what the run would have died of, inside the first forward pass
        set_up(ignored).train()


@pytest.mark.preflight_fault
def test_max_length_over_the_positions(tmp_path, tiny_bert_dir):
    run = set_up(classifier_recipe(tmp_path, tiny_bert_dir, max_length=1024))
    assert codes(run) == ["max_length_over_positions"]
    assert "512 positions" in run.preflight.by_code("max_length_over_positions").message


@pytest.mark.preflight_fault
def test_loss_probe_catches_a_rate_too_low_and_one_too_high(tmp_path, tiny_bert_dir):
    low = set_up(classifier_recipe(tmp_path / "low", tiny_bert_dir, lr=1e-9, preflight={"loss_probe": True}))
    assert "barely moved" in low.preflight.by_code("loss_not_falling").message
    high = set_up(classifier_recipe(tmp_path / "high", tiny_bert_dir, lr=50.0, preflight={"loss_probe": True}))
    message = high.preflight.by_code("loss_not_falling").message
    assert "too high" in message


def test_loss_probe_auto_skips_a_short_run(tmp_path, tiny_bert_dir):
    run = set_up(classifier_recipe(tmp_path, tiny_bert_dir, preflight={"probe_minutes": 600}))
    assert codes(run) == [] and "loss_probe_skipped" in codes(run, "info")


# ---- language models ------------------------------------------------------------------------------------------
def test_clean_sft_and_causal_lm_runs_raise_nothing(tmp_path, tiny_gpt2_dir, tiny_llama_dir):
    for name, model_dir in (("gpt2", tiny_gpt2_dir), ("llama", tiny_llama_dir)):
        run = set_up(sft_recipe(tmp_path / name, model_dir, preflight={"loss_probe": True}))
        assert [f for f in run.preflight.findings if f.severity != "info"] == [], name
        assert run.tokenizer.padding_side == "left"
    text = shakespeare_slice(tmp_path / "text.txt", 6000)
    causal = validate_recipe({**lm_recipe(tiny_gpt2_dir, "causal_lm", text, tmp_path / "causal", epochs=1),
                              "baselines": False, "preflight": {"loss_probe": True}})
    assert [f for f in set_up(causal).preflight.findings if f.severity != "info"] == []


@pytest.mark.preflight_fault
def test_eos_masked_like_padding_is_never_trained(tmp_path, tiny_gpt2_dir, monkeypatch):
    import tunesmith.data.arrow_encode as sft_encoding

    real = sft_encoding.encode_conversation

    def masking_pad(tokenizer, render, messages, max_length=None):  # the classic: pad = eos, labels[ids == pad] = -100
        example = real(tokenizer, render, messages, max_length)
        pad = tokenizer.pad_token_id
        example["labels"] = [-100 if i == pad else label for i, label in zip(example["input_ids"], example["labels"])]
        return example

    monkeypatch.setattr(sft_encoding, "encode_conversation", masking_pad)
    with pytest.raises(PreflightError, match=r"\[end_token_not_trained\] the end token \('<\|endoftext\|>'\)"):
        set_up(sft_recipe(tmp_path, tiny_gpt2_dir))


@pytest.mark.preflight_fault
def test_a_template_without_end_token(tmp_path, tiny_gpt2_dir, monkeypatch):
    endless = DEFAULT_CHAT_TEMPLATE.replace(" + eos_token", "")
    monkeypatch.setattr("tunesmith.tasks.sft.choose_template", lambda tokenizer, choice="auto": endless)
    run = set_up(sft_recipe(tmp_path, tiny_gpt2_dir))
    finding = run.preflight.by_code("answers_without_end_token")
    assert finding.severity == "warning" and finding.count == 32  # every training answer (40 rows, 8 held out)


@pytest.mark.preflight_fault
def test_conversations_truncated_to_no_answer_are_counted(tmp_path, tiny_gpt2_dir):
    rows = number_rows(40) + [{"instruction": "count " + "one two three " * 30, "input": "", "output": "done"}] * 5
    run = set_up(sft_recipe(tmp_path, tiny_gpt2_dir, rows=rows))
    finding = run.preflight.by_code("zero_target_examples")
    assert finding.severity == "warning" and 1 <= finding.count <= 5
    assert finding.count == run.task.encode_extras("train")["stats"]["dropped"]


@pytest.mark.preflight_fault
def test_a_normalising_tokenizer_breaks_the_template_round_trip(tmp_path, tiny_gpt2_dir, monkeypatch):
    from tokenizers.normalizers import Lowercase

    real = SFTTask.load_model

    def lowercasing(self, model_dir):
        model, tokenizer = real(self, model_dir)
        tokenizer.backend_tokenizer.normalizer = Lowercase()
        return model, tokenizer

    monkeypatch.setattr(SFTTask, "load_model", lowercasing)
    run = set_up(sft_recipe(tmp_path, tiny_gpt2_dir))
    finding = run.preflight.by_code("chat_template_round_trip")
    assert finding.severity == "warning" and "'### Instruction" in finding.message


@pytest.mark.preflight_fault
def test_generation_with_another_template_than_training(tmp_path, tiny_gpt2_dir, monkeypatch):
    real = SFTTask.load_model

    def other_template(self, model_dir):
        model, tokenizer = real(self, model_dir)
        tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
                                   "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}")
        return model, tokenizer

    monkeypatch.setattr(SFTTask, "load_model", other_template)
    with pytest.raises(PreflightError, match=r"\[generation_template\] generation renders prompts with another"):
        set_up(sft_recipe(tmp_path, tiny_gpt2_dir))


@pytest.mark.preflight_fault
def test_right_padding_breaks_batched_generation(tmp_path, tiny_gpt2_dir, monkeypatch):
    real = LMTask.load_model

    def right_padded(self, model_dir):
        model, tokenizer = real(self, model_dir)
        tokenizer.padding_side = "right"
        return model, tokenizer

    monkeypatch.setattr(LMTask, "load_model", right_padded)
    run = set_up(sft_recipe(tmp_path, tiny_gpt2_dir))
    assert codes(run) == ["decoder_padding_side"]
    assert "padding_side='right'" in run.preflight.by_code("decoder_padding_side").message


@pytest.mark.preflight_fault
def test_findings_reach_inspect_json_eval_json_and_the_report(tmp_path, tiny_bert_dir):
    raw = classifier_recipe(tmp_path, tiny_bert_dir, max_length=1024).to_mapping()
    raw["report"] = {"html": True}
    result = finetune(validate_recipe(raw), echo=lambda line: None)
    assert [f["code"] for f in result["preflight"]["findings"] if f["severity"] == "warning"] == \
        ["max_length_over_positions"]
    inspect = json.loads((tmp_path / "run" / "inspect.json").read_text())
    assert inspect["preflight"]["summary"]["warning"] == 1
    html = (tmp_path / "run" / "report.html").read_text()
    assert "Preflight checks" in html and "max_length_over_positions" in html and "0 errors, 1 warnings" in html
