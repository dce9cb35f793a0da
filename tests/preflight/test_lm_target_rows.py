"""The LM target checks on hand-made encoded rows (the in-run tests plant the same faults through real runs)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tunesmith.config.recipe import validate_recipe
from tunesmith.preflight import PreflightContext
from tunesmith.preflight.lm_targets import check_end_token_trained, check_zero_targets

EOS = 9


class FakeTokenizer:
    eos_token_id = EOS

    def convert_ids_to_tokens(self, i):
        return "</s>" if i == EOS else f"t{i}"


def context(rows, dropped=0):
    recipe = validate_recipe({"model": "m", "task": "causal_lm", "data": {"train": "t.txt"},
                              "train": {"max_length": 64}})
    task = SimpleNamespace(inference="generate", block_size=64, chat_template=lambda tokenizer: None,
                           encode_extras=lambda split: {"stats": {"dropped": dropped, "conversations": 10}})
    return PreflightContext(recipe, task, None, FakeTokenizer(), None, None, {"train": rows}, 10)


def test_a_sequence_with_no_target_is_an_error_and_dropped_ones_a_warning():
    rows = [{"input_ids": [1, 2, EOS], "labels": [-100, 2, EOS]}, {"input_ids": [1, 2], "labels": [-100, -100]}]
    found = check_zero_targets(context(rows, dropped=3))
    assert [(f.code, f.severity, f.count) for f in found] == [("zero_target_examples", "error", 1),
                                                                ("zero_target_examples", "warning", 3)]
    assert check_zero_targets(context(rows[:1])) == []


@pytest.mark.parametrize("labels, code", [([-100, 2, -100], "end_token_not_trained"),
                                          ([-100, 2, EOS], None)])
def test_the_end_token_must_be_a_target_somewhere(labels, code):
    found = check_end_token_trained(context([{"input_ids": [1, 2, EOS], "labels": labels}]))
    assert [f.code for f in found] == ([code] if code else [])


def test_preference_pairs_count_both_sides():
    row = {"chosen_input_ids": [1, 5], "chosen_labels": [-100, 5], "rejected_input_ids": [1, 6],
           "rejected_labels": [-100, 6]}
    found = check_end_token_trained(context([row]))
    assert [(f.code, f.count) for f in found] == [("answers_without_end_token", 2)]
