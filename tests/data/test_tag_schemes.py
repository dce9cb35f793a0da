"""Tag schemes (data/tag_schemes.py): the syntax of each scheme, the conversion to IOB2 with its repairs, spans."""

from __future__ import annotations

import pytest

from tunesmith.data.tag_schemes import entity_spans, first_outside, split_tag, tag_names, to_iob2


@pytest.mark.parametrize("tag, scheme, parts", [
    ("O", "iob2", ("O", "")), ("B-PER", "iob2", ("B", "PER")), ("I-ORG", "iob1", ("I", "ORG")),
    ("S-LOC", "bioes", ("S", "LOC")), ("E-MISC", "bioes", ("E", "MISC")), ("B-I-X", "iob2", ("B", "I-X")),
    ("E-PER", "iob2", None), ("S-PER", "iob1", None), ("B-", "iob2", None), ("b-PER", "iob2", None),
    ("B_PER", "iob2", None), ("PER", "iob2", None), ("o", "iob2", None), ("B-NEW YORK", "iob2", None),
    ("", "bioes", None), (None, "iob2", None), (3, "iob2", None),
])
def test_tag_syntax_per_scheme(tag, scheme, parts):
    assert split_tag(tag, scheme) == parts


def test_first_outside_finds_the_first_bad_tag():
    assert first_outside(["O", "B-PER", "I-PER"], "iob2") is None
    assert first_outside(["O", "S-PER", "E-PER"], "iob2") == 1


def test_conll_iob1_quirk_b_only_between_two_adjacent_entities_of_one_type():
    # "EU rejects German call": I- starts entities; "Peter Blackburn" one PER; B-PER marks a second PER
    # directly after the first (two people named one after the other).
    tags = ["I-ORG", "O", "I-MISC", "O", "I-PER", "I-PER", "B-PER", "I-PER", "I-LOC", "O"]
    iob2, repaired = to_iob2(tags, "iob1")
    assert iob2 == ["B-ORG", "O", "B-MISC", "O", "B-PER", "I-PER", "B-PER", "I-PER", "B-LOC", "O"]
    assert repaired == []  # nothing in IOB1 is invalid: I- after O simply starts an entity
    assert entity_spans(iob2) == [("ORG", 0, 1), ("MISC", 2, 3), ("PER", 4, 6), ("PER", 6, 8), ("LOC", 8, 9)]


def test_iob1_type_change_starts_an_entity_and_b_after_o_is_kept():
    assert to_iob2(["I-PER", "I-LOC", "B-LOC", "O", "B-ORG"], "iob1") == (
        ["B-PER", "B-LOC", "B-LOC", "O", "B-ORG"], [])


def test_iob2_valid_is_kept_and_invalid_i_is_repaired_with_its_position():
    valid = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]
    assert to_iob2(valid, "iob2") == (valid, [])
    tags = ["I-PER", "I-PER", "O", "I-LOC", "B-ORG", "I-LOC"]
    assert to_iob2(tags, "iob2") == (["B-PER", "I-PER", "O", "B-LOC", "B-ORG", "B-LOC"], [0, 3, 5])


def test_bioes_to_iob2():
    tags = ["S-PER", "O", "B-ORG", "I-ORG", "E-ORG", "B-LOC", "E-LOC", "S-LOC"]
    assert to_iob2(tags, "bioes") == (["B-PER", "O", "B-ORG", "I-ORG", "I-ORG", "B-LOC", "I-LOC", "B-LOC"], [])


def test_bioes_i_or_e_without_b_is_repaired():
    # E-PER at the start, I-LOC after O, I-LOC after an E-LOC closed its entity, E-ORG after a B-PER
    tags = ["E-PER", "O", "I-LOC", "E-LOC", "I-LOC", "B-PER", "E-ORG"]
    iob2, repaired = to_iob2(tags, "bioes")
    assert iob2 == ["B-PER", "O", "B-LOC", "I-LOC", "B-LOC", "B-PER", "B-ORG"]
    assert repaired == [0, 2, 4, 6]


def test_outside_tag_and_unknown_scheme_are_value_errors():
    with pytest.raises(ValueError, match="'E-PER' is outside the iob2 scheme"):
        to_iob2(["E-PER"], "iob2")
    with pytest.raises(ValueError, match="unknown tag scheme"):
        to_iob2(["O"], "bilou")


def test_entity_spans():
    assert entity_spans([]) == []
    assert entity_spans(["O", "O"]) == []
    assert entity_spans(["B-PER", "I-PER", "I-PER"]) == [("PER", 0, 3)]
    assert entity_spans(["B-PER", "I-LOC", "O", "I-ORG", "I-ORG"]) == [("PER", 0, 1), ("LOC", 1, 2), ("ORG", 3, 5)]


def test_tag_names_o_first_then_sorted_types():
    assert tag_names({"PER", "LOC", "MISC"}) == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-PER", "I-PER"]
    assert tag_names([]) == ["O"]
