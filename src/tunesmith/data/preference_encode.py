"""Preference pairs as token ids (task: dpo), and their batches.

How a pair is encoded (`encode_pair`): the prompt text is the chat template's rendering of the prompt messages
with the generation prompt; a side's reply text is what rendering prompt + [that assistant reply] adds after the
prompt text, so it includes the template's end-of-turn marker (`<|im_end|>\\n` for ChatML, eos for the
default template), exactly as sft's chat.conversation_segments cuts an answer. The prompt and each reply are
tokenized separately with add_special_tokens=False (the template writes its own special tokens), so both sides
start with the very same prompt tokens. Labels are -100 on the prompt and the token ids on the reply.

Truncation keeps the replies: when prompt + the longer reply is over max_length, the prompt is cut from the
left (its start goes; the same cut on both sides) to max_length - len(longer reply) tokens. When that would keep
fewer than `min_prompt_tokens` prompt tokens (all of them when the prompt is shorter), the last
min_prompt_tokens prompt tokens are kept and both replies are cut on the right to fit.

Batches (`PreferenceCollator`): input_ids / attention_mask / labels of shape (2B, L), the B chosen sequences
first, then the B rejected ones in the same pair order, right-padded; pair_index (B,); and reference_logps
(B, 2: chosen, rejected) when the features carry them. Packed (`lm.packing`, padding-free): the same 2B
sequences end to end in one row (1, T) with position_ids restarting at 0 at each and no attention mask,
nothing padded. `make_preference_loader` batches in the orders of data/encode.make_loader, grouping and
sorting pairs by their longer side.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch.utils.data import DataLoader

from tunesmith.data.chat import IGNORE_INDEX, renderer
from tunesmith.data.encode import EncodedDataset, make_loader
from tunesmith.data.packing import pack_examples
from tunesmith.errors import DataError

MIN_PROMPT_TOKENS = 8
SIDES = ("chosen", "rejected")


class PreferenceDataset(EncodedDataset):
    """Encoded pairs; a pair's length (for length grouping and sorting) is its longer side's."""

    def lengths(self) -> list[int]:
        return [max(len(f["chosen_input_ids"]), len(f["rejected_input_ids"])) for f in self.features]


def reply_text(render: Callable[..., str], prompt_messages: Sequence[dict], prompt_text: str, reply: str) -> str:
    """What the template adds to the prompt text for the assistant `reply`, end-of-turn marker included."""
    full = render(list(prompt_messages) + [{"role": "assistant", "content": reply}])
    if not full.startswith(prompt_text):
        raise DataError("the chat template does not render conversations incrementally (a longer "
                        "conversation does not start with the shorter one's text), so answer tokens "
                        "cannot be told from prompt tokens; set lm.chat_template: default")
    return full[len(prompt_text):]


def fit_pair(prompt: list[int], replies: list[list[int]], max_length: int,
             min_prompt_tokens: int = MIN_PROMPT_TOKENS) -> tuple[list[int], list[list[int]], dict]:
    """(prompt, replies, truncation) cut to max_length as the module docstring says."""
    longer = max(len(reply) for reply in replies)
    truncation = {"prompt_truncated": False, "reply_truncated": False}
    if len(prompt) + longer <= max_length:
        return prompt, replies, truncation
    floor = max(0, min(min_prompt_tokens, len(prompt), max_length - 1))
    keep = max_length - longer
    if keep < floor:
        keep = floor
        room = max_length - keep
        truncation["reply_truncated"] = longer > room
        replies = [reply[:room] for reply in replies]
    truncation["prompt_truncated"] = keep < len(prompt)
    return prompt[len(prompt) - keep:], replies, truncation


def encode_pair(tokenizer, render: Callable[..., str], prompt_messages: Sequence[dict], chosen: str, rejected: str,
                max_length: int, min_prompt_tokens: int = MIN_PROMPT_TOKENS) -> tuple[dict, dict]:
    """(feature, truncation): feature has chosen_/rejected_ input_ids and labels; truncation says what was cut
    (prompt_truncated, reply_truncated)."""
    prompt_text = render(list(prompt_messages), add_generation_prompt=True)
    tokens = lambda text: list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
    replies = [tokens(reply_text(render, prompt_messages, prompt_text, reply)) for reply in (chosen, rejected)]
    prompt, replies, truncation = fit_pair(tokens(prompt_text), replies, max_length, min_prompt_tokens)
    feature = {}
    for side, reply in zip(SIDES, replies):
        feature[f"{side}_input_ids"] = prompt + reply
        feature[f"{side}_labels"] = [IGNORE_INDEX] * len(prompt) + reply
    return feature, truncation


def encode_pairs(frame, tokenizer, template: str, max_length: int) -> tuple[PreferenceDataset, dict]:
    """Every row of a pairs frame (columns prompt, chosen, rejected) encoded, with `pair_index` = its 0-based
    position in the frame; stats: pairs, prompt_truncated, reply_truncated, tokens (all input tokens, both
    sides), reply_tokens (both sides)."""
    render = renderer(tokenizer, template)
    features = []
    stats = {"pairs": 0, "prompt_truncated": 0, "reply_truncated": 0, "tokens": 0, "reply_tokens": 0}
    for index, (prompt, chosen, rejected) in enumerate(zip(frame["prompt"], frame["chosen"], frame["rejected"])):
        feature, truncation = encode_pair(tokenizer, render, prompt, chosen, rejected, max_length)
        feature["pair_index"] = index
        features.append(feature)
        stats["pairs"] += 1
        stats["prompt_truncated"] += truncation["prompt_truncated"]
        stats["reply_truncated"] += truncation["reply_truncated"]
        for side in SIDES:
            stats["tokens"] += len(feature[f"{side}_input_ids"])
            stats["reply_tokens"] += sum(label != IGNORE_INDEX for label in feature[f"{side}_labels"])
    return PreferenceDataset(features), stats


class PreferenceCollator:
    """Features -> input_ids, attention_mask, labels (2B, L: chosen rows first, then rejected), pair_index (B,),
    and reference_logps (B, 2) when every feature has them. `packed`: input_ids, labels and position_ids of
    shape (1, T) instead, the 2B sequences end to end in the same order, no attention mask, no padding."""

    def __init__(self, pad_token_id: int, *, packed: bool = False):
        self.pad_token_id = pad_token_id
        self.packed = packed

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        rows = [(f[f"{side}_input_ids"], f[f"{side}_labels"]) for side in SIDES for f in features]
        batch = packed_rows(rows) if self.packed else self.padded_rows(rows)
        batch["pair_index"] = torch.tensor([f["pair_index"] for f in features], dtype=torch.long)
        carried = sum("reference_logps" in f for f in features)
        if carried and carried < len(features):
            raise ValueError("some features carry reference_logps and others do not")
        if carried:
            batch["reference_logps"] = torch.tensor([list(f["reference_logps"]) for f in features],
                                                    dtype=torch.float32).reshape(len(features), 2)
        return batch

    def padded_rows(self, rows: list[tuple[Sequence[int], Sequence[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(ids) for ids, _ in rows)
        ids, labels, mask = [], [], []
        for row_ids, row_labels in rows:
            pad = width - len(row_ids)
            ids.append(list(row_ids) + [self.pad_token_id] * pad)
            labels.append(list(row_labels) + [IGNORE_INDEX] * pad)
            mask.append([1] * len(row_ids) + [0] * pad)
        return {"input_ids": torch.tensor(ids, dtype=torch.long),
                "attention_mask": torch.tensor(mask, dtype=torch.long),
                "labels": torch.tensor(labels, dtype=torch.long)}


def packed_rows(rows: list[tuple[Sequence[int], Sequence[int]]]) -> dict[str, torch.Tensor]:
    """The sequences as one row (1, T): position ids restart at 0 at each, so transformers attends within each
    sequence only; the first label of each is -100 (as DataCollatorWithFlattening does): it would be
    predicted from the previous sequence's last token, and a padded row never predicts its first token. The
    block of data/packing.py pack_examples (sft's packing), as large as the batch."""
    examples = [{"input_ids": ids, "labels": labels} for ids, labels in rows]
    (block,) = pack_examples(examples, block_size=sum(len(ids) for ids, _ in rows))  # one block holds them all
    return {key: torch.tensor([block[key]], dtype=torch.long) for key in ("input_ids", "labels", "position_ids")}


def make_preference_loader(dataset: EncodedDataset, tokenizer, *, batch_size: int, order: str,
                           seed: int = 0, packed: bool = False) -> DataLoader:
    """tunesmith.data.encode.make_loader (same orders and seeds) with the preference collator; each batch holds
    `batch_size` pairs (2 * batch_size sequences; `packed`: in one row)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return make_loader(dataset, tokenizer, batch_size=batch_size, order=order, seed=seed,
                       collate_fn=PreferenceCollator(pad if pad is not None else 0, packed=packed))
