"""Token classification inspection (data/token_stats.py): counts per split, repaired sequences, missing and unseen
entity types, duplicates and leakage between splits, sentence lengths in words and sub-tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.config.recipe import DataSpec
from tunesmith.data.token_data import load_token_splits
from tunesmith.data.token_stats import inspect_token_splits

TRAIN = """John B-PER
lives O
in O
Paris B-LOC

Mary I-PER
left O

John B-PER
lives O
in O
Paris B-LOC

Acme B-ORG
Corp I-ORG
"""
DEV = "Rome B-LOC\n\nMary B-PER\nleft O\n"  # "Mary left" is in train; no ORG here
TEST = "Nile B-GEO\n\nIBM I-ORG\n"             # GEO never in train; I-ORG at the start: repaired


def splits_of(tmp_path: Path):
    files = {}
    for name, text in (("train", TRAIN), ("dev", DEV), ("test", TEST)):
        files[name] = tmp_path / f"{name}.conll"
        files[name].write_text(text, encoding="utf-8")
    spec = DataSpec(train=str(files["train"]), validation=str(files["dev"]), test=str(files["test"]))
    return load_token_splits(spec, seed=0), files


def test_counts_and_findings(tmp_path):
    splits, files = splits_of(tmp_path)
    report = inspect_token_splits(splits)
    assert report.rows == {"train": 4, "validation": 2, "test": 2}
    assert report.words == {"train": 12, "validation": 3, "test": 2}
    assert report.tags["train"] == {"O": 5, "B-LOC": 2, "B-ORG": 1, "I-ORG": 1, "B-PER": 3}
    assert report.entities == {"train": {"LOC": 2, "ORG": 1, "PER": 3}, "validation": {"LOC": 1, "PER": 1},
                               "test": {"GEO": 1, "ORG": 1}}
    assert report.lengths["train"]["words"] == {"min": 2, "mean": 3.0, "p50": 3, "p90": 4, "p99": 4, "max": 4}
    assert report.lengths["train"]["subtokens"] is None
    codes = [(f.code, f.severity, f.count) for f in report.findings]
    assert codes == [("repaired_sequences", "warning", 2), ("missing_type", "warning", 1),
                     ("missing_type", "warning", 2), ("unseen_type", "warning", 1), ("duplicates", "info", 1),
                     ("leakage", "warning", 1)]
    repaired = report.by_code("repaired_sequences")
    assert [e["where"] for e in repaired.examples] == [f"{files['train']}:6", f"{files['test']}:3"]
    assert repaired.message.startswith("2 tags in 2 sentences broke the tag scheme") and "iob1" in repaired.message
    assert report.findings[1].message == (f"validation ({files['dev']}) has no entity of type ORG: its scores there "
                                          f"are undefined (0)")
    assert report.by_code("unseen_type").message.startswith(f"test ({files['test']}) has entities of type GEO (1 in")
    assert report.by_code("duplicates").examples == [
        {"split": "train", "where": f"{files['train']}:9", "text": "John lives in Paris"}]
    leak = report.by_code("leakage")
    assert leak.message.startswith("1 of 2 validation sentences (50.0%) are word for word in train")
    assert leak.examples[0]["where"] == f"{files['dev']}:3"
    assert [f.code for f in report.of("warning")] == ["repaired_sequences", "missing_type", "missing_type",
                                                      "unseen_type", "leakage"]
    assert report.of("error") == []


def test_to_dict_is_json_with_a_summary(tmp_path):
    splits, _ = splits_of(tmp_path)
    out = json.loads(json.dumps(inspect_token_splits(splits).to_dict()))
    assert out["summary"] == {"error": 0, "warning": 5, "info": 1}
    assert out["entities"]["test"] == {"GEO": 1, "ORG": 1}
    assert out["findings"][0]["code"] == "repaired_sequences"


def test_no_findings_on_clean_data(tmp_path):
    (tmp_path / "a.conll").write_text("John B-PER\nran O\n\nAnn B-PER\n", encoding="utf-8")
    (tmp_path / "b.conll").write_text("Bob B-PER\n", encoding="utf-8")
    spec = DataSpec(train=str(tmp_path / "a.conll"), validation=str(tmp_path / "b.conll"))
    report = inspect_token_splits(load_token_splits(spec, seed=0))
    assert report.findings == [] and report.to_dict()["summary"] == {"error": 0, "warning": 0, "info": 0}


def test_subtoken_lengths_and_windowed_sentences(tmp_path, tiny_bert_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    splits, files = splits_of(tmp_path)
    expected = [len(tokenizer(list(words), is_split_into_words=True)["input_ids"]) for words in splits.train["tokens"]]
    assert min(expected) >= 4  # [CLS] word word [SEP] at the least
    limit = max(expected) - 1  # exactly the longest sentences exceed it
    report = inspect_token_splits(splits, tokenizer=tokenizer, max_length=limit)
    sub = report.lengths["train"]["subtokens"]
    assert (sub["min"], sub["max"]) == (min(expected), max(expected))
    over = sum(n > limit for n in expected)
    assert sub["over_max_length"] == over >= 1
    finding = report.by_code("long_sentences")
    assert finding.severity == "info" and finding.count >= over
    assert finding.message.startswith(f"{finding.count} sentences are longer than train.max_length={limit} sub-tokens")
    assert all(example["tokens"] > limit for example in finding.examples)
    assert inspect_token_splits(splits, tokenizer=tokenizer).by_code("long_sentences") is None  # no max_length


@pytest.mark.shared_data
def test_real_conll2003_inspection(shared_data):
    folder = shared_data / "conll2003"
    if not (folder / "eng.train").is_file():
        pytest.skip(f"{folder} has no eng.train")
    spec = DataSpec(train=str(folder / "eng.train"), validation=str(folder / "eng.testa"),
                    test=str(folder / "eng.testb"), tag_scheme="iob1", columns={"tokens": 0, "tags": 3})
    report = inspect_token_splits(load_token_splits(spec, seed=0))
    assert report.entities["train"] == {"LOC": 7140, "MISC": 3438, "ORG": 6321, "PER": 6600}
    assert report.tags["train"]["O"] == 169578
    assert report.by_code("repaired_sequences") is None and report.by_code("missing_type") is None
    assert report.by_code("leakage") is not None  # short lines ("-- ", score tables) repeat across the splits
