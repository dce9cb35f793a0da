"""Packing documents and examples into blocks, and LM batches: every token exactly once, EOS between
documents, padding marked by -100 labels (never by the pad id, which equals eos here)."""

import random

import pytest
import torch
from transformers import AutoModelForCausalLM

from tunesmith.data.encode import EncodedDataset
from tunesmith.data.packing import IGNORE_INDEX, LMCollator, make_lm_loader, pack_documents, pack_examples

EOS = 0


def random_documents(n: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(1, 500) for _ in range(rng.randrange(1, 40))] for _ in range(n)]


@pytest.mark.parametrize("block_size", [2, 7, 16, 64, 1000])
def test_every_token_once_with_eos_after_each_document(block_size):
    docs = random_documents(30)
    blocks = pack_documents(docs, EOS, block_size)
    stream = [token for block in blocks for token in block]
    expected = [token for doc in docs for token in doc + [EOS]]
    assert stream == expected  # every token exactly once, in order, EOS between documents (and at the end)
    assert stream.count(EOS) == len(docs)
    assert all(len(block) == block_size for block in blocks[:-1]) and 0 < len(blocks[-1]) <= block_size
    assert len(blocks) == -(-len(expected) // block_size)  # no padding anywhere, no block dropped


def test_eos_positions_are_exactly_the_document_ends():
    docs = [[5, 6, 7], [8], [9, 10]]
    assert pack_documents(docs, EOS, 4) == [[5, 6, 7, EOS], [8, EOS, 9, 10], [EOS]]


def test_a_document_that_already_ends_with_eos_gets_no_second_one():
    assert pack_documents([[1, 2, EOS], [3]], EOS, 10) == [[1, 2, EOS, 3, EOS]]


def test_pack_examples_keeps_whole_examples_in_order_with_restarting_positions():
    rng = random.Random(1)
    examples = []
    for _ in range(25):
        n = rng.randrange(2, 12)
        ids = [rng.randrange(1, 99) for _ in range(n)]
        examples.append({"input_ids": ids, "labels": [IGNORE_INDEX] * (n // 2) + ids[n // 2:]})
    blocks = pack_examples(examples, 16)
    assert all(len(b["input_ids"]) <= 16 for b in blocks)
    assert [t for b in blocks for t in b["input_ids"]] == [t for e in examples for t in e["input_ids"]]
    assert [t for b in blocks for t in b["labels"]] == [t for e in examples for t in e["labels"]]
    # position ids restart at 0 at each example: the number of restarts is the number of examples
    assert sum(p == 0 for b in blocks for p in b["position_ids"]) == len(examples)
    with pytest.raises(ValueError, match="does not fit"):
        pack_examples([{"input_ids": [1] * 17, "labels": [1] * 17}], 16)


def test_no_example_is_predicted_from_the_one_packed_before_it():
    """An example's first label would be predicted from the previous example's last token: -100 in the block
    (unpacked, a row's first token is never predicted either)."""
    blocks = pack_examples([{"input_ids": [1, 2, 3], "labels": [1, 2, 3]}, {"input_ids": [4, 5], "labels": [4, 5]}], 8)
    assert blocks == [{"input_ids": [1, 2, 3, 4, 5], "labels": [IGNORE_INDEX, 2, 3, IGNORE_INDEX, 5],
                       "position_ids": [0, 1, 2, 0, 1]}]


class _Tok:
    pad_token_id = EOS


def test_collator_masks_padding_by_labels_and_attention_not_by_pad_id():
    # pad id == eos id: a real EOS keeps its label, padding gets -100
    features = [{"input_ids": [4, 5, EOS]}, {"input_ids": [6, EOS, 7, 8, EOS]}]
    batch = LMCollator(pad_id=EOS)(features)
    assert batch["input_ids"].tolist() == [[4, 5, EOS, EOS, EOS], [6, EOS, 7, 8, EOS]]
    assert batch["labels"].tolist() == [[4, 5, EOS, IGNORE_INDEX, IGNORE_INDEX], [6, EOS, 7, 8, EOS]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert "position_ids" not in batch


def test_packed_batches_get_positions_and_no_attention_mask():
    features = [{"input_ids": [1, 2, 3], "labels": [-100, 2, 3], "position_ids": [0, 1, 0]},
                {"input_ids": [4], "labels": [4], "position_ids": [0]}]
    batch = LMCollator(pad_id=EOS)(features)
    assert "attention_mask" not in batch
    assert batch["position_ids"].tolist() == [[0, 1, 0], [0, 0, 1]]  # padding: a segment of its own
    assert batch["labels"].tolist() == [[-100, 2, 3], [4, -100, -100]]


def test_loader_orders():
    dataset = EncodedDataset([{"input_ids": [1] * n} for n in (3, 9, 5, 7)])
    loader = make_lm_loader(dataset, _Tok(), batch_size=2, order="by_length")
    assert [b["input_ids"].shape[1] for b in loader] == [9, 5]


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_gpt2_dir"])
def test_packed_examples_do_not_attend_to_each_other(fixture, request):
    """The logits of an example packed after another equal its logits alone (block-diagonal attention)."""
    model = AutoModelForCausalLM.from_pretrained(request.getfixturevalue(fixture), local_files_only=True).eval()
    first, second = [11, 12, 13, 14, 15], [21, 22, 23]
    block = pack_examples([{"input_ids": first, "labels": first}, {"input_ids": second, "labels": second}], 16)
    batch = LMCollator(pad_id=EOS)(block)
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        alone = model(input_ids=torch.tensor([second])).logits[0]
        naive = model(input_ids=batch["input_ids"], use_cache=False).logits[0]  # without position ids: attends across
    torch.testing.assert_close(packed[len(first):], alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(naive[len(first):], alone, atol=1e-4)
