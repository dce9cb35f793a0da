"""Tiny finished runs to serve, trained for a few steps on the tiny random models (session-scoped: trained once);
the tests start their servers on a free 127.0.0.1 port on a background thread and talk real HTTP."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lm_helpers import lm_recipe, number_rows, write_json
from pipeline_helpers import sentiment_rows, tiny_recipe, write_csv
from serve_helpers import quiet, train

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tasks"))  # task_fixtures (the NER data set)


@pytest.fixture(scope="session")
def classifier_run(tiny_bert_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("serve_classifier")
    data = write_csv(root / "train.csv", sentiment_rows(160, seed=1))
    return train(tiny_recipe(tiny_bert_dir, data, root / "sentiment"))


@pytest.fixture(scope="session")
def int8_export(classifier_run, tmp_path_factory) -> Path:
    from tunesmith.recipes.export import export_run

    out = tmp_path_factory.mktemp("serve_export") / "sentiment-int8"
    export_run(classifier_run, "int8", output=out, echo=quiet)
    return out


@pytest.fixture(scope="session")
def ner_run(tiny_bert_dir, tmp_path_factory) -> Path:
    from task_fixtures import token_classification

    root = tmp_path_factory.mktemp("serve_ner")
    raw = token_classification({"bert": tiny_bert_dir}, root)["raw"]
    raw["train"].update(epochs=6)  # as tests/tasks/test_token_classification.py: F1 >= 0.5, entities found
    return train(raw)


@pytest.fixture(scope="session")
def sft_run(tiny_llama_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("serve_sft")
    data = write_json(root / "alpaca.json", number_rows(40))
    return train(lm_recipe(tiny_llama_dir, "sft", data, root / "numbers", epochs=1))


@pytest.fixture(scope="session")
def causal_run(tiny_gpt2_dir, tmp_path_factory) -> Path:
    from lm_helpers import shakespeare_slice

    root = tmp_path_factory.mktemp("serve_causal")
    data = shakespeare_slice(root / "shakespeare.txt", 3000)
    return train(lm_recipe(tiny_gpt2_dir, "causal_lm", data, root / "poet", epochs=1, max_length=32))
