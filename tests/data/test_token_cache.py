"""The token cache (data/token_cache.py): a hit gives back exactly what encoding gives, without tokenizing; the key
follows the data, the tokenizer and the settings; damage and unwritable directories never fail a run."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pytest

from lm_helpers import lm_recipe, number_rows, shakespeare_slice, write_json
from pipeline_helpers import sentiment_rows, tiny_recipe, write_csv
from tunesmith.data.arrow_dataset import ArrowDataset
from tunesmith.data.encode import EncodedDataset
from tunesmith.data.token_cache import (
    TokenCache, cache_key, encode_splits, from_arrays, to_arrays, token_cache_dir, tokenizer_fingerprint,
)
from tunesmith.models import load_tokenizer
from tunesmith.config.recipe import validate_recipe
from tunesmith.tasks import make_task
from tunesmith.tasks.base import Task


class Echo(list):
    def __call__(self, line: str) -> None:
        self.append(line)


def assert_same(got: EncodedDataset, expected: EncodedDataset) -> None:
    """Same rows, same keys in the same order, same values of the same types (python ints in the lists)."""
    assert type(got) is EncodedDataset and len(got) == len(expected)
    for a, b in zip(got.features, expected.features):
        assert list(a) == list(b)
        for key in b:
            assert type(a[key]) is type(b[key]) and a[key] == b[key], key
            if isinstance(b[key], list):
                assert all(type(x) is int for x in a[key])
    # checkpoints fingerprint the training data this way (train/checkpoint.py): resuming must see the same data
    plain = lambda v: v.tolist() if hasattr(v, "tolist") else str(v)  # noqa: E731
    assert [json.dumps(f, sort_keys=True, default=plain) for f in got.features] == \
           [json.dumps(f, sort_keys=True, default=plain) for f in expected.features]


def assert_same_rows(got: ArrowDataset, expected: ArrowDataset) -> None:
    """The language-model tasks' Arrow datasets: same rows, and the same fingerprint for checkpoints."""
    assert type(got) is ArrowDataset and len(got) == len(expected)
    assert got.column_names() == expected.column_names()
    assert [got[i] for i in range(len(got))] == [expected[i] for i in range(len(expected))]
    assert got.content_fingerprint() == expected.content_fingerprint()


def no_tokenizing(monkeypatch, tokenizer, task) -> None:
    def boom(*_args, **_kwargs):
        raise AssertionError("a cache hit must not tokenize")

    monkeypatch.setattr(type(tokenizer), "__call__", boom)
    monkeypatch.setattr(task, "encode", boom)


# --- classification ------------------------------------------------------------------------------------------


@pytest.fixture
def classification(tiny_bert_dir, tmp_path):
    """(recipe dict, tokenizer) for 80 sentiment rows."""
    train = write_csv(tmp_path / "train.csv", sentiment_rows(80, seed=3))
    raw = tiny_recipe(tiny_bert_dir, train, tmp_path / "run")
    return raw, load_tokenizer(tiny_bert_dir)


def loaded(raw: dict):
    task = make_task(validate_recipe(raw))
    return task, task.load_data()


def test_classification_miss_then_hit_is_identical(classification, tmp_path, monkeypatch):
    raw, tokenizer = classification
    cache = tmp_path / "cache"
    task, splits = loaded(raw)
    plain = {name: task.encode(frame, tokenizer) for name, frame in splits.frames().items()}
    echo = Echo()
    first = encode_splits(task, splits.frames(), tokenizer, echo=echo, directory=cache)
    assert echo == [] and len(list(cache.glob("classification-*.npz"))) == 2  # train, validation
    task, splits = loaded(raw)  # a new run
    no_tokenizing(monkeypatch, tokenizer, task)
    second = encode_splits(task, splits.frames(), tokenizer, echo=echo, directory=cache)
    assert echo == [f"note: tokenized train from cache ({len(splits.train)} rows)",
                    f"note: tokenized validation from cache ({len(splits.validation)} rows)"]
    for name in plain:
        assert_same(first[name], plain[name])
        assert_same(second[name], plain[name])
    assert type(second["train"].features[0]["labels"]) is np.int64  # what LabelMap.encode gives


