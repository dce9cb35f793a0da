"""Preference losses and metrics (task: dpo): DPO (sigmoid, conservative), IPO and SimPO, from log-probs.

A batch holds B pairs as 2B sequences, the B chosen first, then the B rejected (data/preference_encode.py):
2B right-padded rows, or with `lm.packing` one row of the 2B sequences end to end, position ids restarting at
0 at each; labels are -100 on prompt and padding tokens. `sequence_logps` turns a forward pass into, per
sequence, the summed log-prob of the reply tokens and their number (`reply_logps` for padded rows,
`packed_logps` per segment of a packed row: the same numbers); every loss below starts from those numbers.

With  d_c = logp_policy(chosen) - logp_ref(chosen)  and  d_r  likewise (sums over the reply tokens):

    sigmoid (DPO):  -(1 - eps) * logsigmoid(beta * (d_c - d_r)) - eps * logsigmoid(-beta * (d_c - d_r))
                    (eps = label_smoothing: conservative DPO; eps 0 is Rafailov et al.'s loss)
    ipo:            (d_c / n_c - d_r / n_r - 1 / (2 beta)) ** 2     (per-token averages, as TRL does)
    simpo:          -logsigmoid(beta * (logp(chosen) / n_c - logp(rejected) / n_r) - gamma)   (no reference)

Implicit rewards: beta * d_c and beta * d_r (simpo: beta * logp / n). Reward accuracy is the share of pairs
whose chosen reward is higher, a tie counting one half: before training the policy is the reference, every
reward is 0 and the accuracy is 0.5 (TRL counts ties as wrong and logs 0 there). `logp_accuracy` is the
share of pairs where the model itself gives the chosen reply the higher (summed) log-prob.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
PAIR_METRICS = ("loss", "reward_accuracy", "reward_margin", "chosen_reward", "rejected_reward",
                "chosen_logp", "rejected_logp", "logp_accuracy")


@dataclass
class SideLogps:
    """Per pair: summed reply log-probs and reply token counts of the chosen and the rejected side."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    chosen_tokens: torch.Tensor
    rejected_tokens: torch.Tensor

    @classmethod
    def from_sequences(cls, logps: torch.Tensor, counts: torch.Tensor) -> "SideLogps":
        chosen, rejected = logps.chunk(2)
        chosen_tokens, rejected_tokens = counts.chunk(2)
        return cls(chosen, rejected, chosen_tokens, rejected_tokens)


def first_reply_position(labels: torch.Tensor) -> int:
    """The earliest position (over the batch) whose logit predicts a reply token: everything before it
    is prompt in every row, so its logits need not be computed (the vocabulary projection is the costly part)."""
    has_label = (labels != IGNORE_INDEX).any(0).nonzero()
    return max(int(has_label[0]) - 1, 0) if len(has_label) else 0


def reply_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed log-prob of each sequence's labelled tokens, their number). `logits` (N, K, V) are those of the
    last K positions of `labels` (N, L): position t predicts token t + 1, as in a causal LM."""
    targets = labels[:, labels.shape[1] - logits.shape[1] + 1:]
    logits = logits[:, :-1].float()
    mask = targets != IGNORE_INDEX
    safe = targets.masked_fill(~mask, 0)
    picked = logits.gather(-1, safe.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    return (picked * mask).sum(1), mask.sum(1)


def sequence_logps(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward of the batch's 2B sequences (padded rows, or one packed row: `packed_logps`); logits only
    from the first reply position on."""
    if "position_ids" in batch:
        return packed_logps(model, batch)
    labels = batch["labels"]
    keep = labels.shape[1] - first_reply_position(labels)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False,
                   logits_to_keep=keep).logits
    return reply_logps(logits, labels)


