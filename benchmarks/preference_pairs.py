"""HH-RLHF pairs for benchmarks/hh_dpo.py: the seeded train/validation split, the harness's own tokenization,
and the held-out scoring that every contender's trained adapter goes through (the same code for all).

Tokenization here (until data/preference_encode.py is on main, then the harness should use its ids):
a dialogue "\\n\\nHuman: ...\\n\\nAssistant: ..." becomes chat messages (user / assistant); the prompt is every
turn before the last assistant reply, which must be the same in `chosen` and `rejected` (rows where it is not
are left out, counted). Rendered with the tokenizer's chat template: prompt ids = the template with the
generation prompt, reply ids = what the full dialogue adds after them. Truncation keeps the reply: a reply
keeps at most max_length // 2 tokens (its start), then the prompt keeps its last tokens so that prompt plus
the longer reply fit in max_length.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from pathlib import Path

TURN = re.compile(r"\n\n(Human|Assistant): ")
ROLES = {"Human": "user", "Assistant": "assistant"}


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


def dialogue(text: str) -> list[dict]:
    """'\\n\\nHuman: a\\n\\nAssistant: b' -> [{'role': 'user', 'content': 'a'}, {'role': 'assistant', ...}]."""
    parts = TURN.split(text)
    return [{"role": ROLES[role], "content": content.strip()} for role, content in zip(parts[1::2], parts[2::2])]


def prompt_and_replies(row: dict) -> tuple[list[dict], str, str] | None:
    chosen, rejected = dialogue(row["chosen"]), dialogue(row["rejected"])
    if not chosen or not rejected or chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        return None
    if chosen[:-1] != rejected[:-1] or not chosen[:-1]:
        return None
    if chosen[-1]["content"] == rejected[-1]["content"]:
        return None
    return chosen[:-1], chosen[-1]["content"], rejected[-1]["content"]


def reply_ids(tokenizer, prompt: list[dict], prompt_ids: list[int], reply: str) -> list[int]:
    full = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": reply}], tokenize=True,
                                         return_dict=False)
    full = list(full["input_ids"]) if isinstance(full, dict) else list(full)
    if full[:len(prompt_ids)] != prompt_ids:
        raise ValueError("the chat template does not render the prompt as a prefix of the dialogue")
    return full[len(prompt_ids):]


def encode_pairs(tokenizer, rows: list[dict], max_length: int) -> tuple[list[dict], int]:
    """(pairs of prompt_ids / chosen_ids / rejected_ids, number of rows left out)."""
    encoded, left_out = [], 0
    for row in rows:
        parts = prompt_and_replies(row)
        if parts is None:
            left_out += 1
            continue
        prompt, chosen, rejected = parts
        prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                                   return_dict=False)
        prompt_ids = list(prompt_ids["input_ids"]) if isinstance(prompt_ids, dict) else list(prompt_ids)
        chosen_ids = reply_ids(tokenizer, prompt, prompt_ids, chosen)[:max_length // 2]
        rejected_ids = reply_ids(tokenizer, prompt, prompt_ids, rejected)[:max_length // 2]
        room = max_length - max(len(chosen_ids), len(rejected_ids))
        encoded.append({"prompt_ids": prompt_ids[-room:], "chosen_ids": chosen_ids, "rejected_ids": rejected_ids})
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
