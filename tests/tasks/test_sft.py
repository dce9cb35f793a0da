"""sft: exact label masks (prompt -100, every assistant turn trained), data reading, and training end to end."""

import json

import pytest
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from lm_helpers import lm_recipe, number_rows, write_json
from tunesmith.cli import main
from tunesmith.data.chat import (
    DEFAULT_CHAT_TEMPLATE, alpaca_messages, choose_template, conversation_segments, encode_conversation, renderer,
    stop_token_ids,
)
from tunesmith.data.lm_data import load_conversation_splits
from tunesmith.errors import DataError
from tunesmith.models import load_tokenizer
from tunesmith.config.recipe import validate_recipe
from tunesmith.recipes.finetune import finetune

IGNORE = -100
CHAT = [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "bye"}, {"role": "assistant", "content": "ok bye"}]


def conversations(table) -> list[list[dict]]:
    """The messages of each row of a split (stored as JSON in its `messages` column)."""
    return [json.loads(text) for text in table.column("messages")]


def trained_runs(tokenizer, example) -> list[str]:
    """The decoded runs of consecutive trained (label != -100) tokens."""
    runs, current = [], []
    for token, label in zip(example["input_ids"], example["labels"]):
        if label != IGNORE:
            assert label == token  # a trained position predicts its own token (the model shifts)
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [tokenizer.decode(run) for run in runs]


# --- label masks ------------------------------------------------------------------------------------------


def test_single_turn_label_mask_is_exact(tiny_llama_dir):
    tokenizer = load_tokenizer(tiny_llama_dir)
    example = encode_conversation(tokenizer, renderer(tokenizer, choose_template(tokenizer)), CHAT[:2])
    tokens = tokenizer.convert_ids_to_tokens(example["input_ids"])
    assert tokens == ["<|im_start|>", "user", "Ċ", "hi", "Ġthe", "re", "<|im_end|>", "Ċ",
                      "<|im_start|>", "a", "s", "sist", "ant", "Ċ",
                      "he", "llo", "<|im_end|>", "Ċ"]
    masked = [i for i, label in enumerate(example["labels"]) if label == IGNORE]
    assert masked == list(range(14))  # the whole prompt, up to and including "assistant\n"
    assert example["labels"][14:] == example["input_ids"][14:]  # the answer and its end-of-turn marker
    # the prompt part is exactly what generation feeds the model
    prompt = tokenizer.apply_chat_template(CHAT[:1], tokenize=False, add_generation_prompt=True)
    assert example["input_ids"][:14] == tokenizer(prompt, add_special_tokens=False)["input_ids"]


def test_every_assistant_turn_of_a_chat_is_trained(tiny_llama_dir):
    tokenizer = load_tokenizer(tiny_llama_dir)
    example = encode_conversation(tokenizer, renderer(tokenizer, choose_template(tokenizer)), CHAT)
    assert trained_runs(tokenizer, example) == ["hello<|im_end|>\n", "ok bye<|im_end|>\n"]
    assert len(example["input_ids"]) == len(example["labels"])
    # the full text is the template's rendering of the chat
    assert tokenizer.decode(example["input_ids"]) == tokenizer.apply_chat_template(CHAT, tokenize=False)


def test_default_template_for_a_model_without_one(tiny_gpt2_dir):
    tokenizer = load_tokenizer(tiny_gpt2_dir)
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # the case where masking by pad id would be wrong
    template = choose_template(tokenizer, "auto")
    assert template == DEFAULT_CHAT_TEMPLATE
    render = renderer(tokenizer, template)
    assert render(CHAT) == ("### Instruction:\nhi there\n\n### Response:\nhello<|endoftext|>"
                            "\n\n### Instruction:\nbye\n\n### Response:\nok bye<|endoftext|>")
    assert conversation_segments(render, CHAT[:2]) == [("### Instruction:\nhi there\n\n### Response:\n", False),
                                                      ("hello<|endoftext|>", True)]
    example = encode_conversation(tokenizer, render, CHAT)
    assert trained_runs(tokenizer, example) == ["hello<|endoftext|>", "ok bye<|endoftext|>"]
    assert example["labels"][-1] == tokenizer.eos_token_id  # EOS is a target although it is the pad token
    assert stop_token_ids(tokenizer, template) == [tokenizer.eos_token_id]


