"""benchmarks/conll_multilabel.py: CoNLL-2003 sentences -> jsonl rows {text, labels: sorted entity types}."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tunesmith.config.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]


def script():
    spec = importlib.util.spec_from_file_location("conll_multilabel", REPO / "benchmarks" / "conll_multilabel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_entity_types_of_iob2_tags_and_the_example_recipe_is_valid():
    assert script().entity_types(["B-PER", "I-PER", "O", "B-LOC", "B-PER"]) == ["LOC", "PER"]
    assert script().entity_types(["O", "O"]) == []
    recipe = load_recipe(REPO / "examples" / "conll_entity_types.yaml")
    assert recipe.task == "multi_label" and recipe.data.validation.path.endswith("testa.jsonl")


@pytest.mark.shared_data
def test_the_conversion_of_the_real_files(shared_data, tmp_path):
    if not (shared_data / "conll2003" / "eng.testb").is_file():
        pytest.skip(f"{shared_data}/conll2003 has no eng.testb")
    files = script().convert(tmp_path)
    rows = [json.loads(line) for line in files["testb"].read_text().splitlines()]
    assert len(rows) == 3453  # the sentences of eng.testb
    assert rows[1] == {"text": "Nadim Ladki", "labels": ["PER"]}
    assert {label for row in rows for label in row["labels"]} == {"LOC", "MISC", "ORG", "PER"}
    assert any(row["labels"] == [] for row in rows)  # sentences without an entity: the empty set
