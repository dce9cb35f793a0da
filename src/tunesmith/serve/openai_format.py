"""OpenAI's response shapes: completions, chat completions, their streamed chunks (server-sent events, ended
by `data: [DONE]`), usage, and the model list."""

from __future__ import annotations

import json
import time
import uuid


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(result: dict) -> dict:
    return {"prompt_tokens": result["prompt_tokens"], "completion_tokens": result["completion_tokens"],
            "total_tokens": result["prompt_tokens"] + result["completion_tokens"]}


def completion(model: str, result: dict, chat: bool) -> dict:
    if chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": result["text"]},
                  "finish_reason": result["finish_reason"], "logprobs": None}
    else:
        choice = {"index": 0, "text": result["text"], "finish_reason": result["finish_reason"], "logprobs": None}
    return {"id": new_id("chatcmpl" if chat else "cmpl"), "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": model, "choices": [choice], "usage": usage(result)}


class ChunkWriter:
    """The server-sent events of one streamed answer, all with the same id."""

    def __init__(self, model: str, chat: bool):
        self.model, self.chat = model, chat
        self.id, self.created = new_id("chatcmpl" if chat else "cmpl"), int(time.time())

    def event(self, choices: list, **extra) -> str:
        body = {"id": self.id, "object": "chat.completion.chunk" if self.chat else "text_completion",
                "created": self.created, "model": self.model, "choices": choices, **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    def choice(self, text: str | None, finish_reason: str | None, role: bool = False) -> dict:
        if not self.chat:
            return {"index": 0, "text": text or "", "finish_reason": finish_reason, "logprobs": None}
        delta = {"role": "assistant"} if role else {}
        if text is not None:
            delta["content"] = text
        return {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}

    def start(self) -> str | None:
        return self.event([self.choice("", None, role=True)]) if self.chat else None

    def piece(self, text: str) -> str:
        return self.event([self.choice(text, None)])

    def finish(self, result: dict, include_usage: bool) -> str:
        events = self.event([self.choice(None if self.chat else "", result["finish_reason"])])
        if include_usage:  # OpenAI's stream_options.include_usage: one more chunk, no choices, the usage
            events += self.event([], usage=usage(result))
        return events + "data: [DONE]\n\n"


def error_event(body: dict) -> str:
    return f"data: {json.dumps(body)}\n\ndata: [DONE]\n\n"


def model_list(name: str, created: int) -> dict:
    return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "tunesmith"}]}
