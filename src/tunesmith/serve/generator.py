"""/v1/completions and /v1/chat/completions: a causal_lm / sft / dpo run generating through the same decoding
as `tunesmith generate` (models/generation.py: seeded per request, greedy at temperature 0, nucleus sampling
otherwise, stopping at EOS and the chat template's end of turn).

Chat requests render `messages` with the run's chat template (the one training saved in the tokenizer, with
the generation prompt); completions continue the raw prompt. `stop` strings cut the text at the first one and
end generation; the text is decoded after each new token and streamed as it grows, holding back any tail
that could still become a stop string (or half a character), so the streamed pieces join to exactly the
text a non-streaming request gets. Concurrent greedy non-streaming requests share left-padded generate calls
(the dynamic batcher collects them); sampling and streaming requests run one at a time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

from tunesmith.data.chat import prompt_ids
from tunesmith.errors import one_line
from tunesmith.models.checks import position_limit
from tunesmith.models.generation import (
    decoding_config, end_token_ids, generate_ids, generate_ids_batch, new_token_budget,
)
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
        self.done = False  # a batched row that has ended (its ids frozen)

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
        self.on_pass: Callable[[int, int], None] = lambda requests, prompts: None  # stats: each generate call

    def encode(self, prompt: str | list[dict], field: str, limits: Limits) -> list[int]:
        """Token ids of a raw prompt (completions) or of messages rendered with the chat template, refused past
        --max-prompt-tokens and the model's positions - 1 (never cut silently)."""
        if isinstance(prompt, str):
            ids = self.tokenizer(prompt, verbose=False)["input_ids"]
        elif not self.template:
            raise RequestError(400, f"messages: this {self.task} run's tokenizer has no chat template; "
                                    f"use /v1/completions", param="messages")
        else:
            try:
                ids = prompt_ids(self.tokenizer, self.template, prompt)
            except Exception as exc:  # noqa: BLE001 - a template's own refusal (jinja raise_exception, ...)
                raise RequestError(400, f"messages: the run's chat template cannot render them ({one_line(exc)})",
                                   param="messages") from None
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
        stops = self.stops(job.chat)
        config = decoding_config(self.tokenizer, stops, temperature=job.temperature, top_p=job.top_p,
                                 max_new_tokens=new_token_budget(self.model, job.ids, job.max_tokens))
        growing = GrowingText(self.tokenizer, job.stop)
        from transformers import StoppingCriteriaList

        criteria = StoppingCriteriaList([stopping_criterion(len(job.ids), growing, job)])
        self.on_pass(1, 1)
        return finish(job, growing, generate_ids(self.model, job.ids, config, job.seed, stopping_criteria=criteria),
                      stops)

    def stops(self, chat: bool) -> list[int]:
        return end_token_ids(self.tokenizer, self.template if chat else None)

    def run_batch(self, jobs: list[GenerationJob]) -> list:
        """Each job's answer. Greedy non-streaming jobs (of the same kind: chat or not) share left-padded
        generate calls, as long as the longest prompt plus the longest answer fits the model's positions; the
        others (sampling, streaming) run one by one. Greedy answers are the ones each job gets alone."""
        results: list = [None] * len(jobs)
        groups: dict[bool, list[int]] = {}
        for i, job in enumerate(jobs):
            if job.temperature == 0 and job.on_delta is None and not job.cancelled.is_set():
                groups.setdefault(job.chat, []).append(i)
            else:
                results[i] = self.run(job)
        for indices in groups.values():
            for chunk in self.fitting(indices, jobs):
                answers = [self.run(jobs[chunk[0]])] if len(chunk) == 1 else self.run_greedy([jobs[i] for i in chunk])
                for i, answer in zip(chunk, answers):
                    results[i] = answer
        return results

    def fitting(self, indices: list[int], jobs: list[GenerationJob]) -> list[list[int]]:
        chunks: list[list[int]] = []
        longest = most = 0
        for i in indices:
            job = jobs[i]
            budget = new_token_budget(self.model, job.ids, job.max_tokens)
            if chunks and (self.positions is None or max(longest, len(job.ids)) + max(most, budget) <= self.positions):
                chunks[-1].append(i)
                longest, most = max(longest, len(job.ids)), max(most, budget)
            else:
                chunks.append([i])
                longest, most = len(job.ids), budget
        return chunks

    def run_greedy(self, jobs: list[GenerationJob]) -> list[dict]:
        stops = self.stops(jobs[0].chat)
        budgets = [new_token_budget(self.model, job.ids, job.max_tokens) for job in jobs]
        config = decoding_config(self.tokenizer, stops, max_new_tokens=max(budgets), temperature=0, top_p=1)
        growing = [GrowingText(self.tokenizer, job.stop) for job in jobs]
        width = max(len(job.ids) for job in jobs)
        from transformers import StoppingCriteriaList

        criteria = StoppingCriteriaList([rows_criterion(width, growing, budgets, stops)])
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else (stops or [0])[0]
        self.on_pass(len(jobs), len(jobs))
        rows = generate_ids_batch(self.model, [job.ids for job in jobs], config, pad, stopping_criteria=criteria)
        return [finish(job, text, text.ids if text.done else row[:budget], stops)
                for job, text, row, budget in zip(jobs, growing, rows, budgets)]


def finish(job: GenerationJob, growing: GrowingText, new: list[int], stops: list[int]) -> dict:
    """The answer of `new` tokens: the text cut at a stop string (its last piece streamed), why it ended."""
    growing.ids = new
    rest = growing.delta(final=True)
    if rest and job.on_delta is not None:
        job.on_delta(rest)
    ended = growing.hit_stop or bool(new and new[-1] in stops)
    return {"text": growing.sent, "finish_reason": "stop" if ended else "length",
            "prompt_tokens": len(job.ids), "completion_tokens": len(new)}


def rows_criterion(width: int, growing: list[GrowingText], budgets: list[int], stops: list[int]):
    """The StoppingCriteria of a greedy batch: a row is done (and its tokens frozen in its GrowingText) at an end
    token, a stop string, or its own max_tokens."""
    import torch
    from transformers import StoppingCriteria

    class RowsDone(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            done = []
            for row, text in enumerate(growing):
                if not text.done:
                    text.ids = input_ids[row, width:].tolist()
                    text.delta()
                    text.done = text.hit_stop or len(text.ids) >= budgets[row] or (text.ids[-1] in stops)
                done.append(text.done)
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return RowsDone()
