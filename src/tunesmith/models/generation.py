"""Text generation with a causal language model (nanoGPT's habit: generation lives with the model).

One prompt at a time (no padding), seeded before each prompt: the same seed, prompt and settings give the
same text. temperature 0 is greedy decoding; otherwise sampling with that temperature and nucleus top_p.
With a chat template, each prompt is formatted as a user turn and generation stops at the template's
end-of-turn token as well as at EOS; without one, the raw text is continued.
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
    from transformers import GenerationConfig

    if temperature < 0 or not 0 < top_p <= 1 or max_new_tokens < 1:
        raise RecipeError("generation needs temperature >= 0, 0 < top_p <= 1 and max_new_tokens >= 1")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    if chat_template is not None:
        stops = stop_token_ids(tokenizer, chat_template)
    else:
        stops = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    settings = {"max_new_tokens": max_new_tokens, "do_sample": temperature > 0, "use_cache": True,
                "eos_token_id": stops or None, "pad_token_id": tokenizer.pad_token_id}
    if temperature > 0:
        settings.update(temperature=temperature, top_p=top_p, top_k=0)
    config = GenerationConfig(**settings)
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
                config.max_new_tokens = min(max_new_tokens, limit - len(ids))
            input_ids = torch.tensor([ids], dtype=torch.long, device=device)
            # seeded per prompt, on a forked RNG: the caller's random state (e.g. training's) is left as it was
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(seed)
                out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                     generation_config=config)
            texts.append(tokenizer.decode(out[0, len(ids):].tolist(), skip_special_tokens=True))
    finally:
        if was_training:
            model.train()
    return texts
