"""Does the model fit the tokenizer, the data and the way it will be used?

- `check_vocabulary_range`: every token id of the training data and every special token is a row of the input
  embedding (tokens added to a tokenizer without resizing the embeddings index past the table).
- `check_padding_side`: a decoder's tokenizer, as saved with the model, pads so that batched generation works:
  the next-token logits of a prompt in a padded batch (model.generate on `tokenizer(prompts, padding=True)`)
  equal those of the prompt alone. Right padding fails this (generation continues after the pad tokens).
- `check_max_length`: train.max_length against the model's position table (classifiers cut to it).
"""

from __future__ import annotations

import torch

from tunesmith.data.chat import renderer
from tunesmith.data.findings import Finding
from tunesmith.models.checks import embedding_rows
from tunesmith.methods.base import plain_model
from tunesmith.methods.frozen_precision import logit_tolerance
from tunesmith.preflight.lm_targets import is_decoder_task

PADDING_TOLERANCE = 1e-3


def check_vocabulary_range(context) -> list[Finding]:
    rows = embedding_rows(plain_model(context.model))
    if rows is None:
        return []
    tokenizer = context.tokenizer
    largest = max((max(ids) for row in context.sample_rows("train") for key, ids in row.items()
                   if key.endswith("input_ids") and len(ids)), default=-1)
    specials = {name: getattr(tokenizer, f"{name}_token_id", None) for name in ("pad", "eos", "bos", "unk")}
    outside = [f"{name} {i}" for name, i in specials.items() if isinstance(i, int) and i >= rows]
    if largest >= rows:
        outside.insert(0, f"token id {largest} in the training data")
    if len(tokenizer) > rows:
        outside.insert(0, f"the tokenizer's {len(tokenizer):,} tokens")
    if not outside:
        return []
    return [Finding("vocabulary_out_of_range", "error", f"{outside[0]} reach past the model's {rows:,} embedding "
                    f"rows (tokens added without resizing the embeddings?)", count=len(outside), examples=outside)]


def prompt_texts(context) -> list[str]:
    """Two prompts of different lengths, rendered as generation renders them."""
    first = next(iter(context.task.default_prompts(context.splits.validation)), None) or {"prompt": "Hello"}
    messages = list(first.get("messages") or [{"role": "user", "content": first["prompt"]}])
    longer = messages[:-1] + [{**messages[-1], "content": messages[-1]["content"] + " " + messages[-1]["content"]}]
    template = context.task.chat_template(context.tokenizer)
    if template is None:
        return [m[-1]["content"] for m in (messages, longer)]
    render = renderer(context.tokenizer, template)
    return [render(m, add_generation_prompt=True) for m in (messages, longer)]


@torch.no_grad()
def next_token_logits(model, tokenizer, texts: list[str], device) -> torch.Tensor:
    encoded = tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False).to(device)
    out = model.generate(**encoded, max_new_tokens=1, do_sample=False, output_logits=True,
                         return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id)
    return out.logits[0].float().cpu()


def check_padding_side(context) -> list[Finding]:
    if not is_decoder_task(context):
        return []
    model, tokenizer = context.model, context.tokenizer
    texts = prompt_texts(context)
    was_training = model.training
    model.eval()
    try:
        batched = next_token_logits(model, tokenizer, texts, context.device)
        alone = torch.cat([next_token_logits(model, tokenizer, [text], context.device) for text in texts])
    finally:
        model.train(was_training)
    gap = float((batched - alone).abs().max())
    if gap <= logit_tolerance(model, PADDING_TOLERANCE, alone):  # a bf16-held frozen base: bf16 rounding apart
        return []
    return [Finding("decoder_padding_side", "warning", f"batched generation with the tokenizer as saved "
                    f"(padding_side={tokenizer.padding_side!r}) changes a prompt's next-token logits by up to "
                    f"{gap:.3g}: a decoder must pad on the left for generation (tokenizer.padding_side = 'left')")]


def check_max_length(context) -> list[Finding]:
    lengths = context.task.length_summary()
    asked, positions = lengths.get("asked"), lengths.get("model_positions")
    if positions is None or asked is None or asked <= positions:
        return []
    return [Finding("max_length_over_positions", "warning", f"train.max_length {asked} is more than the model's "
                    f"{positions} positions: examples are cut to {lengths.get('used')} tokens; set "
                    f"train.max_length: {positions} to say so")]
