"""/v1/completions and /v1/chat/completions: a causal_lm / sft / dpo run generating through the same decoding
as `tunesmith generate` (models/generation.py: seeded per request, greedy at temperature 0, nucleus sampling
otherwise, stopping at EOS and the chat template's end of turn).

Chat requests render `messages` with the run's chat template (the one training saved in the tokenizer, with
the generation prompt); completions continue the raw prompt. `stop` strings cut the text at the first one and
end generation; the text is decoded after each new token and streamed as it grows, holding back any tail
that could still become a stop string (or half a character), so the streamed pieces join to exactly the
text a non-streaming request gets. One request at a time (the generation worker has max batch 1).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

from tunesmith.data.chat import prompt_ids
from tunesmith.models.checks import position_limit
from tunesmith.models.generation import decoding_config, end_token_ids, generate_ids, new_token_budget
from tunesmith.serve.schemas import Limits, RequestError


@dataclass
class GenerationJob:
    ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    stop: list[str]
    chat: bool
    on_delta: Callable[[str], None] | None = None  # streaming: each new piece of text, from the worker thread
    cancelled: threading.Event = field(default_factory=threading.Event)  # the client went away


class GrowingText:
    """The answer's text as tokens arrive: cut at the first stop string; `delta()` is the new safe part."""

    def __init__(self, tokenizer, stops: list[str]):
        self.tokenizer, self.stops = tokenizer, stops
        self.ids: list[int] = []
        self.sent = ""
        self.hit_stop = False

    def text(self) -> str:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        cuts = [text.find(s) for s in self.stops if s in text]
        if cuts:
            self.hit_stop = True
            text = text[:min(cuts)]
        return text

    def safe(self, text: str) -> str:
        """`text` without a tail that could still change: half a character, or the start of a stop string."""
        keep = len(text.rstrip("\ufffd"))
        for stop in self.stops:
            for k in range(min(len(stop) - 1, keep), 0, -1):
                if text[:keep].endswith(stop[:k]):
                    keep -= k
                    break
        return text[:keep]

    def delta(self, final: bool = False) -> str:
        text = self.text()
        shown = text if final or self.hit_stop else self.safe(text)
        piece = shown[len(self.sent):] if shown.startswith(self.sent) else ""
        self.sent += piece
        return piece


def stopping_criterion(prompt_length: int, growing: GrowingText, job: GenerationJob):
    """A transformers StoppingCriteria that feeds each new token to `growing`, streams the new text, and stops
    at a stop string or when the client has gone."""
    import torch
    from transformers import StoppingCriteria

    class StopStringsOrGone(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            growing.ids = input_ids[0, prompt_length:].tolist()
            piece = growing.delta()
            if piece and job.on_delta is not None:
                job.on_delta(piece)
            done = growing.hit_stop or job.cancelled.is_set()
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    return StopStringsOrGone()


class GenerateService:
    kind = "generate"

    def __init__(self, lm, name: str):
        self.lm, self.name = lm, name
        self.model, self.tokenizer = lm.model, lm.tokenizer
        self.task = lm.recipe.task
        template = getattr(self.tokenizer, "chat_template", None)
        self.template = template.get("default") if isinstance(template, dict) else template
        self.positions = position_limit(self.model.config)

    def encode(self, prompt: str | list[dict], field: str, limits: Limits) -> list[int]:
        """Token ids of a raw prompt (completions) or of messages rendered with the chat template, refused past
        --max-prompt-tokens and the model's positions - 1 (never cut silently)."""
        if isinstance(prompt, str):
            ids = self.tokenizer(prompt, verbose=False)["input_ids"]
        elif not self.template:
            raise RequestError(400, f"messages: this {self.task} run's tokenizer has no chat template; "
                                    f"use /v1/completions", param="messages")
        else:
            ids = prompt_ids(self.tokenizer, self.template, prompt)
        if not ids:
            raise RequestError(400, f"{field}: empty prompt", param=field)
        cap = min(limits.max_prompt_tokens, self.positions - 1) if self.positions else limits.max_prompt_tokens
        if len(ids) > cap:
            raise RequestError(400, f"{field}: the prompt is {len(ids)} tokens; at most {cap} "
                                    f"(--max-prompt-tokens, and the model's positions - 1)", param=field)
        return ids

    def run(self, job: GenerationJob) -> dict | None:
        """Generate one answer: {text, finish_reason, prompt_tokens, completion_tokens}; None when the client
        left before its turn."""
        if job.cancelled.is_set():
            return None
        stops = end_token_ids(self.tokenizer, self.template if job.chat else None)
        config = decoding_config(self.tokenizer, stops, temperature=job.temperature, top_p=job.top_p,
                                 max_new_tokens=new_token_budget(self.model, job.ids, job.max_tokens))
        growing = GrowingText(self.tokenizer, job.stop)
        from transformers import StoppingCriteriaList

        criteria = StoppingCriteriaList([stopping_criterion(len(job.ids), growing, job)])
        new = generate_ids(self.model, job.ids, config, job.seed, stopping_criteria=criteria)
        growing.ids = new
        rest = growing.delta(final=True)
        if rest and job.on_delta is not None:
            job.on_delta(rest)
        ended = growing.hit_stop or bool(new and new[-1] in stops)
        return {"text": growing.sent, "finish_reason": "stop" if ended else "length",
                "prompt_tokens": len(job.ids), "completion_tokens": len(new)}

    def run_batch(self, jobs: list[GenerationJob]) -> list:
        return [self.run(job) for job in jobs]
