"""LoRA on a causal-LM run (tiny Llama): RUN/model is the merged plain model, and it scores as the run did."""

from __future__ import annotations

import json

import torch
from transformers import AutoModelForCausalLM

from lm_helpers import lm_recipe, shakespeare_slice
from tunesmith.config.recipe import validate_recipe
from tunesmith.recipes.finetune import finetune


def test_lora_causal_lm_run_saves_a_merged_model_that_scores_the_same(tiny_llama_dir, tmp_path):
    text = shakespeare_slice(tmp_path / "shakespeare.txt", 4_000)
    raw = lm_recipe(tiny_llama_dir, "causal_lm", text, tmp_path / "run", lm={"validation_by": "tail"},
                    data={"validation": {"split": 0.2}}, epochs=1, lr=1e-2, max_length=32)
    raw["method"] = {"name": "lora", "r": 4, "gradient_checkpointing": True}
    result = finetune(validate_recipe(raw), echo=lambda *_: None)
    assert result["method"]["trainable_params"] == 2 * (4 * (32 + 32) + 4 * (32 + 16))  # q, v; no head is added
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()

    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model").eval()
    assert not any("lora" in name for name, _ in merged.named_parameters())
    adapter = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())
    assert adapter["modules_to_save"] is None and adapter["task_type"] == "CAUSAL_LM"
    ids = torch.arange(3, 35).unsqueeze(0)
    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()(ids).logits
        tuned = merged(ids).logits
    assert (tuned - base).abs().max() > 1e-3  # the merged adapter changed the model
