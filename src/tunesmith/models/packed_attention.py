"""Does a causal LM keep packed sequences apart? (`lm.packing`: sft blocks, dpo's padding-free batches.)

Packed rows hold several sequences end to end with position ids restarting at 0 at each, and no attention
mask. Transformers v5 (masking_utils.py, `_preprocess_mask_arguments` -> `find_packed_sequence_indices`)
turns the restarts into a block-diagonal causal mask only when all of these hold:

- the attention implementation is one of its mask interface's: `sdpa`, `eager`, `flex_attention` (any number
  of rows), or `flash_attention_2/3/4`, which finds the sequences from the position ids only in a batch of
  ONE row (modeling_flash_attention_utils.py `_is_packed_sequence`), so it suits dpo's one-row batches but
  not sft's blocks;
- `attention_mask` is None (a 2D mask, even all ones, turns the detection off);
- there is no cache: `use_cache=True` makes the model build a DynamicCache, which turns it off too, so every
  packed forward passes `use_cache=False`;
- the model hands its position ids to `create_causal_mask` at all: GPT-2, Llama, Mistral, Qwen2 and most
  decoders do; BLOOM and MPT (ALiBi, no position ids) and OPT do not (measured), and would attend across
  the sequences.

`check_packing(model, one_row=...)` checks the attention implementation, then measures the rest: the logits
of a short sequence packed after another must equal its logits alone. A model that fails is refused in one
RecipeError line instead of silently training across sequences.
"""

from __future__ import annotations

from tunesmith.errors import RecipeError
from tunesmith.models.checks import embedding_rows

MASKED_ATTENTION = ("sdpa", "eager", "flex_attention")  # find packed sequences on any number of rows
ONE_ROW_ATTENTION = ("flash_attention_2", "flash_attention_3", "flash_attention_4")  # on one row only
TOLERANCE = 1e-5  # relative to the largest logit, in fp32 (as models load): packed vs alone differ by rounding only


def packing_leak(model) -> float:
    """The largest change (relative to the largest logit) of a 4-token sequence's logits when a 6-token one is
    packed before it in the same row (position ids 0..5, 0..3; no mask, no cache); inf when the model does
    not take position ids. About 1e-7 in fp32 for a model that keeps the sequences apart, 3e-3 for a tiny
    random BLOOM, which does not."""
    import torch

    vocab = embedding_rows(model) or 2
    first = [(7 * i + 3) % vocab for i in range(6)]
    second = [(11 * i + 5) % vocab for i in range(4)]
    device = next(model.parameters()).device
    row = torch.tensor([first + second], device=device)
    positions = torch.tensor([list(range(len(first))) + list(range(len(second)))], device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            packed = model(input_ids=row, position_ids=positions, use_cache=False).logits[0, len(first):].float()
            alone = model(input_ids=row[:, len(first):], use_cache=False).logits[0].float()
    except TypeError:  # a forward without position_ids
        return float("inf")
    finally:
        model.train(was_training)
    return float((packed - alone).abs().max() / alone.abs().max().clamp(min=1.0))


def check_packing(model, *, one_row: bool) -> None:
    """RecipeError unless `model` keeps packed sequences apart; `one_row`: every packed batch is a single row
    (dpo), else several (sft blocks)."""
    import torch

    attention = getattr(model.config, "_attn_implementation", None) or "eager"
    if attention in MASKED_ATTENTION or (one_row and attention in ONE_ROW_ATTENTION):
        leak = packing_leak(model)
        if leak <= max(TOLERANCE, 8 * torch.finfo(next(model.parameters()).dtype).eps):
            return
        reason = ("its forward takes no position ids" if leak == float("inf") else
                  f"the logits of a sequence change by {leak:.2g} of the largest when another is packed before it")
    elif attention in ONE_ROW_ATTENTION:
        reason = "it finds packed sequences in a batch of one row only, and sft batches several blocks"
    else:
        reason = "transformers builds no packed-sequence mask for it"
    architecture = (getattr(model.config, "architectures", None) or [type(model).__name__])[0]
    raise RecipeError(f"lm.packing: {architecture} with {attention} attention does not keep packed sequences "
                      f"apart ({reason}); remove lm.packing")
