"""method.frozen_precision: auto: under LoRA / DoRA in bf16 the frozen base is held in bf16 during training, and
RUN/model is still merged from the fp32 base and evaluated in fp32."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from lm_helpers import lm_recipe, shakespeare_slice
from pipeline_helpers import sentiment_rows, tiny_recipe, write_csv
from tunesmith.config.method import MethodSpec
from tunesmith.config.recipe import validate_recipe
from tunesmith.methods import apply_method
from tunesmith.methods.frozen_precision import cast_frozen_to_bf16, holds_frozen_in_bf16, restore_frozen_fp32
from tunesmith.recipes.finetune import finetune
from tunesmith.train.precision import cpu_has_bf16

needs_bf16 = pytest.mark.skipif(not cpu_has_bf16() and not torch.cuda.is_available(),
                                reason="bf16 training needs AVX512-BF16/AMX or a GPU")


def test_only_lora_and_dora_in_bf16_hold_the_base_in_bf16():
    assert holds_frozen_in_bf16(MethodSpec(name="lora"), "bf16")
    assert holds_frozen_in_bf16(MethodSpec(name="dora"), "bf16")
    assert not holds_frozen_in_bf16(MethodSpec(name="lora"), "no")
    assert not holds_frozen_in_bf16(MethodSpec(name="lora", frozen_precision="fp32"), "bf16")
    assert not holds_frozen_in_bf16(MethodSpec(name="freeze"), "bf16")
    with pytest.raises(ValueError, match="frozen_precision"):
        MethodSpec(name="full", frozen_precision="auto")


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_cast_then_restore_gives_back_the_fp32_base_bit_for_bit(tiny_llama_dir, tiny_gpt2_dir, architecture):
    directory = {"llama": tiny_llama_dir, "gpt2": tiny_gpt2_dir}[architecture]
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    tied = model.lm_head.weight is model.get_input_embeddings().weight
    assert tied == (architecture == "gpt2")  # GPT-2 ties its projection to the embeddings; this tiny Llama does not
    model, _ = apply_method(model, MethodSpec(name="lora", r=4))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    saved = cast_frozen_to_bf16(model)
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert saved == sum(p.numel() for p in frozen) * 2 and all(p.dtype == torch.bfloat16 for p in frozen)
    assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if n in trainable)
    inner = model.get_base_model()
    assert (inner.lm_head.weight is inner.get_input_embeddings().weight) == tied  # a tie survives the cast

    restore_frozen_fp32(model, directory)
    merged = model.merge_and_unload()  # B = 0: the merge is the base
    state = merged.state_dict()
    assert all(torch.equal(state[k], original[k]) for k in original), "restored weights differ from the base"
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())


@needs_bf16
def test_causal_lora_run_merges_into_the_fp32_base_and_evaluates_in_fp32(tiny_llama_dir, tmp_path):
    text = shakespeare_slice(tmp_path / "shakespeare.txt", 4_000)
    raw = lm_recipe(tiny_llama_dir, "causal_lm", text, tmp_path / "run", lm={"validation_by": "tail"},
                    data={"validation": {"split": 0.2}}, epochs=1, lr=1e-2, max_length=32, precision="bf16")
    raw["method"] = {"name": "lora", "r": 4}
    lines = []
    result = finetune(validate_recipe(raw), echo=lines.append)
    assert any(line.startswith("frozen base held in bf16") for line in lines)
    merged_file = load_file(tmp_path / "run" / "model" / "model.safetensors")
    assert {v.dtype for v in merged_file.values() if v.is_floating_point()} == {torch.float32}

    # RUN/model is exactly the fp32 base with the saved adapter merged, and the final loss is its fp32 loss
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    reference = PeftModel.from_pretrained(base, tmp_path / "run" / "adapter").merge_and_unload().state_dict()
    assert all(torch.equal(merged_file[k], reference[k]) for k in merged_file)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model").eval()
    assert merged.dtype == torch.float32 and result["environment"]["precision"] == "bf16"


@needs_bf16
@pytest.mark.parametrize("method", ["lora", "dora"])
def test_classifier_adapter_in_bf16_trains_and_matches_its_fp32_twin_closely(tiny_bert_dir, tmp_path, method):
    """The same run with the base held in bf16 and in fp32 (both bf16 autocast): the same steps, losses within
    bf16 rounding, and both RUN/model files fp32."""
    train = write_csv(tmp_path / "train.csv", sentiment_rows(64, seed=3))
    results = {}
    for frozen in ("auto", "fp32"):
        raw = tiny_recipe(tiny_bert_dir, train, tmp_path / frozen, epochs=2, lr=5e-2, precision="bf16")
        raw["method"] = {"name": method, "r": 4, "frozen_precision": frozen}
        raw["report"] = {"html": False}
        results[frozen] = finetune(validate_recipe(raw), echo=lambda *_: None)
        weights = load_file(tmp_path / frozen / "model" / "model.safetensors")
        assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float32}
    a, b = results["auto"], results["fp32"]
    assert a["steps"] == b["steps"]
    assert a["validation"]["loss"] == pytest.approx(b["validation"]["loss"], rel=0.05)
    train_losses = {k: [json.loads(line)["loss"] for line in (tmp_path / k / "metrics.jsonl").read_text().splitlines()
                        if json.loads(line)["type"] == "train"] for k in results}
    assert train_losses["auto"] == pytest.approx(train_losses["fp32"], rel=0.03)