def test_text_pairs_round_trip(tiny_bert_dir, tmp_path, monkeypatch):
    rows = ["label,title,body"] + [f"{label},{text.split()[0]} news,{text}" for label, text in sentiment_rows(40)]
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    raw = tiny_recipe(tiny_bert_dir, tmp_path / "pairs.csv", tmp_path / "run")
    raw["data"]["columns"] = {"label": "label", "text": "title", "text_pair": "body"}
    tokenizer = load_tokenizer(tiny_bert_dir)
    task, splits = loaded(raw)
    first = encode_splits(task, splits.frames(), tokenizer, directory=tmp_path / "c", echo=Echo())
    assert set(first["train"].features[0]) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert 1 in first["train"].features[0]["token_type_ids"]  # the pair is there
    task, splits = loaded(raw)
    no_tokenizing(monkeypatch, tokenizer, task)
    second = encode_splits(task, splits.frames(), tokenizer, directory=tmp_path / "c", echo=Echo())
    for name in first:
        assert_same(second[name], first[name])


def test_key_follows_data_settings_and_tokenizer(classification, tiny_gpt2_dir):
    raw, tokenizer = classification
    task, splits = loaded(raw)
    frame = splits.train
    key = cache_key(task, frame, tokenizer)
    assert len(key) == 64
    again, again_splits = loaded(raw)
    assert cache_key(again, again_splits.train, load_tokenizer(raw["model"])) == key  # stable across runs
    tokenizer(["some text"], truncation=True, max_length=7)  # leaves truncation state in the backend
    assert cache_key(task, frame, tokenizer) == key

    longer = json.loads(json.dumps(raw))
    longer["train"]["max_length"] = 64
    other, _ = loaded(longer)
    other.labels = task.labels
    assert cache_key(other, frame, tokenizer) != key

    text = frame.copy()
    text.loc[text.index[5], "text"] = text.loc[text.index[5], "text"] + " really"
    assert cache_key(task, text, tokenizer) != key
    label = frame.copy()
    label.loc[label.index[5], "label"] = "pos" if label.loc[label.index[5], "label"] == "neg" else "neg"
    assert cache_key(task, label, tokenizer) != key
    assert cache_key(task, frame.iloc[::-1], tokenizer) != key  # order matters (labels follow rows)
    assert cache_key(task, frame.iloc[:-1], tokenizer) != key

    assert cache_key(task, frame, load_tokenizer(tiny_gpt2_dir)) != key  # another tokenizer
    assert tokenizer_fingerprint(load_tokenizer(tiny_gpt2_dir)) != tokenizer_fingerprint(tokenizer)
    left = load_tokenizer(raw["model"])
    left.truncation_side = "left"
    assert cache_key(task, frame, left) != key


