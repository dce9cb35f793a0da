"""encode_pair / encode_pairs / PreferenceCollator / make_preference_loader with the tiny Llama's ChatML tokenizer."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from tunesmith.data.chat import DEFAULT_CHAT_TEMPLATE, choose_template, renderer
from tunesmith.data.preference_encode import (
    PreferenceCollator, encode_pair, encode_pairs, fit_pair, make_preference_loader,
)
from tunesmith.errors import DataError
from tunesmith.models import load_tokenizer

PROMPT = [{"role": "system", "content": "You are kind."}, {"role": "user", "content": "Name a colour."}]


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir):
    return load_tokenizer(tiny_llama_dir)


@pytest.fixture(scope="module")
def render(tokenizer):
    return renderer(tokenizer, choose_template(tokenizer))


def ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def reply_part(feature, side):
    """The token ids where labels are not -100, and how many -100 labels lead the row."""
    labels = feature[f"{side}_labels"]
    masked = next(i for i, label in enumerate(labels) if label != -100)
    assert all(label == -100 for label in labels[:masked]) and -100 not in labels[masked:]
    assert labels[masked:] == feature[f"{side}_input_ids"][masked:]
    return feature[f"{side}_input_ids"][masked:], masked


def test_labels_are_masked_exactly_on_the_prompt(tokenizer, render):
    feature, truncation = encode_pair(tokenizer, render, PROMPT, "Blue, like the sky.", "No.", max_length=128)
    assert truncation == {"prompt_truncated": False, "reply_truncated": False}
    prompt_ids = ids(tokenizer, "<|im_start|>system\nYou are kind.<|im_end|>\n<|im_start|>user\nName a colour."
                                "<|im_end|>\n<|im_start|>assistant\n")
    for side, reply in (("chosen", "Blue, like the sky."), ("rejected", "No.")):
        tokens, masked = reply_part(feature, side)
        assert masked == len(prompt_ids)
        assert feature[f"{side}_input_ids"][:masked] == prompt_ids
        assert tokenizer.decode(tokens) == reply + "<|im_end|>\n"
    assert feature["chosen_input_ids"][0] != tokenizer.bos_token_id  # the template, not the tokenizer, adds specials


def test_default_template_reply_ends_with_eos(tokenizer):
    render = renderer(tokenizer, DEFAULT_CHAT_TEMPLATE)
    feature, _ = encode_pair(tokenizer, render, [{"role": "user", "content": "hi"}], "hello", "go away", 128)
    tokens, _ = reply_part(feature, "chosen")
    assert tokenizer.decode(tokens) == "hello</s>"
    assert tokenizer.decode(feature["chosen_input_ids"][:-len(tokens)]) == "### Instruction:\nhi\n\n### Response:\n"


def test_long_prompt_is_cut_from_the_left_on_both_sides(tokenizer, render):
    prompt = [{"role": "user", "content": " ".join(f"word{i}" for i in range(60))}]
    full, _ = encode_pair(tokenizer, render, prompt, "yes", "no no no", max_length=1000)
    n_prompt = reply_part(full, "chosen")[1]
    longer = len(full["rejected_input_ids"]) - n_prompt
    feature, truncation = encode_pair(tokenizer, render, prompt, "yes", "no no no", max_length=40)
    assert truncation == {"prompt_truncated": True, "reply_truncated": False}
    assert len(feature["rejected_input_ids"]) == 40
    kept = 40 - longer
    for side in ("chosen", "rejected"):
        tokens, masked = reply_part(feature, side)
        assert masked == kept
        assert feature[f"{side}_input_ids"][:kept] == full["chosen_input_ids"][n_prompt - kept:n_prompt]
        assert tokens == reply_part(full, side)[0]


def test_a_reply_longer_than_max_length_is_cut_on_the_right(tokenizer, render):
    long_reply = " ".join(f"token{i}" for i in range(80))
    full, _ = encode_pair(tokenizer, render, PROMPT, long_reply, "short", max_length=1000)
    n_prompt = reply_part(full, "chosen")[1]
    assert n_prompt > 8
    feature, truncation = encode_pair(tokenizer, render, PROMPT, long_reply, "short", max_length=30)
    assert truncation == {"prompt_truncated": True, "reply_truncated": True}
    assert len(feature["chosen_input_ids"]) == 30
    tokens, masked = reply_part(feature, "chosen")
    assert masked == 8  # min_prompt_tokens: the last 8 prompt tokens
    assert feature["chosen_input_ids"][:8] == full["chosen_input_ids"][n_prompt - 8:n_prompt]
    assert tokens == reply_part(full, "chosen")[0][:22]
    assert reply_part(feature, "rejected")[0] == reply_part(full, "rejected")[0]  # short: whole


def test_fit_pair_by_hand():
    prompt = list(range(100, 120))  # 20 prompt tokens
    assert fit_pair(prompt, [[1, 2], [3]], 30) == (prompt, [[1, 2], [3]], {"prompt_truncated": False,
                                                                           "reply_truncated": False})
    cut = fit_pair(prompt, [[1] * 15, [2] * 5], 30)
    assert cut == (prompt[-15:], [[1] * 15, [2] * 5], {"prompt_truncated": True, "reply_truncated": False})
    cut = fit_pair(prompt, [[1] * 25, [2] * 5], 30)
    assert cut == (prompt[-8:], [[1] * 22, [2] * 5], {"prompt_truncated": True, "reply_truncated": True})
    short = [7, 8, 9]  # shorter than min_prompt_tokens: all of it is kept
    assert fit_pair(short, [[1] * 40, [2]], 10) == (short, [[1] * 7, [2]], {"prompt_truncated": False,
                                                                           "reply_truncated": True})


def test_a_template_that_is_not_incremental_is_an_error(tokenizer):
    odd = "{% for m in messages %}{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}>>{% endif %}"
    with pytest.raises(DataError, match="does not render conversations incrementally"):
        encode_pair(tokenizer, renderer(tokenizer, odd), [{"role": "user", "content": "a"}], "b", "c", 64)


def pairs_frame(n=6):
    return pd.DataFrame({
        "prompt": [[{"role": "user", "content": "question " + "very " * i}] for i in range(n)],
        "chosen": [f"good {'yes ' * i}" for i in range(n)],
        "rejected": ["bad"] * n,
        "line": list(range(1, n + 1)),
    })


def test_encode_pairs_stats_and_pair_index(tokenizer):
    frame = pairs_frame()
    dataset, stats = encode_pairs(frame, tokenizer, choose_template(tokenizer), max_length=128)
    assert len(dataset) == 6 and [f["pair_index"] for f in dataset.features] == list(range(6))
    assert stats["pairs"] == 6 and stats["prompt_truncated"] == stats["reply_truncated"] == 0
    assert stats["tokens"] == sum(len(f["chosen_input_ids"]) + len(f["rejected_input_ids"]) for f in dataset.features)
    assert stats["reply_tokens"] == sum(len(reply_part(f, s)[0]) for f in dataset.features for s in ("chosen", "rejected"))
    assert dataset.lengths() == [max(len(f["chosen_input_ids"]), len(f["rejected_input_ids"])) for f in dataset.features]
    _, cut = encode_pairs(frame, tokenizer, choose_template(tokenizer), max_length=14)
    longest = max(dataset.lengths())
    assert longest > 14 and cut["prompt_truncated"] >= 1


def test_collator_shapes_padding_and_order():
    features = [
        {"chosen_input_ids": [5, 6, 7], "chosen_labels": [-100, 6, 7],
         "rejected_input_ids": [5, 8], "rejected_labels": [-100, 8], "pair_index": 4},
        {"chosen_input_ids": [9, 1], "chosen_labels": [-100, 1],
         "rejected_input_ids": [9, 2, 3, 4], "rejected_labels": [-100, 2, 3, 4], "pair_index": 0},
    ]
    batch = PreferenceCollator(pad_token_id=0)(features)
    assert set(batch) == {"input_ids", "attention_mask", "labels", "pair_index"}
    assert batch["input_ids"].tolist() == [[5, 6, 7, 0], [9, 1, 0, 0], [5, 8, 0, 0], [9, 2, 3, 4]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]]
    assert batch["labels"].tolist() == [[-100, 6, 7, -100], [-100, 1, -100, -100], [-100, 8, -100, -100],
                                        [-100, 2, 3, 4]]
    assert batch["pair_index"].tolist() == [4, 0] and batch["pair_index"].dtype == torch.long
    for f, logps in zip(features, ([-1.5, -2.25], [-3.0, -0.5])):
        f["reference_logps"] = logps
    batch = PreferenceCollator(pad_token_id=0)(features)
    assert batch["reference_logps"].dtype == torch.float32
    assert batch["reference_logps"].tolist() == [[-1.5, -2.25], [-3.0, -0.5]]


def test_loader_orders_and_seeds(tokenizer):
    dataset, _ = encode_pairs(pairs_frame(10), tokenizer, choose_template(tokenizer), max_length=128)
    order = lambda name, seed=0: [i for b in make_preference_loader(dataset, tokenizer, batch_size=3, order=name,
                                                                    seed=seed) for i in b["pair_index"].tolist()]
    assert order("sequential") == list(range(10))
    lengths = dataset.lengths()
    assert order("by_length") == sorted(range(10), key=lambda i: -lengths[i])
    for name in ("shuffle", "grouped"):
        assert sorted(order(name)) == list(range(10)) and order(name, 1) == order(name, 1)
    assert order("shuffle", 1) != order("shuffle", 2)
    batch = next(iter(make_preference_loader(dataset, tokenizer, batch_size=4, order="sequential")))
    assert batch["input_ids"].shape[0] == 8 and batch["labels"].shape == batch["input_ids"].shape
    chosen = dataset.features[0]["chosen_input_ids"]
    assert batch["input_ids"][0, :len(chosen)].tolist() == chosen
    assert batch["input_ids"][4, :len(dataset.features[0]["rejected_input_ids"])].tolist() == \
        dataset.features[0]["rejected_input_ids"]
    assert (batch["input_ids"][batch["attention_mask"] == 0] == tokenizer.pad_token_id).all()


@pytest.mark.shared_data
def test_hh_rlhf_pairs_encode_with_replies_intact(shared_data, tokenizer):
    from tunesmith.config.preference import PreferenceSpec
    from tunesmith.config.recipe import DataSpec
    from tunesmith.data.preference_data import load_preference_splits

    path = shared_data / "hh_rlhf_harmless" / "harmless-base-test.jsonl.gz"
    splits, _ = load_preference_splits(DataSpec(train=str(path)), PreferenceSpec(), seed=0)
    frame = splits.validation.head(40)
    dataset, stats = encode_pairs(frame, tokenizer, choose_template(tokenizer), max_length=4096)
    assert stats["pairs"] == 40 and stats["prompt_truncated"] == stats["reply_truncated"] == 0
    for feature, chosen, rejected in zip(dataset.features, frame["chosen"], frame["rejected"]):
        assert tokenizer.decode(reply_part(feature, "chosen")[0]) == chosen + "<|im_end|>\n"
        assert tokenizer.decode(reply_part(feature, "rejected")[0]) == rejected + "<|im_end|>\n"
        n = reply_part(feature, "chosen")[1]
        assert feature["chosen_input_ids"][:n] == feature["rejected_input_ids"][:n]
    _, cut = encode_pairs(frame, tokenizer, choose_template(tokenizer), max_length=64)
    assert cut["prompt_truncated"] > 0 and cut["tokens"] <= 64 * 2 * 40
