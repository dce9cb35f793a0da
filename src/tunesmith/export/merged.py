"""merged: a plain Hugging Face directory (safetensors + config + tokenizer), LoRA/DoRA merged into the base.

For a LoRA/DoRA run the merge is redone here from the base model and RUN/adapter (W + alpha/r * B @ A, or
DoRA's magnitude-scaled form), independently of RUN/model, so the report also checks that the adapter and
RUN/model agree. For any other run RUN/model is already plain and is copied as it is.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def build(source, out: Path) -> dict:
    if not (source.run_path / "adapter" / "adapter_config.json").is_file():
        for item in source.model_dir.iterdir():
            if item.is_file():
                shutil.copy2(item, out / item.name)
        return {"merged_from": "RUN/model (no adapter: the run trained the model itself)"}
    from tunesmith.methods.lora import load_adapter_model
    from tunesmith.models import quiet_transformers

    peft_model, _ = load_adapter_model(source.run_path, trust_remote_code=source.trust_remote_code)
    merged = peft_model.merge_and_unload()
    with quiet_transformers():
        merged.save_pretrained(out, safe_serialization=True)
    shutil.copy2(source.model_dir / "config.json", out / "config.json")  # label map, tuned threshold
    return {"merged_from": "base model + RUN/adapter"}
