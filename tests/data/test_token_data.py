"""Token classification data (data/token_data.py): CoNLL and jsonl/json/parquet sentences read to IOB2 frames,
every bad input one DataError naming the file and line, and the splits (validation fraction, duplicates, tag set)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from tunesmith.config.recipe import DataSpec
from tunesmith.config.token_classification import TokenClassificationSpec
from tunesmith.data.tag_schemes import entity_spans
from tunesmith.data.token_data import load_token_splits, read_token_file, token_format
from tunesmith.errors import DataError

CONLL = """-DOCSTART- -X- -X- O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC
call NN I-NP O

Peter NNP I-NP I-PER
Blackburn NNP I-NP I-PER
"""


def spec(path, **extra) -> DataSpec:
    return DataSpec(train=str(path), **extra)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(tmp_path: Path, rows: list, name: str = "data.jsonl") -> Path:
    return write(tmp_path, name, "".join(json.dumps(row) + "\n" for row in rows))


def error_of(path: Path, **extra) -> str:
    with pytest.raises(DataError) as info:
        read_token_file(spec(path, **{k: v for k, v in extra.items() if k != "invalid_sequences"}), path,
                        **({"invalid_sequences": extra["invalid_sequences"]} if "invalid_sequences" in extra else {}))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_conll_iob1_reads_to_iob2_with_lines(tmp_path):
    path = write(tmp_path, "eng.train", CONLL)
    frame = read_token_file(spec(path, tag_scheme="iob1"), path)
    assert frame["tokens"].tolist() == [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]]
    assert frame["tags"].tolist() == [["B-ORG", "O", "B-MISC", "O"], ["B-PER", "I-PER"]]
    assert frame["line"].tolist() == [3, 8]
    assert frame["repaired"].tolist() == [0, 0]
    assert frame.attrs == {"source": str(path), "line_unit": "line", "format": "conll"}


def test_conll_iob1_read_as_iob2_is_repaired_and_counted(tmp_path):
    path = write(tmp_path, "eng.train", CONLL)
    frame = read_token_file(spec(path), path)  # default scheme iob2: every I- that starts an entity is repaired
    assert frame["tags"].tolist() == [["B-ORG", "O", "B-MISC", "O"], ["B-PER", "I-PER"]]
    assert frame["repaired"].tolist() == [2, 1]


def test_conll_columns_tabs_crlf_and_docstart_in_the_middle(tmp_path):
    path = write(tmp_path, "x.conll", "B-PER\tJohn\r\nO\tsaw\r\n-DOCSTART-\tO\r\nS-LOC\tParis\r\n\r\n\r\n")
    frame = read_token_file(spec(path, columns={"tokens": 1, "tags": 0}, tag_scheme="bioes"), path)
    assert frame["tokens"].tolist() == [["John", "saw"], ["Paris"]]
    assert frame["tags"].tolist() == [["B-PER", "O"], ["B-LOC"]]
    assert frame["line"].tolist() == [1, 4]
    assert frame["document"].tolist() == [0, 1]  # a document starts at each -DOCSTART- line


def test_conll_delimiter_keeps_spaces_inside_a_token(tmp_path):
    path = write(tmp_path, "x.tsv", "New York\tB-LOC\nis\tO\n")
    frame = read_token_file(spec(path, delimiter="\t"), path)
    assert frame["tokens"].tolist() == [["New York", "is"]]


def test_conll_without_tags_when_not_required(tmp_path):
    path = write(tmp_path, "x.txt", "John\nsaw\n\nParis\n")
    frame = read_token_file(spec(path), path, require_tags=False)
    assert list(frame.columns) == ["tokens", "line", "repaired", "document"]
    assert frame["tokens"].tolist() == [["John", "saw"], ["Paris"]]


@pytest.mark.parametrize("name, format, expected", [
    ("eng.train", None, "conll"), ("a.conll", None, "conll"), ("a.iob", None, "conll"), ("a.bio", None, "conll"),
    ("a.txt", None, "conll"), ("train", None, "conll"), ("a.jsonl", None, "jsonl"), ("a.ndjson", None, "jsonl"),
    ("a.json", None, "json"), ("a.pq", None, "parquet"), ("a.data", "jsonl", "jsonl"),
])
def test_format_rule(name, format, expected):
    assert token_format(Path(name), format) == expected


def test_jsonl_json_and_parquet_read_lists(tmp_path):
    rows = [{"words": ["John", "lives", "in", "New", "York"], "ner": ["B-PER", "O", "O", "B-LOC", "I-LOC"]},
            {"words": ["Hi"], "ner": ["O"]}]
    columns = {"tokens": "words", "tags": "ner"}
    path = jsonl(tmp_path, rows)
    frame = read_token_file(spec(path, columns=columns), path)
    assert frame["tags"].tolist() == [row["ner"] for row in rows] and frame["line"].tolist() == [1, 2]
    path = write(tmp_path, "data.json", json.dumps(rows))
    assert read_token_file(spec(path, columns=columns), path).attrs["line_unit"] == "item"
    path = tmp_path / "data.parquet"
    pd.DataFrame(rows).to_parquet(path)
    frame = read_token_file(spec(path, columns=columns), path)
    assert frame["tokens"].tolist() == [row["words"] for row in rows] and frame["line"].tolist() == [1, 2]


BAD_CONLL = [
    ("EU I-ORG\nrejects\n", {}, "{path}, line 2: the token 'rejects' has no tag column "
                                "(data.columns.tags is -1; the line has 1 column)"),
    ("EU I-ORG\n\nB-X Y\n", {"columns": {"tokens": 2, "tags": 1}},
     "{path}, line 1: no word column 2 (data.columns.tokens); the line has 2 columns"),
    ("EU B-ORG\nsaid E-ORG\n", {}, "{path}, line 2: tag 'E-ORG' is not a tag of the iob2 scheme "
                                   "(O, or B-/I- and a type, e.g. B-PER); check data.tag_scheme and data.columns.tags"),
    ("EU NNP\n", {}, "{path}, line 1: tag 'NNP' is not a tag of the iob2 scheme (O, or B-/I- and a type, e.g. B-PER); "
                     "check data.tag_scheme and data.columns.tags"),
    ("EU B-ORG\n", {"tag_scheme": "bioes", "columns": {"tokens": 0, "tags": "ner"}},
     "{path}: data.columns.tags is 'ner', but conll columns are numbered (0 the first, -1 the last), not named"),
    ("-DOCSTART- -X- O\n\n\n", {}, "{path} has no sentences (only blank and -DOCSTART- lines)"),
    ("\n\n", {}, "{path} is empty"),
    ("a O\nb O\n\nc O\nd I-PER\n", {"invalid_sequences": "error"},
     "{path}, line 5: tag 'I-PER' after 'O' continues no entity (in iob2 an entity starts with B-, not I-); fix the "
     "tag, or set token_classification.invalid_sequences: repair to start an entity there"),
    ("a E-PER\n", {"invalid_sequences": "error", "tag_scheme": "bioes"},
     "{path}, line 1: tag 'E-PER' at the start of the sentence continues no entity (in bioes an entity starts with B- "
     "or S-, not E-); fix the tag, or set token_classification.invalid_sequences: repair to start an entity there"),
]


@pytest.mark.parametrize("text, extra, expected", BAD_CONLL)
def test_bad_conll_is_one_line_naming_file_and_line(tmp_path, text, extra, expected):
    path = write(tmp_path, "bad.conll", text)
    if text == "\n\n":
        path.write_text("", encoding="utf-8")
    assert error_of(path, **extra) == expected.format(path=path)


BAD_JSONL = [
    ({"tokens": [], "tags": []}, "{path}, line 2: an empty sentence (tokens is an empty list)"),
    ({"tokens": ["a", "b"], "tags": ["O"]}, "{path}, line 2: 2 tokens but 1 tags; each token needs one tag"),
    ({"tokens": ["a", 7], "tags": ["O", "O"]}, "{path}, line 2: token 2 is not a string (a number 7)"),
    ({"tokens": ["a", " "], "tags": ["O", "O"]}, "{path}, line 2: token 2 is empty"),
    ({"tokens": "John saw", "tags": ["O", "O"]},
     "{path}, line 2: tokens must be a list of strings, found a string; split the sentence into its words"),
    ({"tokens": ["a"], "tags": None}, "{path}, line 2: tags must be a list of strings, found null"),
    ({"tokens": ["a", "b"], "tags": ["O", "B_PER"]},
     "{path}, line 2 (token 2): tag 'B_PER' is not a tag of the iob2 scheme (O, or B-/I- and a type, e.g. B-PER); "
     "check data.tag_scheme and data.columns.tags"),
    ({"tokens": ["a"]}, "{path}, line 2: the object has no key 'tags' (data.columns.tags)"),
]


@pytest.mark.parametrize("bad, expected", BAD_JSONL)
def test_bad_jsonl_is_one_line_naming_file_and_line(tmp_path, bad, expected):
    path = jsonl(tmp_path, [{"tokens": ["John"], "tags": ["B-PER"]}, bad])
    assert error_of(path) == expected.format(path=path)


def test_jsonl_missing_keys_and_numbered_keys(tmp_path):
    path = jsonl(tmp_path, [{"words": ["a"], "tags": ["O"]}])
    assert error_of(path) == f"{path}: key 'tokens' (data.columns.tokens) not found; keys are: words, tags"
    assert error_of(path, columns={"tokens": 0}) == (
        f"{path}: data.columns.tokens is 0, but jsonl fields are named, not numbered; name the key holding the "
        f"list of tokens")
    path = jsonl(tmp_path, [{"tokens": ["a"]}], name="untagged.jsonl")
    assert error_of(path) == f"{path}: key 'tags' (data.columns.tags) not found; keys are: tokens"
    assert "tags" not in read_token_file(spec(path), path, require_tags=False).columns


def test_unsupported_formats(tmp_path):
    path = write(tmp_path, "a.csv", "tokens,tags\n")
    assert error_of(path) == (f"{path}: a csv file cannot hold a sentence's words and tags; token_classification "
                              f"reads conll (a word and its tag per line), jsonl, json or parquet: convert it, or set "
                              f"data.format")
    path = write(tmp_path, "a.conll", "a O\n")
    assert error_of(path, format="tsv") == (
        f"{path}: token_classification reads conll, jsonl, json, parquet files, not 'tsv' (data.format)")


def test_parquet_missing_column_and_damaged_file(tmp_path):
    path = tmp_path / "a.parquet"
    pd.DataFrame({"words": [["a"]], "tags": [["O"]]}).to_parquet(path)
    assert error_of(path) == f"{path}: column 'tokens' (data.columns.tokens) not found; columns are: words, tags"
    path.write_bytes(b"not parquet at all")
    assert error_of(path).startswith(f"{path}: cannot read as parquet (")


def test_missing_file_reuses_the_reader_checks(tmp_path):
    assert error_of(tmp_path / "none.conll") == f"{tmp_path / 'none.conll'} does not exist"


# --- splits --------------------------------------------------------------------------------------------------------

def sentences(n: int, tag: str = "B-PER") -> str:
    return "".join(f"w{i} {tag}\nsaid O\n\n" for i in range(n))


def test_splits_from_files_with_a_type_only_in_held_out_data(tmp_path):
    train = write(tmp_path, "train.conll", sentences(3))
    dev = write(tmp_path, "dev.conll", "Paris B-LOC\n\nJohn B-PER\n")
    test = write(tmp_path, "test.conll", "Acme B-ORG\n")
    splits = load_token_splits(spec(train, validation=str(dev), test=str(test)), seed=0,
                               token_spec=TokenClassificationSpec())
    assert list(splits.frames()) == ["train", "validation", "test"]
    assert splits.tag_names == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert splits.sources == {"train": str(train), "validation": str(dev), "test": str(test)}
    assert splits.notes == [
        f"entity type LOC in {dev} (validation) never occurs in the training data: the model gets a tag for it but "
        f"cannot learn it",
        f"entity type ORG in {test} (test) never occurs in the training data: the model gets a tag for it but "
        f"cannot learn it"]


def test_split_fraction_and_duplicates(tmp_path):
    train = write(tmp_path, "train.conll", sentences(10) + "w0 B-PER\nsaid O\n\n" * 2)
    splits = load_token_splits(spec(train, validation={"split": 0.3}, drop_duplicates=True), seed=1)
    assert splits.notes == [f"dropped 2 duplicate rows from {train}"]
    assert (len(splits.train), len(splits.validation), splits.test) == (7, 3, None)
    every = sorted(w[0] for frame in splits.frames().values() for w in frame["tokens"])
    assert every == sorted(f"w{i}" for i in range(10))
    assert splits.sources["validation"] == f"{train} (held-out 0.3)"
    again = load_token_splits(spec(train, validation={"split": 0.3}, drop_duplicates=True), seed=1)
    assert again.validation["tokens"].tolist() == splits.validation["tokens"].tolist()


def test_training_data_without_entities_is_an_error(tmp_path):
    train = write(tmp_path, "train.conll", sentences(5, tag="O"))
    with pytest.raises(DataError) as info:
        load_token_splits(spec(train), seed=0)
    assert str(info.value) == (f"{train}: the training data has no entity (every tag is O): nothing to learn; "
                               f"check data.columns.tags and data.tag_scheme")


def test_invalid_sequences_error_mode_reaches_the_splits(tmp_path):
    train = write(tmp_path, "train.conll", sentences(3) + "x I-PER\n")
    with pytest.raises(DataError, match=r"train.conll, line 10: tag 'I-PER' at the start"):
        load_token_splits(spec(train), seed=0, token_spec=TokenClassificationSpec(invalid_sequences="error"))
    assert load_token_splits(spec(train), seed=0).train["repaired"].sum() + \
        load_token_splits(spec(train), seed=0).validation["repaired"].sum() == 1


@pytest.mark.shared_data
def test_real_conll2003_counts_match_provenance(shared_data):
    folder = shared_data / "conll2003"
    if not (folder / "eng.train").is_file():
        pytest.skip(f"{folder} has no eng.train")
    data = spec(folder / "eng.train", validation=str(folder / "eng.testa"), test=str(folder / "eng.testb"),
                tag_scheme="iob1", columns={"tokens": 0, "tags": 3})
    splits = load_token_splits(data, seed=0)
    counts = {name: (len(frame), sum(len(entity_spans(tags)) for tags in frame["tags"]),
                     int(frame["tokens"].map(len).sum()), int(frame["repaired"].sum()))
              for name, frame in splits.frames().items()}
    assert counts == {"train": (14041, 23499, 203621, 0), "validation": (3250, 5942, 51362, 0),
                      "test": (3453, 5648, 46435, 0)}
    per_type = Counter(kind for tags in splits.test["tags"] for kind, _, _ in entity_spans(tags))
    assert per_type == {"LOC": 1668, "MISC": 702, "ORG": 1661, "PER": 1617}
    assert splits.tag_names == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert splits.train["line"].iloc[0] == 3 and splits.notes == []
