"""What a request may hold: pydantic models for /v1/predict, /v1/completions and /v1/chat/completions, the
server's caps (`Limits`), and the one error every refused request becomes (`RequestError`, OpenAI's error shape:
{"error": {"message", "type", "param", "code"}}).

Types are strict (a number is not a text, "1" is not a number, NaN is refused); fields a request may not hold
are refused by name ("logprobs: not supported by this server") rather than accepted and ignored. OpenAI clients
send `n`, `user` and `stream_options`: `user` is accepted (it changes nothing), `n` must be 1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tunesmith.errors import TunesmithError


class RequestError(TunesmithError):
    """A request the server refuses: an HTTP status, a one-line message naming the field, OpenAI's error type."""

    def __init__(self, status: int, message: str, *, param: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.param, self.kind = status, param, kind

    def body(self) -> dict:
        return {"error": {"message": str(self), "type": self.kind, "param": self.param, "code": self.status}}


@dataclass(frozen=True)
class Limits:
    """Caps on what one request may ask (CLI flags of `tunesmith serve`)."""

    max_body_bytes: int = 1 << 20  # 1 MiB
    max_texts: int = 64  # texts per /v1/predict request
    max_text_chars: int = 10_000  # characters per text
    max_tokens: int = 512  # max_tokens a completion may ask for (and its default)
    max_prompt_tokens: int = 2048  # prompt tokens (also at most the model's positions - 1)
    max_stop: int = 4  # stop strings per request, as OpenAI


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


class PredictRequest(Strict):
    texts: list[str]
    text_pairs: list[str] | None = None  # runs trained on text pairs (data.columns text_pair): one per text
    model: str | None = None


class StreamOptions(Strict):
    include_usage: bool = False


class GenerationRequest(Strict):
    """What completions and chat completions share (OpenAI's names and defaults)."""

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: Union[str, list[str], None] = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Literal[1] = 1
    user: str | None = None

    def stop_strings(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return [s for s in stops if s]


class CompletionRequest(GenerationRequest):
    prompt: Union[str, list[str]]

    def prompt_text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise RequestError(400, "prompt: one prompt per request (a string, or a list of one string)",
                               param="prompt")
        return self.prompt[0]


class TextPart(Strict):
    type: Literal["text"]
    text: str


class Message(Strict):
    role: Literal["system", "user", "assistant"]
    content: Union[str, list[TextPart]]
    name: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatRequest(GenerationRequest):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # the newer name of max_tokens

    def conversation(self) -> list[dict]:
        return [{"role": m.role, "content": m.text()} for m in self.messages]


def parse_body(raw: bytes, model: type[BaseModel]) -> BaseModel:
    """The request body as `model`, or a 400 whose message starts with the field at fault."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise RequestError(400, f"body: not valid JSON ({str(exc)[:120]})", param="body") from None
    if not isinstance(data, dict):
        raise RequestError(400, "body: must be a JSON object", param="body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


UNION_TAGS = {"str", "int", "float", "bool", "none"}


def validation_error(exc: ValidationError) -> RequestError:
    """pydantic's first error as one line naming the field: 'texts[0]: Input should be a valid string'."""
    error = exc.errors(include_url=False)[0]
    field = ""
    for part in error["loc"]:
        if isinstance(part, int):
            field += f"[{part}]"
        elif part.isidentifier() and part not in UNION_TAGS:  # not a union member's tag ('str', 'list[str]')
            field += f".{part}" if field else part
    field = field or "body"
    if error["type"] == "extra_forbidden":
        return RequestError(400, f"{field}: not supported by this server", param=field)
    message = error["msg"]
    if error["type"] == "literal_error" and field == "n":
        message = "only n=1 is supported (one choice per request)"
    return RequestError(400, f"{field}: {message}", param=field)


def check_texts(request: PredictRequest, limits: Limits) -> list[str]:
    texts = request.texts
    if not texts:
        raise RequestError(400, "texts: give at least one text", param="texts")
    if len(texts) > limits.max_texts:
        raise RequestError(400, f"texts: {len(texts)} texts; at most {limits.max_texts} per request "
                                f"(--max-texts)", param="texts")
    check_each_text(texts, "texts", limits)
    return texts


def check_each_text(texts: list[str], field: str, limits: Limits) -> None:
    """Every text of `field` non-empty and within --max-text-chars (the message names field[index])."""
    for index, text in enumerate(texts):
        if not text.strip():
            raise RequestError(400, f"{field}[{index}]: empty text", param=field)
        if len(text) > limits.max_text_chars:
            raise RequestError(400, f"{field}[{index}]: {len(text)} characters; at most {limits.max_text_chars} "
                                    f"(--max-text-chars)", param=field)


def check_pairs(request: PredictRequest, limits: Limits, paired: bool) -> list[str] | None:
    """The second text of each pair: required (one per text) by a run trained on pairs, refused by one that was not."""
    pairs = request.text_pairs
    if not paired:
        if pairs is not None:
            raise RequestError(400, "text_pairs: this run was trained on single texts; send texts only",
                               param="text_pairs")
        return None
    if pairs is None:
        raise RequestError(400, "text_pairs: this run was trained on text pairs; give one second text per text",
                           param="text_pairs")
    if len(pairs) != len(request.texts):
        raise RequestError(400, f"text_pairs: {len(pairs)} second texts for {len(request.texts)} texts; give one "
                                f"per text", param="text_pairs")
    check_each_text(pairs, "text_pairs", limits)
    return pairs


def check_generation(request: GenerationRequest, limits: Limits) -> int:
    """max_tokens for this request (the cap when not given), after checking the caps on it and on stop."""
    asked = getattr(request, "max_completion_tokens", None) or request.max_tokens
    field = "max_completion_tokens" if getattr(request, "max_completion_tokens", None) else "max_tokens"
    if asked is not None and asked > limits.max_tokens:
        raise RequestError(400, f"{field}: {asked} is over this server's cap of {limits.max_tokens} "
                                f"(--max-tokens)", param=field)
    stops = request.stop_strings()
    if len(stops) > limits.max_stop:
        raise RequestError(400, f"stop: {len(stops)} stop strings; at most {limits.max_stop}", param="stop")
    return asked or limits.max_tokens