def test_chatml_answers_stop_at_im_end(tiny_llama_dir):
    tokenizer = load_tokenizer(tiny_llama_dir)
    stops = stop_token_ids(tokenizer, choose_template(tokenizer))
    assert stops == [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")]


def test_template_choice(tiny_llama_dir, tiny_gpt2_dir):
    llama, gpt2 = load_tokenizer(tiny_llama_dir), load_tokenizer(tiny_gpt2_dir)
    assert choose_template(llama, "auto") == llama.chat_template != DEFAULT_CHAT_TEMPLATE
    assert choose_template(llama, "default") == DEFAULT_CHAT_TEMPLATE
    with pytest.raises(DataError, match="has no chat template"):
        choose_template(gpt2, "model")


def test_alpaca_rows_become_messages():
    assert alpaca_messages("Translate", "bonjour", "hello") == [
        {"role": "user", "content": "Translate\n\nbonjour"}, {"role": "assistant", "content": "hello"}]
    assert alpaca_messages("Say hi", "", "hi", system="Be brief.")[0] == {"role": "system", "content": "Be brief."}
    assert alpaca_messages("Say hi", None, "hi")[0] == {"role": "user", "content": "Say hi"}


# --- reading ----------------------------------------------------------------------------------------------


def spec(train, **extra):
    return validate_recipe({"model": "x", "task": "sft", "data": {"train": str(train), **extra}}).data


def test_columns_are_found_from_the_file(tmp_path):
    alpaca = write_json(tmp_path / "a.json", number_rows(10))
    splits, columns = load_conversation_splits(spec(alpaca), seed=0)
    assert columns == {"instruction": "instruction", "input": "input", "output": "output"}
    assert len(splits.train) == 8 and len(splits.validation) == 2
    users = {m[0]["content"] for table in (splits.train, splits.validation) for m in conversations(table)}
    assert users == {f"{r['instruction']}\n\ntwice" if r["input"] else r["instruction"] for r in number_rows(10)}
    chats = write_json(tmp_path / "c.jsonl", [{"messages": CHAT}] * 5, lines=True)
    splits, columns = load_conversation_splits(spec(chats), seed=0)
    assert columns == {"messages": "messages"} and conversations(splits.train)[0] == CHAT


@pytest.mark.parametrize("messages, message", [
    ([{"role": "robot", "content": "x"}], "message 1 has role 'robot'"),
    ([{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}], "starts with an assistant"),
    ([{"role": "user", "content": "x"}], "no assistant message"),
    ({"role": "user", "content": "x"}, "messages must be a non-empty list"),
    ("not json", "messages is not a JSON list"),
])
def test_bad_conversations_name_the_line(tmp_path, messages, message):
    path = write_json(tmp_path / "c.jsonl", [{"messages": CHAT}, {"messages": messages}], lines=True)
    with pytest.raises(DataError, match=f"c.jsonl, line 2: .*{message}"):
        load_conversation_splits(spec(path, columns={"messages": "messages"}), seed=0)


def test_missing_conversation_columns(tmp_path):
    path = write_json(tmp_path / "t.jsonl", [{"prompt": "a", "completion": "b"}] * 4, lines=True)
    with pytest.raises(DataError, match="sft needs conversation columns.*keys are: prompt, completion"):
        load_conversation_splits(spec(path), seed=0)


def test_shared_alpaca_demo_reads_and_encodes(shared_data, tiny_llama_dir):
    path = shared_data / "instruction_alpaca_demo" / "alpaca_en_demo.json"
    splits, columns = load_conversation_splits(spec(path, validation={"split": 0.1}), seed=0)
    assert set(columns) == {"instruction", "input", "output"}
    assert len(splits.train) + len(splits.validation) == 999
    with_input = sum("\n\n" in m[0]["content"] for m in conversations(splits.train)) + sum(
        "\n\n" in m[0]["content"] for m in conversations(splits.validation))
    assert with_input >= 412  # every record with an input (a few instructions hold blank lines themselves)
    tokenizer = load_tokenizer(tiny_llama_dir)
    render = renderer(tokenizer, choose_template(tokenizer))
    for messages in conversations(splits.train)[:20]:
        example = encode_conversation(tokenizer, render, messages)
        assert trained_runs(tokenizer, example) == [messages[-1]["content"] + "<|im_end|>\n"]


# --- training ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sft_run(tiny_llama_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("sft")
    train = write_json(root / "train.json", number_rows(80))
    recipe = validate_recipe(lm_recipe(tiny_llama_dir, "sft", train, root / "run", epochs=8, lr=5e-3))
    return root, finetune(recipe, echo=lambda *_: None)


@pytest.mark.preflight_expected("lr_above_method")  # a tiny random model: it trains at rates far above a pretrained one's
def test_sft_lowers_validation_loss_on_tiny_llama(sft_run):
    root, result = sft_run
    before = result["baselines"]["validation"]["pretrained"]
    after = result["validation"]
    assert after["loss"] < before["loss"] - 1.0
    assert after["perplexity"] < before["perplexity"] / 3
    assert result["best"]["metric"] == "loss"
    train_losses = [r["loss"] for r in map(json.loads, (root / "run" / "metrics.jsonl").read_text().splitlines())
                    if r["type"] == "train"]
    assert sum(train_losses[-5:]) / 5 < sum(train_losses[:5]) / 5 - 1.0
    # only answer tokens count in the validation loss
    stats = result["lm"]["splits"]["validation"]
    assert stats["conversations"] == 16 and stats["answer_tokens"] == after["tokens"] < stats["tokens"] / 3
    assert stats["truncated"] == stats["dropped"] == 0


def test_sft_run_records_generations_and_resolved_columns(sft_run):
    root, result = sft_run
    generations = json.loads((root / "run" / "eval.json").read_text())["generations"]
    assert len(generations) == 3
    for sample in generations:
        assert sample["prompt"].startswith("say the word") and sample["reference"]
        assert isinstance(sample["before"], str) and isinstance(sample["after"], str)
    recipe = yaml.safe_load((root / "run" / "recipe.yaml").read_text())
    assert recipe["data"]["columns"] == {"instruction": "instruction", "input": "input", "output": "output"}
    assert recipe["train"]["early_stopping"]["metric"] == "loss"


def test_sft_model_loads_with_transformers_and_keeps_the_template(sft_run, tiny_llama_dir):
    root, _ = sft_run
    model = AutoModelForCausalLM.from_pretrained(root / "run" / "model", local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(root / "run" / "model", local_files_only=True)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert tokenizer.chat_template == load_tokenizer(tiny_llama_dir).chat_template


def test_generate_formats_sft_prompts_as_chat(sft_run, capsys):
    root, result = sft_run
    sample = result["generations"][0]
    argv = ["generate", str(root / "run"), "--prompt", sample["prompt"], "--temperature", "0", "--max-new-tokens", "8"]
    assert main(argv) == 0
    answer = capsys.readouterr().out.strip()
    assert answer == sample["after"].strip() != ""  # the CLI renders the prompt as training did (greedy: same text)
    assert main(argv + ["--no-chat"]) == 0  # the raw text instead: a continuation of the prompt itself
    assert capsys.readouterr().out.startswith(sample["prompt"])


def test_packed_sft_with_the_default_template_on_gpt2(tiny_gpt2_dir, tmp_path):
    train = write_json(tmp_path / "train.json", number_rows(80))
    recipe = validate_recipe(lm_recipe(tiny_gpt2_dir, "sft", train, tmp_path / "run", epochs=4,
                                       lm={"packing": True, "block_size": 128}))
    result = finetune(recipe, echo=lambda *_: None)
    assert result["validation"]["loss"] < result["baselines"]["validation"]["pretrained"]["loss"] - 1.0
    stats = result["lm"]["splits"]["train"]
    assert stats["blocks"] < stats["examples"]  # several examples share a block
    saved = AutoTokenizer.from_pretrained(tmp_path / "run" / "model", local_files_only=True)
    assert saved.chat_template == DEFAULT_CHAT_TEMPLATE  # generation renders prompts as training did


@pytest.mark.preflight_expected("zero_target_examples")  # the point of the test
def test_conversations_without_answer_tokens_are_dropped(tiny_llama_dir, tmp_path):
    rows = number_rows(20) + [{"instruction": "word " * 80, "input": "", "output": "x"}]
    train = write_json(tmp_path / "train.json", rows)
    recipe = validate_recipe(lm_recipe(tiny_llama_dir, "sft", train, tmp_path / "run", max_steps=1,
                                       data={"validation": {"split": 0.2}}, seed=3))
    result = finetune(recipe, echo=lambda *_: None)
    stats = result["lm"]["splits"]
    assert sum(s["dropped"] for s in stats.values()) == 1
    assert sum(s["truncated"] for s in stats.values()) == 1
