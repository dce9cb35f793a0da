"""HH-RLHF pairs for benchmarks/hh_dpo.py: the seeded train/validation split, the harness's own tokenization,
and the held-out scoring that every contender's trained adapter goes through (the same code for all).

Tokenization here mirrors data/preference_data.py + data/preference_encode.py (branch prefdata, not yet on
main; once merged the harness should take its ids from there: tests/test_hh_dpo_benchmark.py then compares):
a dialogue "\\n\\nHuman: ...\\n\\nAssistant: ..." becomes chat messages (text before the first turn: system;
each turn stripped); the prompt is every turn before the last assistant reply, which must be the same in
`chosen` and `rejected` (rows where it is not, or with an empty or identical reply, are left out, counted).
Rendered with tunesmith.data.chat (the tokenizer's chat template): the prompt text is the template with the
generation prompt, a reply's text is what the whole dialogue adds after it (end-of-turn marker included);
each is tokenized alone without special tokens. Truncation keeps the replies: the prompt loses its start, down
to max_length - the longer reply; when that leaves fewer than 8 prompt tokens, the last 8 are kept and both
replies are cut on the right to fit.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from pathlib import Path

TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ \t]?")
MIN_PROMPT_TOKENS = 8
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
    marks = list(TURN.finditer(text))
    if not marks:
        return []
    messages = [{"role": "system", "content": text[:marks[0].start()].strip()}] \
        if text[:marks[0].start()].strip() else []
    for mark, following in zip(marks, marks[1:] + [None]):
        end = following.start() if following is not None else len(text)
        messages.append({"role": ROLES[mark.group(1)], "content": text[mark.end():end].strip()})
    return messages


def prompt_and_replies(row: dict) -> tuple[list[dict], str, str] | None:
    """(prompt messages, chosen reply, rejected reply), or None for a pair the data layer drops."""
    chosen, rejected = dialogue(row["chosen"]), dialogue(row["rejected"])
    if not chosen or not rejected or chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        return None
    replies = chosen[-1]["content"], rejected[-1]["content"]
    if chosen[:-1] != rejected[:-1] or not chosen[:-1] or not all(replies) or replies[0] == replies[1]:
        return None
    return chosen[:-1], replies[0], replies[1]


def fit_pair(prompt: list[int], replies: list[list[int]], max_length: int) -> tuple[list[int], list[list[int]]]:
    longer = max(len(reply) for reply in replies)
    if len(prompt) + longer <= max_length:
        return prompt, replies
    keep = max_length - longer
    floor = max(0, min(MIN_PROMPT_TOKENS, len(prompt), max_length - 1))
    if keep < floor:
        keep = floor
        replies = [reply[:max_length - keep] for reply in replies]
    return prompt[len(prompt) - keep:], replies


def encode_pairs(tokenizer, rows: list[dict], max_length: int) -> tuple[list[dict], int]:
    """(pairs of prompt_ids / chosen_ids / rejected_ids, number of rows left out)."""
    from tunesmith.data.chat import choose_template, renderer

    render = renderer(tokenizer, choose_template(tokenizer))
    tokens = lambda text: list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])  # noqa: E731
    encoded, left_out = [], 0
    for row in rows:
        parts = prompt_and_replies(row)
        if parts is None:
            left_out += 1
            continue
        prompt, *replies = parts
        prompt_text = render(prompt, add_generation_prompt=True)
        reply_ids = []
        for reply in replies:
            full = render(prompt + [{"role": "assistant", "content": reply}])
            if not full.startswith(prompt_text):
                raise ValueError("the chat template does not render the prompt as a prefix of the dialogue")
            reply_ids.append(tokens(full[len(prompt_text):]))
        prompt_ids, (chosen_ids, rejected_ids) = fit_pair(tokens(prompt_text), reply_ids, max_length)
        encoded.append({"prompt_ids": prompt_ids, "chosen_ids": chosen_ids, "rejected_ids": rejected_ids})
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
