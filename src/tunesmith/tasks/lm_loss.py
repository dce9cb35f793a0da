"""The language-model loss without the full logits tensor: the output projection applied a chunk of target tokens
at a time.

A causal LM's own loss materialises logits of batch x sequence x vocabulary in fp32 (4 x 256 x 49,152 x 4 bytes
= 201 MB for smollm2, twice with the gradient) only to keep one number per token. Here the model runs with its
output projection set aside (`projection_set_aside`: the forward returns the final hidden states), and
`token_loss_sums` keeps only the positions that are targets (labels not -100, shifted by one as the model's own
loss does), applies the projection to `chunk` of them at a time and sums their cross-entropy. In training each
chunk is activation-checkpointed (torch.utils.checkpoint), so its logits are recomputed in the backward pass
instead of held: memory for the loss is chunk x vocabulary, whatever the sequence length and batch. When the
projection is not trained (LoRA, frozen heads) `FrozenProjectionCrossEntropy` goes further: each chunk's gradient
with respect to the hidden states is computed in the forward pass from its softmax, so nothing is recomputed.
Prompt and padding positions are never projected at all.

The value equals the model's own loss (mean over target tokens, fp32 cross-entropy) up to float rounding, and so
does its gradient (tests/tasks/test_lm_loss.py). It applies to the architectures listed in CHUNKED_MODEL_TYPES,
whose forward computes logits as `lm_head(final hidden states)` and nothing more; others (logit soft-capping or
scaling) keep the model's own loss. The forward still goes through the (possibly DDP-wrapped) model, so
gradient synchronisation is unchanged; the projection's gradient reaches it through the chunks.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from tunesmith.data.packing import IGNORE_INDEX
from tunesmith.methods.base import plain_model

CHUNKED_MODEL_TYPES = ("gpt2", "llama", "mistral", "qwen2", "qwen3")  # forward: logits = self.lm_head(hidden)


def can_chunk(model) -> bool:
    config = plain_model(model).config
    return (getattr(config, "model_type", None) in CHUNKED_MODEL_TYPES
            and not getattr(config, "final_logit_softcapping", None))


@contextlib.contextmanager
def projection_set_aside(model):
    """Within the block the model's forward returns its final hidden states as `.logits`; yields the output
    projection (the module itself, with its weights: tied or not, frozen or trained)."""
    inner = plain_model(model)
    head = inner.lm_head
    inner.lm_head = torch.nn.Identity()
    try:
        yield head
    finally:
        inner.lm_head = head


def chunk_token_losses(head, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(hidden).float(), targets, reduction="none")


def token_loss_sums(head, hidden: torch.Tensor, labels: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed cross-entropy of each row's target tokens, fp32; target tokens per row), from the final hidden
    states (batch x sequence x width) and the unshifted labels (-100: not a target)."""
    targets = labels[:, 1:]
    where = (targets != IGNORE_INDEX).nonzero(as_tuple=True)
    picked, wanted = hidden[:, :-1][where], targets[where]  # only the target positions: tokens x width
    weight = getattr(head, "weight", None)
    if weight is not None and picked.dtype != weight.dtype and not torch.is_autocast_enabled(picked.device.type):
        # an evaluation of a bf16 frozen base: the autocast wrapper returned fp32 hidden states
        picked = picked.to(weight.dtype)
    rows = where[0]
    if torch.is_grad_enabled() and len(wanted) and not any(p.requires_grad for p in head.parameters()):
        flat = FrozenProjectionCrossEntropy.apply(picked, head.weight, head.bias, wanted, chunk)
    else:
        losses = []
        for start in range(0, len(wanted), chunk):
            part = (picked[start:start + chunk], wanted[start:start + chunk])
            if torch.is_grad_enabled():  # a trained projection: logits recomputed in the backward pass, never held
                losses.append(checkpoint(functools.partial(chunk_token_losses, head), *part, use_reentrant=False))
            else:
                losses.append(chunk_token_losses(head, *part))
        flat = torch.cat(losses) if losses else hidden.new_zeros(0, dtype=torch.float32)
    sums = torch.zeros(len(labels), dtype=torch.float32, device=hidden.device).index_add(0, rows, flat)
    return sums, torch.bincount(rows, minlength=len(labels))


def chunked_row_sums(model, batch: dict, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`token_loss_sums` of the batch: the model's forward with its projection set aside, then the chunks."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with projection_set_aside(model) as head:
        hidden = model(**inputs, use_cache=False).logits
    return token_loss_sums(head, hidden, batch["labels"], chunk)


def chunked_lm_loss(model, batch: dict, chunk: int) -> torch.Tensor:
    """The mean cross-entropy over the batch's target tokens, as `model(**batch).loss` (nan without any)."""
    sums, counts = chunked_row_sums(model, batch, chunk)
    return sums.sum() / counts.sum()


def row_loss_sums(model, batch: dict, chunk: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed loss, target tokens) of each row, for evaluation: chunked when `chunk` and the model allow it,
    else from the model's full logits one row at a time."""
    if chunk and can_chunk(model):
        return chunked_row_sums(model, batch, chunk)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, use_cache=False).logits
    targets = batch["labels"][:, 1:]
    # row by row: the softmax temporaries are one row's, not the batch's (vocabularies are large)
    sums = torch.stack([F.cross_entropy(logits[i, :-1].float(), targets[i], ignore_index=IGNORE_INDEX,
                                        reduction="sum") for i in range(len(targets))])
    return sums, (targets != IGNORE_INDEX).sum(1)


class FrozenProjectionCrossEntropy(torch.autograd.Function):
    """Per-token cross-entropy (fp32) of `hidden @ weight.T + bias` against `targets`, a `chunk` of tokens at a
    time, for a projection that is not trained (LoRA, a frozen head): the gradient with respect to `hidden` is
    computed in the forward pass, chunk by chunk, from the softmax already at hand, so no logits are kept and none
    are recomputed (two projections per token, as the full-logits loss; the checkpointed chunks take three).

    The gradient of token t's loss with respect to its hidden state is (softmax_t - onehot_t) @ weight, in the
    projection's compute dtype (bf16 under autocast), kept per token (tokens x width); the backward pass scales
    it by each token's incoming gradient. `weight` and `bias` get no gradient (the caller checks they need none).
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk):
        device = hidden.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
        weight = weight.to(dtype)
        bias = bias.to(dtype) if bias is not None else None
        losses = torch.empty(len(targets), dtype=torch.float32, device=hidden.device)
        grad = torch.empty_like(hidden)
        with torch.autocast(device, enabled=False):
            for start in range(0, len(targets), chunk):
                rows = slice(start, start + chunk)
                logits = F.linear(hidden[rows].to(dtype), weight, bias).float()
                wanted = targets[rows].unsqueeze(1)
                log_norm = torch.logsumexp(logits, dim=-1, keepdim=True)
                losses[rows] = (log_norm - logits.gather(1, wanted)).squeeze(1)
                probs = logits.sub_(log_norm).exp_()  # softmax, in place of the logits
                probs.scatter_add_(1, wanted, torch.full_like(wanted, -1, dtype=probs.dtype))
                grad[rows] = (probs.to(dtype) @ weight).to(grad.dtype)
        ctx.save_for_backward(grad)
        return losses

    @staticmethod
    def backward(ctx, grad_losses):
        (grad,) = ctx.saved_tensors
        return grad * grad_losses.unsqueeze(1).to(grad.dtype), None, None, None, None
