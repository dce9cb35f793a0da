"""The recipe's `lm:` section: settings of the language-model tasks (`causal_lm`, `sft`).

Classification ignores it. Kept apart from recipe.py (which imports it for its one `lm:` field) and
free of tunesmith imports, so the recipe schema does not depend on the task modules.

    lm:
      block_size: null          # tokens per packed block; default: train.max_length
      text_unit: paragraph      # causal_lm, .txt files: paragraph (blank-line separated) | line | file
      validation_by: document   # causal_lm: document (random documents) | tail (the end of the text)
      packing: false            # sft: pack short examples into blocks; dpo: each batch in one padding-free row
      chat_template: auto       # sft: auto (the model's, else the default) | model | default
      sample_prompts: null      # prompts generated from before and after training (default: from validation)
      sample_max_new_tokens: 48
      num_proc: null            # causal_lm / sft: tokenizing processes (default: the CPUs available, at most 8)
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LMSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # inf, nan: refused

    block_size: int | None = Field(
        None, ge=2, description="tokens per packed block (causal_lm, and sft with packing); default train.max_length")
    text_unit: Literal["paragraph", "line", "file"] = Field(
        "paragraph", description="causal_lm with a .txt file: what one document is (blank-line separated "
                                 "paragraphs, single lines, or the whole file); EOS goes after each document")
    validation_by: Literal["document", "tail"] = Field(
        "document", description="causal_lm without a validation file: hold out data.validation.split of the "
                                "documents at random (document), or the last part of the text (tail)")
    packing: bool = Field(False, description="sft: pack short examples into blocks of block_size tokens; dpo: "
                                             "each batch's sequences end to end in one row, nothing padded; "
                                             "attention stays within each example")
    chat_template: Literal["auto", "model", "default"] = Field(
        "auto", description="sft: how conversations are rendered: the model's chat template when it has one "
                            "(auto), always the model's (model), or tunesmith's Alpaca-style default (default)")
    sample_prompts: list[str] | None = Field(
        None, description="prompts generated from before and after training (eval.json 'generations'); "
                          "default: the starts of the first validation examples")
    sample_max_new_tokens: int = Field(48, ge=1, le=1024)
    num_samples: int = Field(3, ge=0, le=20, description="how many default sample prompts to take from validation")
    loss_chunk: int = Field(
        256, ge=0, le=1_000_000, description="target tokens projected to the vocabulary at a time in the loss, in "
                                             "training and evaluation (the full logits tensor is never held); 0: "
                                             "the model's own loss over full logits")
    num_proc: int | None = Field(
        None, ge=1, le=256, description="causal_lm / sft: processes that tokenize the data in parallel (each takes "
                                        "about 32 MB of text at a time); default: the CPUs available, at most 8")
