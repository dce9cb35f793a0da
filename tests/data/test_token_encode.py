"""Sub-word alignment, windows over long sentences, and stitching them back (hand-made words and tags)."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import AutoTokenizer

from tiny_models import minilm_dir
from tunesmith.data.token_encode import (IGNORE, TokenCollator, check_fast_tokenizer, document_neighbours,
                                         encode_words, split_words, window_bounds)
from tunesmith.errors import RecipeError
from tunesmith.evaluation.token_decode import decode_words, entity_groups, repair_iob2, stitch

NAMES = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
INSIDE = {1: 2, 3: 4}


@pytest.fixture(scope="module")
def tokenizer():
    path = minilm_dir()
    if path is None:
        pytest.skip("the packaged MiniLM tokenizer is not installed")
    return AutoTokenizer.from_pretrained(path)


def test_only_the_first_sub_token_of_a_word_carries_its_tag(tokenizer):
    words = ["Mr.", "Wolfeschlegelstein", "lives", "in", "Kathmandu"]
    tags = [0, 1, 0, 0, 3]
    [feature] = encode_words(tokenizer, [words], [tags], max_length=64, stride=4)
    pieces = tokenizer(words, is_split_into_words=True)
    assert feature["input_ids"] == pieces["input_ids"]
    word_ids = pieces.word_ids()
    expected = [IGNORE if w is None or (i and word_ids[i - 1] == w) else tags[w] for i, w in enumerate(word_ids)]
    assert feature["labels"] == expected
    assert sum(label != IGNORE for label in feature["labels"]) == len(words)  # one label per word
    assert len(feature["labels"]) > len(words) + 2  # the long name really is several sub-tokens


def test_label_all_tokens_turns_b_into_i_after_the_first_sub_token(tokenizer):
    words = ["Wolfeschlegelstein", "Kathmandu"]
    [feature] = encode_words(tokenizer, [words], [[1, 3]], max_length=64, stride=4, label_all_tokens=True,
                             inside_of=INSIDE)
    word_ids = tokenizer(words, is_split_into_words=True).word_ids()
    labels = feature["labels"]
    for i, w in enumerate(word_ids):
        if w is None:
            assert labels[i] == IGNORE
        else:
            first = word_ids[i - 1] != w
            assert labels[i] == ([1, 3][w] if first else [2, 4][w])
    assert labels.count(2) >= 1 and labels.count(1) == 1


def test_a_slow_tokenizer_is_refused():
    class Slow:
        is_fast = False

    with pytest.raises(RecipeError, match="not a fast tokenizer, so it cannot map sub-tokens back to words"):
        check_fast_tokenizer(Slow(), "some/model")


def test_window_bounds_overlap_by_the_stride_and_keep_words_whole():
    word_ids = [0, 0, 1, 2, 2, 2, 3, 4, 5, 5, 6, 7, 8, 9]
    bounds = window_bounds(word_ids, budget=5, stride=2)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(word_ids)
    for (s1, e1), (s2, e2) in zip(bounds, bounds[1:]):
        assert e1 - s2 >= 1 and e2 > e1 and s2 > s1  # overlap and progress
    for start, end in bounds:
        assert end - start <= 5
        assert start == 0 or word_ids[start] != word_ids[start - 1]  # windows start and end at word boundaries
        assert end == len(word_ids) or word_ids[end] != word_ids[end - 1]
    # the first overlap is 1, not 2: sub-token 1 is inside word 0, so the second window starts at word 1
    assert bounds == [(0, 3), (2, 7), (3, 8), (6, 11), (8, 13), (11, 14)]
    assert window_bounds([0, 0, 0, 0, 0, 0, 0], budget=3, stride=1) == [(0, 3), (2, 5), (4, 7)]  # one long word


def test_a_stride_over_half_a_window_is_refused(tokenizer):
    with pytest.raises(RecipeError, match=r"token_classification.stride: 4 sub-tokens .* window of 6 \(train.max_len"
                                          r"gth 8 minus 2 special tokens\); give at most 3"):
        encode_words(tokenizer, [["a"]], [[0]], max_length=8, stride=4)


def long_sentences(n: int = 6):
    rng = np.random.default_rng(0)
    vocab = ["Mr.", "Wolfeschlegelstein", "lives", "in", "Kathmandu", "and", "the", "river", ",", "Smith"]
    sentences = [[vocab[i] for i in rng.integers(0, len(vocab), size=rng.integers(1, 30))] for _ in range(n)]
    tags = [[int(rng.integers(0, 5)) for _ in words] for words in sentences]
    return sentences, tags


def test_windows_stitch_back_to_one_prediction_per_word_equal_to_the_unwindowed_one(tokenizer):
    """A position-independent 'model' (probabilities from the token id alone): the stitched windows of a tiny
    max_length give every word exactly once, and the same predictions as one window per sentence."""
    sentences, tags = long_sentences()

    def fake_probs(feature):
        ids = np.array(feature["input_ids"])
        logits = np.stack([np.sin(ids * (k + 1)) for k in range(len(NAMES))], axis=1)
        return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)

    windowed = encode_words(tokenizer, sentences, tags, max_length=8, stride=2)
    whole = encode_words(tokenizer, sentences, tags, max_length=512, stride=2)
    assert len(windowed) > 2 * len(sentences) and len(whole) == len(sentences)
    got = stitch(windowed, [fake_probs(f) for f in windowed])
    want = stitch(whole, [fake_probs(f) for f in whole])
    assert sorted(got) == list(range(len(sentences)))
    assert sum(len(rows) for rows in got.values()) == sum(len(words) for words in sentences)
    for sentence, rows in got.items():
        assert all(row is not None for row in rows)
        np.testing.assert_allclose(np.stack(rows), np.stack(want[sentence]))
    # every window's labels are the gold tags of the words whose first sub-token it holds
    for feature in windowed:
        for label, word in zip(feature["labels"], feature["word_index"]):
            if word >= 0:
                assert label == tags[feature["sentence"]][word]


def test_stitching_takes_the_window_where_the_word_is_farthest_from_an_edge():
    features = [{"sentence": 0, "n_words": 2, "word_index": [-1, 0, 1, -1], "word_edge": [-1, 0, 0, -1]},
                {"sentence": 0, "n_words": 2, "word_index": [-1, 1, -1], "word_edge": [-1, 2, -1]}]
    probs = [np.array([[1, 0], [0.9, 0.1], [0.8, 0.2], [1, 0]]), np.array([[1, 0], [0.3, 0.7], [1, 0]])]
    rows = stitch(features, probs)[0]
    np.testing.assert_allclose(rows[0], [0.9, 0.1])
    np.testing.assert_allclose(rows[1], [0.3, 0.7])  # the second window: 2 sub-tokens from its edge, not 0


def test_collator_pads_labels_with_ignore_and_leaves_the_stitching_keys_out(tokenizer):
    features = encode_words(tokenizer, [["Mr.", "Smith"], ["in", "Kathmandu", "and", "Wolfeschlegelstein"]],
                            [[0, 1], [0, 3, 0, 1]], max_length=64, stride=4)
    batch = TokenCollator(tokenizer)(features)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    short = len(features[0]["labels"])
    assert batch["labels"].shape == batch["input_ids"].shape
    assert batch["labels"][0, short:].tolist() == [IGNORE] * (batch["labels"].shape[1] - short)


def test_repair_and_spans():
    assert repair_iob2(["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-PER"]) == \
        ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "B-PER"]


def test_entity_groups_give_exact_substrings_and_mean_scores():
    text = "Mr.  John O'Neil lives in New-York, U.S."
    words = split_words(text)
    assert [w for w, _, _ in words] == ["Mr", ".", "John", "O'Neil", "lives", "in", "New-York", ",", "U.S", "."]
    assert all(text[s:e] == w for w, s, e in words)
    rows = [None, None, np.array([0.1, 0.8, 0.1, 0, 0]), np.array([0.2, 0.0, 0.6, 0.2, 0]), None, None,
            np.array([0, 0, 0.5, 0.1, 0.4]), None, np.array([0, 0, 0, 0.9, 0.1]), None]
    tags, scores = decode_words(rows, NAMES)
    assert tags == ["O", "O", "B-PER", "I-PER", "O", "O", "B-PER", "O", "B-LOC", "O"]  # I-PER alone -> B-PER
    groups = entity_groups(text, [(s, e) for _, s, e in words], tags, scores)
    assert groups == [
        {"entity_group": "PER", "word": "John O'Neil", "start": 5, "end": 16, "score": 0.7},
        {"entity_group": "PER", "word": "New-York", "start": 26, "end": 34, "score": 0.5},
        {"entity_group": "LOC", "word": "U.S", "start": 36, "end": 39, "score": 0.9},
    ]
    assert all(text[g["start"]:g["end"]] == g["word"] for g in groups)


def test_document_neighbours_follow_the_file_order_within_each_document():
    documents, lines = [1, 0, 0, 1, 0], [30, 9, 1, 20, 5]  # rows shuffled, as after a random split
    neighbours = document_neighbours(documents, lines)
    assert neighbours[2] == ([], [4, 1])  # document 0 by line: rows 2 (line 1), 4 (line 5), 1 (line 9)
    assert neighbours[4] == ([2], [1]) and neighbours[1] == ([4, 2], [])
    assert neighbours[3] == ([], [0]) and neighbours[0] == ([3], [])  # document 1 never reaches document 0


def test_document_context_surrounds_the_sentence_and_is_never_labelled_or_scored(tokenizer):
    sentences = [["Mr.", "Smith", "spoke"], ["in", "Paris", "today"], ["and", "left"]]
    tags = [[0, 1, 0], [0, 3, 0], [0, 0]]
    neighbours = document_neighbours([0, 0, 0], [1, 5, 9])
    plain = encode_words(tokenizer, sentences, tags, max_length=64, stride=4)
    framed = encode_words(tokenizer, sentences, tags, max_length=64, stride=4, neighbours=neighbours,
                          context_tokens=2)
    ids = [tokenizer(words, is_split_into_words=True, add_special_tokens=False)["input_ids"] for words in sentences]
    middle = framed[1]
    cls, sep = plain[1]["input_ids"][0], plain[1]["input_ids"][-1]
    assert middle["input_ids"] == [cls, *ids[0][-2:], *ids[1], *ids[2][:2], sep]  # 2 sub-tokens each side
    assert [l for l in middle["labels"] if l != IGNORE] == [l for l in plain[1]["labels"] if l != IGNORE] == [0, 3, 0]
    assert sorted(i for i in middle["word_index"] if i >= 0) == [0, 1, 2]  # only the sentence's own words
    assert framed[0]["input_ids"][1:len(ids[0]) + 1] == ids[0]  # the first sentence: context after it only
    assert len(framed[0]["input_ids"]) == len(ids[0]) + 2 + 2


def test_document_context_never_overflows_max_length(tokenizer):
    sentences = [["word"] * 12, ["Paris"] * 4, ["word"] * 12]
    tags = [[0] * 12, [3] * 4, [0] * 12]
    framed = encode_words(tokenizer, sentences, tags, max_length=10, stride=2,
                          neighbours=document_neighbours([0, 0, 0], [1, 20, 40]), context_tokens=64)
    middle = [f for f in framed if f["sentence"] == 1]
    assert len(middle) == 1 and len(middle[0]["input_ids"]) == 10  # 8 sub-tokens of room: 4 words + 2 + 2
    assert sum(i >= 0 for i in middle[0]["word_index"]) == 4
