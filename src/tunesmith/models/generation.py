"""Text generation with a causal language model (nanoGPT's habit: generation lives with the model).

One prompt at a time (no padding), seeded before each prompt: the same seed, prompt and settings give the
same text. temperature 0 is greedy decoding; otherwise sampling with that temperature and nucleus top_p.
With a chat template, each prompt is formatted as a user turn and generation stops at the template's
end-of-turn token as well as at EOS; without one, the raw text is continued. (`generate_ids_batch`, for
tunesmith serve only: several greedy prompts left-padded into one call.)
"""

from __future__ import annotations

from typing import Sequence

import torch

from tunesmith.data.chat import prompt_ids, stop_token_ids
from tunesmith.errors import RecipeError
from tunesmith.models.checks import position_limit


@torch.no_grad()
def generate_texts(model, tokenizer, prompts: Sequence[str], *, chat_template: str | None = None,
                   max_new_tokens: int = 64, temperature: float = 0.0, top_p: float = 1.0, seed: int = 0) -> list[str]:
    """The generated continuation (new tokens only, special tokens dropped) of each prompt."""
    check_settings(max_new_tokens, temperature, top_p)
    was_training = model.training
    model.eval()
    stops = end_token_ids(tokenizer, chat_template)
    limit = position_limit(model.config)
    texts = []
    try:
        for prompt in prompts:
            if chat_template is not None:
                ids = prompt_ids(tokenizer, chat_template, prompt)
            else:
                ids = tokenizer(prompt, verbose=False)["input_ids"]
            if not ids:
                raise RecipeError("an empty prompt: give some text to continue")
            if limit is not None:  # never past the model's positions (GPT-2: 1024, the tiny test ones: 128)
                ids = ids[-(limit - 1):]
            config = decoding_config(tokenizer, stops, max_new_tokens=new_token_budget(model, ids, max_new_tokens),
                                     temperature=temperature, top_p=top_p)
            new = generate_ids(model, ids, config, seed)
            texts.append(tokenizer.decode(new, skip_special_tokens=True))
    finally:
        if was_training:
            model.train()
    return texts


# ---- token ids -> new token ids: one prompt (generate_texts above; tunesmith serve streams through it), or a ----
# ---- left-padded greedy batch (tunesmith serve's concurrent non-streaming greedy requests)                   ----
def check_settings(max_new_tokens: int, temperature: float, top_p: float) -> None:
    if temperature < 0 or not 0 < top_p <= 1 or max_new_tokens < 1:
        raise RecipeError("generation needs temperature >= 0, 0 < top_p <= 1 and max_new_tokens >= 1")


def end_token_ids(tokenizer, chat_template: str | None) -> list[int]:
    """Tokens that end an answer: EOS, plus the template's end-of-turn token when a chat template is used."""
    if chat_template is not None:
        return stop_token_ids(tokenizer, chat_template)
    return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []


def new_token_budget(model, ids: Sequence[int], max_new_tokens: int) -> int:
    """max_new_tokens, cut so that the prompt and the answer fit the model's positions."""
    limit = position_limit(model.config)
    return max_new_tokens if limit is None else max(1, min(max_new_tokens, limit - len(ids)))


def decoding_config(tokenizer, stops: Sequence[int], *, max_new_tokens: int, temperature: float, top_p: float):
    """Greedy at temperature 0, else sampling with that temperature and nucleus top_p (top_k off)."""
    from transformers import GenerationConfig

    settings = {"max_new_tokens": max_new_tokens, "do_sample": temperature > 0, "use_cache": True,
                "eos_token_id": list(stops) or None, "pad_token_id": tokenizer.pad_token_id}
    if temperature > 0:
        settings.update(temperature=temperature, top_p=top_p, top_k=0)
    return GenerationConfig(**settings)


@torch.no_grad()
def generate_ids(model, ids: Sequence[int], config, seed: int, *, streamer=None,
                 stopping_criteria=None) -> list[int]:
    """The new token ids after `ids`, seeded on a forked RNG (the caller's random state is left as it was).
    `streamer` (transformers' put/end interface) sees the prompt first, then each new token;
    `stopping_criteria` (a transformers StoppingCriteriaList) can end generation early."""
    device = next(model.parameters()).device
    input_ids = torch.tensor([list(ids)], dtype=torch.long, device=device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), generation_config=config,
                             streamer=streamer, stopping_criteria=stopping_criteria)
    return out[0, len(ids):].tolist()


@torch.no_grad()
def generate_ids_batch(model, id_lists: Sequence[Sequence[int]], config, pad_id: int, *,
                       stopping_criteria=None) -> list[list[int]]:
    """Greedy decoding of several prompts in one call (left-padded, positions counted from each row's first real
    token): each row's new ids, up to and including its first end token (config.eos_token_id). Rows that
    finished early are filled with pad_id after their end by transformers; the caller trims rows that stopped
    for its own reasons (stop strings, a smaller max_tokens)."""
    if config.do_sample:
        raise ValueError("batched generation is greedy only (temperature 0)")
    device = next(model.parameters()).device
    width = max(len(ids) for ids in id_lists)
    rows = [[pad_id] * (width - len(ids)) + list(ids) for ids in id_lists]
    mask = [[0] * (width - len(ids)) + [1] * len(ids) for ids in id_lists]
    input_ids = torch.tensor(rows, dtype=torch.long, device=device)
    out = model.generate(input_ids=input_ids, attention_mask=torch.tensor(mask, dtype=torch.long, device=device),
                         generation_config=config, stopping_criteria=stopping_criteria)
    eos = config.eos_token_id
    ends = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
    answers = []
    for row in out[:, width:].tolist():
        end = next((i for i, token in enumerate(row) if token in ends), None)
        answers.append(row if end is None else row[:end + 1])
    return answers
