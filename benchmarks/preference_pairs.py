"""HH-RLHF pairs for benchmarks/hh_dpo.py: the seeded train/validation split, the pairs as token ids,
and the held-out scoring that every contender's trained adapter goes through (the same code for all).

Parsing and tokenization are tunesmith's own (data/preference_data.parse_pair, data/preference_encode.
encode_pair), so TRL gets exactly the ids tunesmith trains on: HH dialogues as chat messages, the prompt is
every turn before the last assistant reply (pairs whose prompts differ, with an empty or identical reply are
left out, counted); rendered with the tokenizer's chat template; truncation keeps the replies (the prompt
loses its start; at least 8 prompt tokens stay, the replies are cut when even that does not fit).
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path


def split_pairs(source: Path, workdir: Path, validation: int, train_limit: int | None, seed: int = 0):
    """Write train.jsonl / validation.jsonl (rows unchanged, chosen/rejected dialogues) from a seeded shuffle:
    the first `validation` rows are held out; the train file holds the rest (at most `train_limit`)."""
    with gzip.open(source, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    random.Random(seed).shuffle(rows)
    held, train = rows[:validation], rows[validation:]
    if train_limit is not None:
        train = train[:train_limit]
    workdir.mkdir(parents=True, exist_ok=True)
    paths = workdir / "train.jsonl", workdir / "validation.jsonl"
    for path, part in zip(paths, (train, held)):
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in part), encoding="utf-8")
    return paths


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def prompt_and_replies(row: dict, where: str = "row") -> tuple[list[dict], str, str] | None:
    """(prompt messages, chosen reply, rejected reply), or None for a pair tunesmith's data layer drops."""
    from tunesmith.data.preference_data import parse_pair

    finding, prompt, chosen, rejected = parse_pair(row, where, "jsonl")
    return None if finding else (prompt, chosen, rejected)


def encode_pairs(tokenizer, rows: list[dict], max_length: int) -> tuple[list[dict], int]:
    """(pairs of prompt_ids / chosen_ids / rejected_ids as tunesmith encodes them, number of rows left out)."""
    from tunesmith.data.chat import IGNORE_INDEX, choose_template, renderer
    from tunesmith.data.preference_encode import encode_pair

    render = renderer(tokenizer, choose_template(tokenizer))
    encoded, left_out = [], 0
    for number, row in enumerate(rows, start=1):
        parts = prompt_and_replies(row, f"row {number}")
        if parts is None:
            left_out += 1
            continue
        feature, _ = encode_pair(tokenizer, render, *parts, max_length)
        prompt_len = feature["chosen_labels"].count(IGNORE_INDEX)
        pair = {"prompt_ids": feature["chosen_input_ids"][:prompt_len]}
        for side in ("chosen", "rejected"):
            if feature[f"{side}_input_ids"][:prompt_len] != pair["prompt_ids"]:
                raise ValueError(f"row {number}: the two sides do not share the prompt tokens")
            pair[f"{side}_ids"] = feature[f"{side}_input_ids"][prompt_len:]
        encoded.append(pair)
    return encoded, left_out


def real_tokens(pair: dict) -> int:
    """Non-pad tokens of both sides of a pair (the prompt counts twice: it is run twice)."""
    return 2 * len(pair["prompt_ids"]) + len(pair["chosen_ids"]) + len(pair["rejected_ids"])


def collate(pairs: list[dict], pad_id: int) -> dict:
    """The PreferenceCollator layout: 2B rows, chosen first, right-padded; labels -100 on prompt and padding."""
    import torch

    rows = [(p["prompt_ids"], p["chosen_ids"]) for p in pairs] + [(p["prompt_ids"], p["rejected_ids"]) for p in pairs]
    width = max(len(prompt) + len(reply) for prompt, reply in rows)
    input_ids = torch.full((len(rows), width), pad_id)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100)
    for i, (prompt, reply) in enumerate(rows):
        ids = prompt + reply
        input_ids[i, :len(ids)] = torch.tensor(ids)
        attention[i, :len(ids)] = 1
        labels[i, len(prompt):len(ids)] = torch.tensor(reply)
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def score_pairs(model, pairs: list[dict], pad_id: int, beta: float, batch_size: int = 8) -> dict:
    """Held-out DPO metrics (tunesmith.evaluation.preference) of a PEFT model against its own base (adapter
    off) as the reference, in fp32, pairs batched by length."""
    import torch

    from tunesmith.config.preference import PreferenceSpec
    from tunesmith.evaluation.preference import (SideLogps, pair_records, preference_losses, sequence_logps,
                                                 summarize_pairs)

    spec = PreferenceSpec(loss="sigmoid", beta=beta)
    order = sorted(range(len(pairs)), key=lambda i: real_tokens(pairs[i]))
    records = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            batch = collate([pairs[i] for i in order[start:start + batch_size]], pad_id)
            policy = SideLogps.from_sequences(*sequence_logps(model, batch))
            with model.disable_adapter():
                reference = SideLogps.from_sequences(*sequence_logps(model, batch))
            records.append(pair_records(preference_losses(spec, policy, reference), policy))
    return summarize_pairs(torch.cat(records))
