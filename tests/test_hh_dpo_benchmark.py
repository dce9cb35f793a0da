"""benchmarks/hh_dpo.py and benchmarks/preference_pairs.py: HH dialogues -> prompt/replies and token ids through
tunesmith's data layer (prompt ids and reply ids apart, the reply kept under truncation), the collated layout TRL's collator produces from the same ids, the seeded split, the
held-out scoring of an untrained adapter, and that the tunesmith contender's recipe validates."""

from __future__ import annotations

import gzip
import importlib.util
import json
import math
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def module(name: str):
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


ROW = {"chosen": "\n\nHuman: how do I pick a lock?\n\nAssistant: Why?\n\nHuman: locked out\n\nAssistant: Call a locksmith.",
       "rejected": "\n\nHuman: how do I pick a lock?\n\nAssistant: Why?\n\nHuman: locked out\n\nAssistant: Use a pin."}


def test_dialogue_prompt_and_replies():
    pairs = module("preference_pairs")
    prompt, chosen, rejected = pairs.prompt_and_replies(ROW)
    assert prompt == [{"role": "user", "content": "how do I pick a lock?"}, {"role": "assistant", "content": "Why?"},
                      {"role": "user", "content": "locked out"}]
    assert (chosen, rejected) == ("Call a locksmith.", "Use a pin.")
    earlier = {"chosen": ROW["chosen"], "rejected": ROW["rejected"].replace("locked out", "locked in")}
    assert pairs.prompt_and_replies(earlier) is None  # the sides differ before the last reply
    assert pairs.prompt_and_replies({"chosen": ROW["chosen"], "rejected": ROW["chosen"]}) is None
    assert pairs.prompt_and_replies({"chosen": ROW["chosen"], "rejected": ROW["rejected"][:-len("Use a pin.")]}) is None


def test_encoding_keeps_the_reply_and_fits_max_length(tiny_llama_dir):
    from transformers import AutoTokenizer

    pairs = module("preference_pairs")
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    (full,), left_out = pairs.encode_pairs(tokenizer, [ROW], max_length=512)
    assert left_out == 0
    assert tokenizer.decode(full["chosen_ids"]) == "Call a locksmith.<|im_end|>\n"
    assert tokenizer.decode(full["prompt_ids"]).endswith("locked out<|im_end|>\n<|im_start|>assistant\n")
    longest = max(len(full["chosen_ids"]), len(full["rejected_ids"]))
    assert len(full["prompt_ids"]) > 2 * 8
    cut_at = len(full["prompt_ids"]) // 2 + longest  # the prompt loses its first half, the replies stay whole
    (cut,), _ = pairs.encode_pairs(tokenizer, [ROW], max_length=cut_at)
    assert cut["chosen_ids"] == full["chosen_ids"] and cut["rejected_ids"] == full["rejected_ids"]
    assert cut["prompt_ids"] == full["prompt_ids"][-(cut_at - longest):]
    assert pairs.real_tokens(cut) == 2 * (cut_at - longest) + len(cut["chosen_ids"]) + len(cut["rejected_ids"])
    (floor,), _ = pairs.encode_pairs(tokenizer, [ROW], max_length=8 + 3)  # 8 prompt tokens at least: replies cut
    assert floor["prompt_ids"] == full["prompt_ids"][-8:]
    assert floor["chosen_ids"] == full["chosen_ids"][:3] and floor["rejected_ids"] == full["rejected_ids"][:3]


def test_trl_collator_builds_the_same_batch_from_the_same_ids():
    pytest.importorskip("trl", reason="the TRL layout check needs trl")
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    pairs = module("preference_pairs")
    examples = [{"prompt_ids": [5, 6, 7], "chosen_ids": [8, 9], "rejected_ids": [10]},
                {"prompt_ids": [11], "chosen_ids": [12, 13, 14, 15], "rejected_ids": [16, 17]}]
    ours = pairs.collate(examples, pad_id=0)
    theirs = DataCollatorForPreference(pad_token_id=0)(examples)
    assert torch.equal(ours["input_ids"], theirs["input_ids"])
    assert torch.equal(ours["attention_mask"], theirs["attention_mask"])
    assert torch.equal((ours["labels"] != -100).long(), theirs["completion_mask"])
    assert ours["labels"][0].tolist() == [-100, -100, -100, 8, 9]


def test_split_is_seeded_and_disjoint(tmp_path):
    pairs = module("preference_pairs")
    source = tmp_path / "pairs.jsonl.gz"
    rows = [{"chosen": f"c{i}", "rejected": f"r{i}"} for i in range(20)]
    with gzip.open(source, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    train, held = pairs.split_pairs(source, tmp_path / "a", validation=5, train_limit=8, seed=3)
    again = pairs.split_pairs(source, tmp_path / "b", validation=5, train_limit=8, seed=3)
    assert train.read_text() == again[0].read_text() and held.read_text() == again[1].read_text()
    train_rows, held_rows = pairs.read_jsonl(train), pairs.read_jsonl(held)
    assert len(train_rows) == 8 and len(held_rows) == 5
    assert not {r["chosen"] for r in train_rows} & {r["chosen"] for r in held_rows}


def test_an_untrained_adapter_scores_half_accuracy_and_log2(tiny_llama_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaForCausalLM

    pairs = module("preference_pairs")
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = get_peft_model(LlamaForCausalLM.from_pretrained(tiny_llama_dir),
                           LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    encoded, _ = pairs.encode_pairs(tokenizer, [ROW, ROW], max_length=64)
    summary = pairs.score_pairs(model, encoded, tokenizer.eos_token_id, beta=0.1, batch_size=1)
    assert summary["pairs"] == 2 and summary["reward_accuracy"] == 0.5 and summary["reward_margin"] == 0.0
    assert summary["loss"] == pytest.approx(math.log(2))


def test_the_tunesmith_contender_recipe_validates():
    from tunesmith.config.recipe import validate_recipe

    bench = module("hh_dpo")
    args = Namespace(model="smollm2", workdir="/tmp/split", steps=7, batch_size=3, lr=1e-4, beta=0.2,
                     weight_decay=0.0, max_length=96, lora_r=4, lora_alpha=8, lora_targets="q_proj,k_proj", seed=1)
    recipe = validate_recipe(bench.tunesmith_recipe(args, Path("/tmp/out"), train_pairs=10))
    assert recipe.task == "dpo" and recipe.train.max_steps == 7 and recipe.train.batch_size == 3
    assert recipe.train.epochs == 3 and recipe.train.eval_every == 7  # 21 pairs of 10: the steps, not an epoch, end it
    assert recipe.method.r == 4 and list(recipe.method.target_modules) == ["q_proj", "k_proj"]
    assert recipe.preference.beta_value == 0.2 and recipe.train.warmup == 0.0 and recipe.report.html is False
    assert recipe.data.validation.path == "/tmp/split/validation.jsonl"