def packed_targets(labels: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """For one packed row (1, T) whose position ids restart at 0 at each sequence: (the positions t whose logit
    predicts a reply token at t + 1, the sequence that token belongs to, the number of sequences). The first
    token of a sequence is never a target (its logit would be the previous sequence's last one), as the
    first token of a padded row is never predicted."""
    starts = position_ids[0] == 0
    segment = starts.long().cumsum(0) - 1
    predicted = (labels[0, 1:] != IGNORE_INDEX) & ~starts[1:]
    where = predicted.nonzero().squeeze(1)
    return where, segment[where + 1], int(starts.sum())


def packed_logps(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """`reply_logps` of a packed batch (one row, `position_ids`, no attention mask: transformers keeps the
    sequences apart, tasks/dpo.py): logits only at the positions that predict a reply token, summed per sequence."""
    labels, position_ids = batch["labels"], batch["position_ids"]
    where, segment, count = packed_targets(labels, position_ids)
    logits = model(input_ids=batch["input_ids"], position_ids=position_ids, use_cache=False,
                   logits_to_keep=where).logits[0].float()
    targets = labels[0, where + 1]
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    sums = picked.new_zeros(count).index_add(0, segment, picked)
    return sums, torch.bincount(segment, minlength=count)


def reply_token_counts(batch: dict) -> torch.Tensor:
    """The number of predicted reply tokens of each of the batch's 2B sequences (padded or packed)."""
    labels = batch["labels"]
    if "position_ids" in batch:
        _, segment, count = packed_targets(labels, batch["position_ids"])
        return torch.bincount(segment, minlength=count)
    return (labels[:, 1:] != IGNORE_INDEX).sum(1)


def preference_losses(spec, policy: SideLogps, reference: SideLogps | None) -> dict[str, torch.Tensor]:
    """Per pair: "loss", "chosen_reward", "rejected_reward" (spec: the recipe's preference section)."""
    beta = spec.beta_value
    if spec.loss == "simpo":
        chosen_avg = policy.chosen / policy.chosen_tokens.clamp(min=1)
        rejected_avg = policy.rejected / policy.rejected_tokens.clamp(min=1)
        loss = -F.logsigmoid(beta * (chosen_avg - rejected_avg) - spec.simpo_gamma)
        return {"loss": loss, "chosen_reward": beta * chosen_avg.detach(),
                "rejected_reward": beta * rejected_avg.detach()}
    if reference is None:
        raise ValueError(f"preference loss {spec.loss} needs the reference log-probs")
    chosen_ratio = policy.chosen - reference.chosen
    rejected_ratio = policy.rejected - reference.rejected
    if spec.loss == "ipo":
        delta = (chosen_ratio / policy.chosen_tokens.clamp(min=1)
                 - rejected_ratio / policy.rejected_tokens.clamp(min=1))
        loss = (delta - 1 / (2 * beta)) ** 2
    else:  # sigmoid, with label smoothing: conservative DPO
        delta = beta * (chosen_ratio - rejected_ratio)
        eps = spec.label_smoothing
        loss = -(1 - eps) * F.logsigmoid(delta) - eps * F.logsigmoid(-delta)
    return {"loss": loss, "chosen_reward": beta * chosen_ratio.detach(),
            "rejected_reward": beta * rejected_ratio.detach()}


def pair_records(losses: dict[str, torch.Tensor], policy: SideLogps) -> torch.Tensor:
    """(B, 8) rows of PAIR_METRICS per pair, ready to gather across processes and average."""
    chosen, rejected = losses["chosen_reward"], losses["rejected_reward"]
    won = (chosen > rejected).float() + 0.5 * (chosen == rejected).float()
    logp_won = (policy.chosen > policy.rejected).float() + 0.5 * (policy.chosen == policy.rejected).float()
    columns = [losses["loss"].detach(), won, chosen - rejected, chosen, rejected,
               policy.chosen.detach(), policy.rejected.detach(), logp_won]
    return torch.stack([c.double() for c in columns], dim=1)


def summarize_pairs(rows: torch.Tensor) -> dict[str, float]:
    """Means over all pairs of the (N, 8) rows from pair_records, plus the number of pairs."""
    if not len(rows):
        return {name: float("nan") for name in PAIR_METRICS} | {"pairs": 0}
    means = rows.mean(0).tolist()
    return {**dict(zip(PAIR_METRICS, means)), "pairs": len(rows)}
