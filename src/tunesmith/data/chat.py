"""Conversations for sft: Alpaca rows -> messages, messages -> token ids with labels on assistant turns only.

Rendering uses a chat template: the tokenizer's own (SmolLM2 has a ChatML one) or, when the model has none
or the recipe asks for it (`lm.chat_template: default`), tunesmith's Alpaca-style DEFAULT_CHAT_TEMPLATE:

    {system}\\n\\n                          (only when there is a system message)
    ### Instruction:\\n{user}\\n\\n
    ### Response:\\n{assistant}<eos>         (turns after an assistant turn start after a blank line)

How labels are built (`encode_conversation`): for each assistant message i, the template renders the
conversation up to message i with the generation prompt (the prompt) and up to message i included (the
prompt plus the answer). The text between two is the answer segment with the template's end-of-turn
marker (`<|im_end|>\\n` for ChatML, `<eos>` for the default); everything else is prompt. Segments are
tokenized one by one (add_special_tokens=False: the template writes its special tokens itself), exactly as
a prompt is tokenized at generation time, and labels are -100 on prompt segments and the token ids on
answer segments. Every assistant turn of a multi-turn chat is trained.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from tunesmith.errors import DataError, shown

IGNORE_INDEX = -100

DEFAULT_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if not loop.first and messages[loop.index0 - 1]['role'] == 'assistant' -%}{{ '\\n\\n' }}{%- endif -%}"
    "{%- if message['role'] == 'system' -%}{{ message['content'] + '\\n\\n' }}"
    "{%- elif message['role'] == 'user' -%}{{ '### Instruction:\\n' + message['content'] + '\\n\\n' }}"
    "{%- else -%}{{ '### Response:\\n' + message['content'] + eos_token }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{%- if messages and messages[-1]['role'] == 'assistant' -%}{{ '\\n\\n' }}{%- endif -%}"
    "{{ '### Response:\\n' }}"
    "{%- endif -%}"
)

ROLES = ("system", "user", "assistant")


def alpaca_messages(instruction: str, input: str | None = None, output: str | None = None,
                    system: str | None = None) -> list[dict]:
    """An Alpaca record as messages: user = instruction, then a blank line and input when input is not empty."""
    user = str(instruction).strip()
    if input is not None and str(input).strip():
        user += "\n\n" + str(input).strip()
    messages = [{"role": "system", "content": str(system)}] if system is not None and str(system).strip() else []
    messages.append({"role": "user", "content": user})
    if output is not None:
        messages.append({"role": "assistant", "content": str(output)})
    return messages


def message_list(value: list, label: str) -> list[dict]:
    """Each item of `value` as a {role, content} message with a known role and a string content; errors start
    with `label` ("<where>: message", "<where>: chosen message") and the message's number."""
    messages = []
    for n, message in enumerate(value, 1):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise DataError(f"{label} {n} must be an object with 'role' and 'content'")
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise DataError(f"{label} {n} has role {shown(role)}; roles are {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise DataError(f"{label} {n} content must be a string")
        messages.append({"role": role, "content": content})
    return messages


def check_messages(value: Any, where: str) -> list[dict]:
    """`value` as a list of {role, content} messages with known roles and at least one assistant turn."""
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: messages must be a non-empty list of {{role, content}} objects")
    messages = message_list(value, f"{where}: message")
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError(f"{where}: the conversation has no assistant message to learn from")
    if messages[0]["role"] == "assistant":
        raise DataError(f"{where}: the conversation starts with an assistant message; it needs a prompt first")
    return messages


def choose_template(tokenizer, choice: str = "auto") -> str:
    """The chat template sft uses: the tokenizer's own (auto/model) or DEFAULT_CHAT_TEMPLATE (auto/default)."""
    own = getattr(tokenizer, "chat_template", None)
    if isinstance(own, dict):  # several named templates: the default one
        own = own.get("default")
    if choice == "default" or (choice == "auto" and not own):
        return DEFAULT_CHAT_TEMPLATE
    if not own:
        raise DataError("lm.chat_template is 'model' but the model's tokenizer has no chat template; "
                        "use lm.chat_template: auto or default")
    return own


def renderer(tokenizer, template: str) -> Callable[..., str]:
    def render(messages: Sequence[dict], add_generation_prompt: bool = False) -> str:
        return tokenizer.apply_chat_template(list(messages), chat_template=template, tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
    return render


def conversation_segments(render: Callable[..., str], messages: Sequence[dict]) -> list[tuple[str, bool]]:
    """The rendered conversation as (text, is_answer) segments, in order; see the module docstring."""
    segments: list[tuple[str, bool]] = []
    done = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render(messages[:i], add_generation_prompt=True)
        full = render(messages[:i + 1])
        if not prompt.startswith(done) or not full.startswith(prompt):
            raise DataError("the chat template does not render conversations incrementally (a longer "
                            "conversation does not start with the shorter one's text), so answer tokens "
                            "cannot be told from prompt tokens; set lm.chat_template: default")
        if prompt[len(done):]:
            segments.append((prompt[len(done):], False))
        segments.append((full[len(prompt):], True))
        done = full
    rest = render(messages)
    if rest.startswith(done) and rest[len(done):]:
        segments.append((rest[len(done):], False))
    return segments


def encode_conversation(tokenizer, render: Callable[..., str], messages: Sequence[dict],
                        max_length: int | None = None) -> dict:
    """{input_ids, labels} for one conversation, labels -100 outside assistant answers, truncated on the right."""
    ids: list[int] = []
    labels: list[int] = []
    for text, is_answer in conversation_segments(render, messages):
        piece = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        ids += piece
        labels += piece if is_answer else [IGNORE_INDEX] * len(piece)
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    return {"input_ids": ids, "labels": labels}


def prompt_ids(tokenizer, template: str, prompt: str | Sequence[dict]) -> list[int]:
    """Token ids of a chat prompt ready for generation: a user message (or messages) + the generation prompt."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    text = renderer(tokenizer, template)(messages, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]


def stop_token_ids(tokenizer, template: str) -> list[int]:
    """Tokens that end a generated answer: eos, plus the template's end-of-turn token (`<|im_end|>` for
    ChatML) when it is a special token."""
    stops = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    render = renderer(tokenizer, template)
    marker = "\u2063tunesmith-answer\u2063"
    try:
        text = render([{"role": "user", "content": "x"}, {"role": "assistant", "content": marker}])
    except Exception:  # a template that cannot render this minimal chat: eos only
        return stops
    after = text.split(marker, 1)[1] if marker in text else ""
    if after:
        first = tokenizer(after, add_special_tokens=False, verbose=False)["input_ids"][:1]
        specials = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
        if first and first[0] in specials and first[0] not in stops:
            stops.append(first[0])
    return stops
