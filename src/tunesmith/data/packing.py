"""Token streams and blocks for the language-model tasks, and their batches.

- `pack_documents`: causal_lm. Every document's tokens followed by EOS, concatenated into one stream and
  cut into blocks of `block_size` tokens. Nothing is padded and nothing is dropped: every token lands in
  exactly one block; only the last block may be shorter. Documents share context across EOS inside a block
  (the usual continued-pretraining setup).
- `pack_examples`: sft with `lm.packing`. Whole examples (ids + labels) are placed greedily, in order, into
  blocks of at most `block_size` tokens. Each block carries `position_ids` that restart at 0 for each example,
  so Hugging Face models build a block-diagonal causal mask (no attention across examples). Transformers
  does this only without an attention mask and without a KV cache: forward passes use `use_cache=False`
  (the conditions: models/packed_attention.py). Each example's first label is -100 in the block: its logit
  would be the previous example's last one (unpacked, a row's first token is never predicted either).
- `LMCollator`: right-pads a batch. Padding is marked by the attention mask and by -100 labels built here,
  never by comparing ids with the pad id (for these tokenizers pad == eos, and EOS is a real target).
  Packed batches (with position_ids) get no attention mask: the padding becomes a segment of its own.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader

from tunesmith.data.encode import EncodedDataset, make_loader

IGNORE_INDEX = -100


def pack_documents(documents: Iterable[Sequence[int]], eos_id: int, block_size: int) -> list[list[int]]:
    """Concatenate `doc + [eos]` for each document (no second EOS when a document already ends with it)
    and cut the stream into blocks of `block_size` tokens; the last block holds the remainder."""
    if block_size < 2:
        raise ValueError("block_size must be at least 2")
    stream: list[int] = []
    for ids in documents:
        stream.extend(ids)
        if not ids or ids[-1] != eos_id:
            stream.append(eos_id)
    return [stream[start:start + block_size] for start in range(0, len(stream), block_size)]


def pack_examples(examples: Sequence[dict], block_size: int) -> list[dict]:
    """Greedy in-order packing of {input_ids, labels} examples (each at most `block_size` long) into blocks
    of at most `block_size` tokens, with position_ids restarting at 0 at each example."""
    return list(iter_packed_examples(examples, block_size))


def iter_packed_examples(examples: Iterable[dict], block_size: int) -> Iterator[dict]:
    """`pack_examples` over a stream of examples: each block is given as soon as it is full."""
    current = {"input_ids": [], "labels": [], "position_ids": []}
    for example in examples:
        ids, labels = list(example["input_ids"]), list(example["labels"])
        if len(ids) > block_size:
            raise ValueError(f"an example of {len(ids)} tokens does not fit in a block of {block_size}")
        if current["input_ids"] and len(current["input_ids"]) + len(ids) > block_size:
            yield current
            current = {"input_ids": [], "labels": [], "position_ids": []}
        current["input_ids"] += ids
        current["labels"] += [IGNORE_INDEX, *labels[1:]]  # never predicted from the previous example's last token
        current["position_ids"] += list(range(len(ids)))
    if current["input_ids"]:
        yield current


class LMCollator:
    """Right-pad input_ids (pad id), labels (-100) and position_ids (a fresh 0..k run) to the batch's longest row."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        packed = "position_ids" in features[0]
        batch = {"input_ids": [], "labels": [], "attention_mask": [], "position_ids": []}
        for f in features:
            n, pad = len(f["input_ids"]), width - len(f["input_ids"])
            batch["input_ids"].append(list(f["input_ids"]) + [self.pad_id] * pad)
            labels = f["labels"] if "labels" in f else f["input_ids"]
            batch["labels"].append(list(labels) + [IGNORE_INDEX] * pad)
            batch["attention_mask"].append([1] * n + [0] * pad)
            if packed:
                batch["position_ids"].append(list(f["position_ids"]) + list(range(pad)))
        out = {key: torch.tensor(batch[key], dtype=torch.long) for key in ("input_ids", "labels")}
        if packed:
            out["position_ids"] = torch.tensor(batch["position_ids"], dtype=torch.long)
        else:
            out["attention_mask"] = torch.tensor(batch["attention_mask"], dtype=torch.long)
        return out


def make_lm_loader(dataset: EncodedDataset, tokenizer, *, batch_size: int, order: str, seed: int = 0) -> DataLoader:
    """tunesmith.data.encode.make_loader (same orders) with the LM collator."""
    return make_loader(dataset, tokenizer, batch_size=batch_size, order=order, seed=seed,
                       collate_fn=LMCollator(tokenizer.pad_token_id))
