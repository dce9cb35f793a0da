"""Language-model targets (causal_lm, sft, dpo): what the loss actually trains, and the chat template.

- `check_end_token_trained`: the end-of-turn token (eos, and the template's own such as ChatML's `<|im_end|>`)
  is a target somewhere in the training labels. The classic failure: pad = eos and a collator that masks every
  pad id, so the model never learns to stop. Also counts answers that end with no end token although they were
  not truncated (a template that writes none).
- `check_zero_targets`: examples with no target token left (every label -100) train nothing; sft drops them at
  encoding, counted here.
- `check_chat_template_round_trip`: a conversation rendered with the template, tokenized as training tokenizes
  it, decodes back to the very same text.
- `check_generation_template`: the prompt generation builds from the tokenizer saved with the model (what
  `tunesmith generate` and `apply_chat_template` use) is token for token the prompt training saw.
"""

from __future__ import annotations

from tunesmith.data.chat import IGNORE_INDEX, encode_conversation, prompt_ids, renderer, stop_token_ids
from tunesmith.data.findings import Finding

SIDES = ("", "chosen_", "rejected_")  # sft / causal_lm rows, then a preference pair's two sides


def is_decoder_task(context) -> bool:
    return context.task.inference == "generate"


def sequences(row: dict):
    """(input ids, labels) of each sequence an encoded row holds (a preference pair holds two)."""
    for side in SIDES:
        if f"{side}input_ids" in row and f"{side}labels" in row:
            yield row[f"{side}input_ids"], row[f"{side}labels"]


def end_tokens(context) -> list[int]:
    template = context.task.chat_template(context.tokenizer)
    if template is not None:
        return stop_token_ids(context.tokenizer, template)
    return [context.tokenizer.eos_token_id] if context.tokenizer.eos_token_id is not None else []


def check_end_token_trained(context) -> list[Finding]:
    if not is_decoder_task(context):
        return []
    stops = set(end_tokens(context))
    limit = min(context.recipe.train.max_length, context.task.block_size)
    trained = masked = unended = with_targets = 0
    for row in context.sample_rows("train"):
        for ids, labels in sequences(row):
            targets = [label for label in labels if label != IGNORE_INDEX]
            trained += sum(1 for i, label in zip(ids, labels) if i in stops and label == i)
            masked += sum(1 for i, label in zip(ids, labels) if i in stops and label == IGNORE_INDEX)
            if targets and "position_ids" not in row:  # packed rows hold several examples: not counted one by one
                with_targets += 1
                unended += len(ids) < limit and not stops.intersection(targets)
    names = ", ".join(repr(context.tokenizer.convert_ids_to_tokens(i)) for i in sorted(stops))
    if masked and not trained:
        return [Finding("end_token_not_trained", "error", f"the end token ({names}) occurs {masked} times in the "
                        f"training examples but is never a target (its label is -100, as when pad = eos and padding "
                        f"is masked by id): the model would never learn to stop", count=masked)]
    if unended:
        return [Finding("answers_without_end_token", "warning", f"{unended} of {with_targets} sampled training "
                        f"answers end without an end token ({names}) although they were not truncated: the model "
                        f"learns to run on after its answer; check the chat template", count=unended)]
    return []


def check_zero_targets(context) -> list[Finding]:
    if not is_decoder_task(context):
        return []
    found = []
    empty = sum(1 for row in context.sample_rows("train") for ids, labels in sequences(row)
                if all(label == IGNORE_INDEX for label in labels))
    if empty:
        found.append(Finding("zero_target_examples", "error", f"{empty} sampled training sequences have no target "
                             f"token (every label -100): they train nothing", count=empty))
    stats = context.task.encode_extras("train").get("stats", {})
    dropped = stats.get("dropped", 0)
    if dropped:
        found.append(Finding("zero_target_examples", "warning", f"{dropped} of {stats.get('conversations')} "
                             f"training conversations kept no answer token after truncation to "
                             f"train.max_length={context.recipe.train.max_length} and were dropped; raise "
                             f"train.max_length to keep them", count=dropped))
    return found


def first_conversation(context) -> list[dict] | None:
    """The first training prompt with its reference answer, as messages (None when there is none)."""
    first = next(iter(context.task.default_prompts(context.splits.train)), None)  # a list, or an iterator
    if first is None or first.get("reference") is None:
        return None
    messages = list(first.get("messages") or [{"role": "user", "content": first["prompt"]}])
    return messages + [{"role": "assistant", "content": first["reference"]}]


def first_difference(a: str, b: str) -> str:
    at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return f"at character {at}: {a[max(0, at - 20):at + 20]!r} vs {b[max(0, at - 20):at + 20]!r}"


def check_chat_template_round_trip(context) -> list[Finding]:
    template = context.task.chat_template(context.tokenizer) if is_decoder_task(context) else None
    messages = first_conversation(context) if template is not None else None
    if messages is None:
        return []
    tokenizer = context.tokenizer
    render = renderer(tokenizer, template)
    text = render(messages)
    ids = encode_conversation(tokenizer, render, messages)["input_ids"]
    decoded = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    if decoded == text:
        return []
    return [Finding("chat_template_round_trip", "warning", f"a conversation rendered with the chat template and "
                    f"tokenized as training does decodes to other text ({first_difference(text, decoded)}): the "
                    f"model trains on something else than the template says", examples=[text[:200], decoded[:200]])]


def check_generation_template(context) -> list[Finding]:
    template = context.task.chat_template(context.tokenizer) if is_decoder_task(context) else None
    messages = first_conversation(context) if template is not None else None
    if messages is None:
        return []
    tokenizer = context.tokenizer
    saved = tokenizer.chat_template
    if not saved:
        return [Finding("generation_template", "error", "the tokenizer saved with the model has no chat template: "
                        "tunesmith generate and apply_chat_template would not render prompts as training did")]
    trained = encode_conversation(tokenizer, renderer(tokenizer, template), messages)["input_ids"]
    prompt = prompt_ids(tokenizer, saved, messages[:-1])
    if trained[:len(prompt)] == prompt:
        return []
    text = tokenizer.decode(trained, skip_special_tokens=False)
    generated = tokenizer.decode(prompt, skip_special_tokens=False)
    return [Finding("generation_template", "error", f"generation renders prompts with another template than "
                    f"training ({first_difference(text, generated)}): the model would be prompted in a format it "
                    f"never saw", examples=[text[:200], generated[:200]])]