def test_key_is_the_same_in_another_process(classification, tmp_path):
    import subprocess
    import sys

    raw, tokenizer = classification
    task, splits = loaded(raw)
    (tmp_path / "raw.json").write_text(json.dumps(raw))
    script = ("import json\n"
              "from tunesmith.config.recipe import validate_recipe; from tunesmith.tasks import make_task\n"
              "from tunesmith.models import load_tokenizer; from tunesmith.data.token_cache import cache_key\n"
              f"raw = json.load(open({str(tmp_path / 'raw.json')!r}))\n"
              "task = make_task(validate_recipe(raw)); splits = task.load_data()\n"
              "print(cache_key(task, splits.train, load_tokenizer(raw['model'])))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == cache_key(task, splits.train, tokenizer)


def test_a_failing_key_falls_back_to_encoding(classification, tmp_path, monkeypatch):
    raw, tokenizer = classification
    task, splits = loaded(raw)

    def broken(frame):
        raise RuntimeError("no hash today")

    monkeypatch.setattr("tunesmith.data.token_cache.frame_fingerprint", broken)
    echo = Echo()
    got = encode_splits(task, splits.frames(), tokenizer, directory=tmp_path / "c", echo=echo)
    assert echo[0] == "warning: tokenized cache not used for train (RuntimeError: no hash today)"
    assert_same(got["train"], task.encode(splits.train, tokenizer))


def test_key_follows_the_label_names(classification):
    raw, tokenizer = classification
    task, splits = loaded(raw)
    key = cache_key(task, splits.train, tokenizer)
    from tunesmith.data.labels import LabelMap

    task.labels = LabelMap(list(reversed(task.labels.names)))  # same rows, other ids
    assert cache_key(task, splits.train, tokenizer) != key


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_key"])
def test_a_damaged_file_is_reported_and_rewritten(classification, tmp_path, damage):
    raw, tokenizer = classification
    cache = tmp_path / "cache"
    task, splits = loaded(raw)
    expected = encode_splits(task, splits.frames(), tokenizer, directory=cache, echo=Echo())
    key = cache_key(task, splits.train, tokenizer)
    path = cache / f"classification-{key}.npz"
    if damage == "garbage":
        path.write_bytes(b"not a zip file at all")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    else:  # a valid file of another key under this name
        other = cache / f"classification-{cache_key(task, splits.validation, tokenizer)}.npz"
        path.write_bytes(other.read_bytes())
    task, splits = loaded(raw)
    echo = Echo()
    got = encode_splits(task, splits.frames(), tokenizer, directory=cache, echo=echo)
    warnings = [line for line in echo if line.startswith("warning:")]
    assert len(warnings) == 1 and str(path) in warnings[0] and "unreadable" in warnings[0]
    assert echo[-1].startswith("note: tokenized validation from cache")
    assert_same(got["train"], expected["train"])
    echo.clear()
    encode_splits(task, splits.frames(), tokenizer, directory=cache, echo=echo)  # rewritten: a hit now
    assert [line.split(" (")[0] for line in echo] == ["note: tokenized train from cache",
                                                      "note: tokenized validation from cache"]


def test_caching_off_writes_nothing(classification, tmp_path, _token_cache):
    raw, tokenizer = classification
    raw["data"]["cache_tokenized"] = False
    recipe = validate_recipe(raw)
    assert recipe.data.cache_tokenized is False and validate_recipe(tiny_recipe("m", "t", "o")).data.cache_tokenized
    task, splits = loaded(raw)
    echo = Echo()
    got = encode_splits(task, splits.frames(), tokenizer, enabled=recipe.data.cache_tokenized, echo=echo)
    assert echo == [] and list(_token_cache.iterdir()) == []
    assert_same(got["train"], task.encode(splits.train, tokenizer))


def test_an_unwritable_cache_is_reported_once_and_the_run_goes_on(classification, tmp_path):
    raw, tokenizer = classification
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    task, splits = loaded(raw)
    echo = Echo()
    got = encode_splits(task, splits.frames(), tokenizer, directory=blocker / "cache", echo=echo)
    assert len(echo) == 1 and echo[0].startswith(f"warning: tokenized cache not written to {blocker / 'cache'}")
    assert_same(got["validation"], task.encode(splits.validation, tokenizer))


def test_cache_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("TUNESMITH_TOKEN_CACHE")
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "base"))
    assert token_cache_dir() == tmp_path / "base" / "tokenized"
    monkeypatch.setenv("TUNESMITH_TOKEN_CACHE", str(tmp_path / "tok"))
    assert token_cache_dir() == tmp_path / "tok"
    monkeypatch.delenv("TUNESMITH_CACHE")
    monkeypatch.delenv("TUNESMITH_TOKEN_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert token_cache_dir() == tmp_path / "home" / ".cache" / "tunesmith" / "tokenized"


# --- language models -----------------------------------------------------------------------------------------


def test_causal_lm_hit_is_identical_and_keeps_the_token_counts(tiny_gpt2_dir, tmp_path, monkeypatch):
    text = shakespeare_slice(tmp_path / "s.txt", 3000)
    raw = lm_recipe(tiny_gpt2_dir, "causal_lm", text, tmp_path / "run", lm={"block_size": 32})
    tokenizer = load_tokenizer(tiny_gpt2_dir)
    task, splits = loaded(raw)
    first = encode_splits(task, splits.frames(), tokenizer, directory=tmp_path / "c", echo=Echo())
    summary = task.encode_summary()
    assert summary["splits"]["train"]["tokens"] > 0
    task, splits = loaded(raw)
    no_tokenizing(monkeypatch, tokenizer, task)
    echo = Echo()
    second = encode_splits(task, splits.frames(), tokenizer, directory=tmp_path / "c", echo=echo)
    assert echo[0] == f"note: tokenized train from cache ({len(splits.train)} documents)"
    assert task.encode_summary() == summary  # eval.json "lm" is the same on a hit
    for name in first:
        assert_same_rows(second[name], first[name])
        assert second[name].directory.parent == tmp_path / "c"  # the entry itself, memory-mapped
    monkeypatch.undo()
    raw["lm"]["block_size"] = 16
    task, splits = loaded(raw)
    assert cache_key(task, splits.train, tokenizer) != cache_key(loaded(lm_recipe(
        tiny_gpt2_dir, "causal_lm", text, tmp_path / "run", lm={"block_size": 32}))[0], splits.train, tokenizer)


@pytest.mark.parametrize("packing", [False, True])
def test_sft_hit_is_identical_with_label_masks_and_warnings(tiny_llama_dir, tmp_path, monkeypatch, caplog, packing):
    data = write_json(tmp_path / "alpaca.json", number_rows(30))
    raw = lm_recipe(tiny_llama_dir, "sft", data, tmp_path / "run", lm={"packing": packing, "block_size": 64},
                    max_length=20)  # short: some conversations are cut
    tokenizer = load_tokenizer(tiny_llama_dir)
    task, splits = loaded(raw)
    caplog.set_level(logging.WARNING, logger="tunesmith.tasks")
    first = encode_splits(task, splits.frames(), tokenizer, directory=tmp_path / "c", echo=Echo())
    summary, warned = task.encode_summary(), [r.getMessage() for r in caplog.records]
    rows = [first["train"][i] for i in range(len(first["train"]))]
    assert any(-100 in f["labels"] for f in rows)
    assert ("position_ids" in rows[0]) is packing
    assert warned and "cut on the right" in warned[0]
    caplog.clear()
    task, splits = loaded(raw)
    no_tokenizing(monkeypatch, tokenizer, task)
    second = encode_splits(task, splits.frames(), tokenizer, directory=tmp_path / "c", echo=Echo())
    assert task.encode_summary() == summary
    assert [r.getMessage() for r in caplog.records] == warned  # the same truncation warnings on a hit
    for name in first:
        assert_same_rows(second[name], first[name])


def test_sft_key_follows_packing_and_the_chat_template(tiny_llama_dir, tmp_path):
    data = write_json(tmp_path / "alpaca.json", number_rows(10))
    raw = lm_recipe(tiny_llama_dir, "sft", data, tmp_path / "run")
    tokenizer = load_tokenizer(tiny_llama_dir)
    task, splits = loaded(raw)
    key = cache_key(task, splits.train, tokenizer)
    raw["lm"]["packing"] = True
    assert cache_key(loaded(raw)[0], splits.train, tokenizer) != key
    raw["lm"]["packing"] = False
    rows = number_rows(10)
    rows[0]["output"] += "!"  # one answer edited in the file: another key
    write_json(data, rows)
    assert cache_key(task, loaded(raw)[1].train, tokenizer) != key
    write_json(data, number_rows(10))
    assert cache_key(task, loaded(raw)[1].train, tokenizer) == key
    task.template = "{{ messages }}"
    assert cache_key(task, splits.train, tokenizer) != key


# --- storage -------------------------------------------------------------------------------------------------


def round_trip(features: list[dict], extras: dict | None = None):
    arrays = to_arrays(EncodedDataset(features), extras or {}, "k")
    if arrays is None:
        return None
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as archive:
        return from_arrays(archive, "k")


@pytest.mark.parametrize("features", [
    [{"input_ids": [1, 2, 3], "labels": 0}, {"input_ids": [], "labels": 2}],
    [{"input_ids": [5, 6], "labels": 0.25}, {"input_ids": [7], "labels": float("inf")}],
    [{"input_ids": [5, 6], "labels": True}, {"input_ids": [7], "labels": False}],
    [{"input_ids": [5, 6], "labels": np.float32(0.5)}, {"input_ids": [7], "labels": np.float32(1.5)}],
    [{"input_ids": [2**40, -100], "labels": [-100, 2**40]}],  # int64 ids; -100 masks
    [{"input_ids": [1]}],
    [],
])
def test_storable_features_round_trip_exactly(features):
    dataset, extras = round_trip(features, {"stats": {"tokens": 3}})
    assert_same(dataset, EncodedDataset(features))
    assert extras == {"stats": {"tokens": 3}}


@pytest.mark.parametrize("features", [
    [{"input_ids": [1, 2], "text": "a string"}],
    [{"input_ids": [[1, 2], [3]]}],  # nested lists
    [{"input_ids": [1, 2.0]}],  # a float among the ids
    [{"input_ids": [1, True]}],  # a bool among the ids
    [{"input_ids": [1, np.int64(2)]}],  # a numpy int among python ints
    [{"input_ids": (1, 2)}],  # a tuple comes back as a list: not exact
    [{"input_ids": [1], "labels": 0}, {"input_ids": [2], "labels": 0.5}],  # mixed label types
    [{"input_ids": [1], "labels": 0}, {"input_ids": [2]}],  # a key missing on one row
    [{"input_ids": [1], "labels": 0}, {"labels": 1, "input_ids": [2]}],  # another key order
    [{"input_ids": [2**70]}],  # beyond int64
])
def test_features_that_cannot_be_stored_exactly_are_not_cached(features):
    assert round_trip(features) is None


class StubTask(Task):
    """Only what encode_splits asks of a task; the training hooks are not called here."""

    name = "stub"
    load_data = load_model = load_trained = compute_loss = metric_mode = evaluate = None

    def __init__(self, features, settings=None):
        self.features, self.settings, self.calls = features, settings, 0

    def encode(self, frame, tokenizer):
        self.calls += 1
        return EncodedDataset([dict(f) for f in self.features])

    def encode_settings(self, tokenizer):
        return self.settings


@pytest.mark.parametrize("features, settings", [
    ([{"input_ids": [1], "text": "x"}], {}),  # cannot be stored
    ([{"input_ids": [1]}], None),  # the task does not declare its settings (Task's default)
])
def test_uncacheable_datasets_are_encoded_every_time(classification, tmp_path, features, settings):
    raw, tokenizer = classification
    frames = loaded(raw)[1].frames()
    task = StubTask(features, settings)
    for _ in range(2):
        got = encode_splits(task, frames, tokenizer, directory=tmp_path / "c", echo=Echo())
        assert got["train"].features == features
    assert task.calls == 4 and not list((tmp_path / "c").glob("*.npz"))


def test_extra_dataset_attributes_are_not_cached(classification, tmp_path):
    raw, tokenizer = classification

    class Noted(StubTask):
        def encode(self, frame, tokenizer):
            dataset = super().encode(frame, tokenizer)
            dataset.note = "kept by the task"
            return dataset

    frames = loaded(raw)[1].frames()
    task = Noted([{"input_ids": [1]}], {})
    encode_splits(task, frames, tokenizer, directory=tmp_path / "c", echo=Echo())
    assert not list((tmp_path / "c").glob("*.npz"))
    assert TokenCache(tmp_path / "c").path("x", "k") == tmp_path / "c" / "x-k.npz"


# --- end to end ----------------------------------------------------------------------------------------------


def test_a_second_run_reads_the_cache_and_gives_the_same_results(classification, tmp_path):
    from tunesmith.recipes.finetune import finetune

    raw, _ = classification
    raw["train"].update({"max_steps": 2, "eval_every": 2})
    results, echoes = [], []
    for name in ("a", "b"):
        raw["output"] = str(tmp_path / name)
        echo = Echo()
        results.append(finetune(validate_recipe(raw), echo=echo))
        echoes.append(echo)
    assert not any("from cache" in line for line in echoes[0])
    assert sum("from cache" in line for line in echoes[1]) == 2
    def untimed(value):  # everything but wall-clock times and paths
        if isinstance(value, dict):
            return {k: untimed(v) for k, v in value.items()
                    if k not in ("timing", "memory", "model_dir", "report") and not k.endswith("_s")}
        return value

    assert untimed(results[0]) == untimed(results[1])
    assert results[1]["data"] == results[0]["data"]
