"""causal_lm / sft data through Arrow (data/row_stream.py, doc_table.py, arrow_encode.py): files read as a stream
with read_table's checks and messages, tokenized in worker processes, packed into a memory-mapped dataset that
holds exactly the in-memory blocks; and peak memory that stays flat from a 20 MB to a 200 MB corpus."""

from __future__ import annotations

import gc
import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from lm_helpers import generated_corpus, number_rows, shakespeare_slice, word_level_tokenizer, write_json
from tunesmith.config.recipe import validate_recipe
from tunesmith.data import doc_table, lm_data
from tunesmith.data.arrow_encode import encode_conversations, encode_documents
from tunesmith.data.chat import choose_template, encode_conversation, renderer
from tunesmith.data.lm_data import load_document_splits, read_conversations, read_documents
from tunesmith.data.packing import IGNORE_INDEX, pack_documents, pack_examples
from tunesmith.data.readers import read_table
from tunesmith.data.token_cache import encode_splits
from tunesmith.data.row_stream import iter_rows
from tunesmith.errors import DataError
from tunesmith.models import load_tokenizer
from tunesmith.tasks import make_task

HERE = Path(__file__).resolve().parent


@pytest.fixture
def small_parts(monkeypatch):
    """Parts of about 4 KB of text and batches of about 1 KB: a small file spans many parts (many worker jobs)."""
    monkeypatch.setattr(doc_table, "PART_BYTES", 4096)
    monkeypatch.setattr(doc_table, "BATCH_BYTES", 1024)


def spec_for(path, task="causal_lm", **data):
    return validate_recipe({"model": "x", "task": task, "data": {"train": str(path), **data}}).data


def rows_of(dataset) -> list[dict]:
    return [dataset[i] for i in range(len(dataset))]


# --- the same blocks as in memory -----------------------------------------------------------------------------


def test_blocks_are_pack_documents_whatever_the_parts_and_processes(tiny_gpt2_dir, tmp_path, small_parts):
    path = shakespeare_slice(tmp_path / "s.txt", 30_000)
    table, _ = read_documents(spec_for(path), str(path))
    assert len(table.parts) >= 5
    tokenizer = load_tokenizer(tiny_gpt2_dir)
    held = table.select(range(3, len(table), 4))  # a split whose rows lie in every part
    for split in (table, held):
        expected = pack_documents(tokenizer(split.column("text"))["input_ids"], tokenizer.eos_token_id, 32)
        for num_proc in (1, 3):
            dataset, stats = encode_documents(split, tokenizer, block_size=32, num_proc=num_proc)
            assert [row["input_ids"] for row in rows_of(dataset)] == expected
            assert stats == {"documents": len(split), "tokens": sum(map(len, expected)), "blocks": len(expected)}
            assert dataset.lengths().tolist() == [len(b) for b in expected]


def test_a_document_ending_with_eos_gets_no_second_one(tiny_gpt2_dir, tmp_path):
    path = write_json(tmp_path / "d.jsonl", [{"text": "a b"}, {"text": "c<|endoftext|>"}, {"text": "d"}], lines=True)
    table, _ = read_documents(spec_for(path), str(path))
    tokenizer = load_tokenizer(tiny_gpt2_dir)
    dataset, stats = encode_documents(table, tokenizer, block_size=1000, num_proc=1)
    expected = pack_documents(tokenizer(["a b", "c<|endoftext|>", "d"])["input_ids"], tokenizer.eos_token_id, 1000)
    assert [row["input_ids"] for row in rows_of(dataset)] == expected
    assert expected[0].count(tokenizer.eos_token_id) == 3


@pytest.mark.parametrize("packing", [False, True])
def test_sft_examples_are_the_in_memory_ones(tiny_llama_dir, tmp_path, small_parts, packing):
    path = write_json(tmp_path / "a.jsonl", number_rows(120), lines=True)
    table = read_conversations(spec_for(path, "sft"), str(path), {"instruction": "instruction", "input": "input",
                                                                   "output": "output"})
    assert len(table.parts) >= 3
    tokenizer = load_tokenizer(tiny_llama_dir)
    template = choose_template(tokenizer)
    render, limit = renderer(tokenizer, template), 20
    examples, truncated, dropped = [], 0, 0
    for messages in (json.loads(text) for text in table.column("messages")):
        example = encode_conversation(tokenizer, render, messages)
        if len(example["input_ids"]) > limit:
            truncated += 1
            example = {key: value[:limit] for key, value in example.items()}
        if all(label == IGNORE_INDEX for label in example["labels"][1:]):
            dropped += 1
            continue
        examples.append(example)
    assert truncated and dropped  # the cut and drop paths are exercised
    expected = pack_examples(examples, 48) if packing else examples
    for num_proc in (1, 2):
        dataset, stats = encode_conversations(table, tokenizer, template=template, limit=limit, packing=packing,
                                              block_size=48, num_proc=num_proc)
        assert rows_of(dataset) == expected
        assert (stats["truncated"], stats["dropped"], stats["examples"]) == (truncated, dropped, len(examples))
        assert stats.get("blocks") == (len(expected) if packing else None)


# --- reading as a stream: read_table's rows and messages --------------------------------------------------------


def _files(tmp_path) -> dict:
    csv_text = 'text,label\n"a, quoted\nfield",1\r\nplain,0\n\n"say ""hi""",1\n'
    return {
        "csv": (tmp_path / "t.csv", csv_text, {"text": "text", "label": "label"}),
        "tsv": (tmp_path / "t.tsv", "text\tlabel\nx y\t1\n\nz\t0\n", {"text": "text", "label": "label"}),
        "jsonl": (tmp_path / "t.jsonl", '{"text": "a", "label": 1}\n\n{"text": 2, "label": "b"}\n{"label": 3}\n',
                  {"text": "text", "label": "label"}),
        "json": (tmp_path / "t.json", '[{"text": "a", "label": 1}, {"text": "b"}]', {"text": "text", "label": "label"}),
        "txt": (tmp_path / "t.txt", "\ufeffone\r\n\n  two  \nthree", {"text": "text"}),
    }


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "json", "txt", "parquet"])
def test_streamed_rows_are_read_table_rows(tmp_path, fmt):
    if fmt == "parquet":
        path, columns = tmp_path / "t.parquet", {"text": "text", "label": "label"}
        pd.DataFrame({"text": [f"t{i}" for i in range(10_000)], "label": list(range(10_000))}).to_parquet(path)
    else:
        path, text, columns = _files(tmp_path)[fmt]
        path.write_bytes(text.encode("utf-8"))
    frame = read_table(path, columns=columns, required=())
    unit, rows = iter_rows(path, columns=columns, required=())
    rows = list(rows)
    assert unit == frame.attrs["line_unit"]
    assert [line for line, _ in rows] == frame["line"].tolist()
    for role_index, role in enumerate(columns):  # (pandas shows a missing label as NaN, the stream as None)
        expected = [None if isinstance(v, float) and math.isnan(v) else v for v in frame[role].tolist()]
        assert [values[role_index] for _, values in rows] == expected


def _big(tmp_path, name: str, good: str, bad: str, before: int = 4999) -> Path:
    path = tmp_path / name
    path.write_bytes((good * before).encode() + bad)
    return path


@pytest.mark.parametrize("name, good, bad, task, message", [
    ("d.jsonl", '{"text": "a few words"}\n', b'{"text": "cut\n', "causal_lm", r"d\.jsonl, line 5000: invalid JSON"),
    ("d.txt", "a few words\n\n", b"ok\xff\n", "causal_lm", r"d\.txt, line 9999: not valid utf-8 text \(byte 0xff at column 3\)"),
    ("d.csv", '"a few words"\n', b'"open\nand never closed\n', "causal_lm", r"d\.csv, line 5000: a quoted field that starts here is never closed"),
    ("c.jsonl", '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n',
     b'{"messages": [{"role": "robot", "content": "x"}]}\n', "sft", r"c\.jsonl, line 5000: .*has role 'robot'"),
])
def test_an_error_deep_in_a_file_names_its_line(tmp_path, small_parts, name, good, bad, task, message):
    path = _big(tmp_path, name, good, bad)
    header = "text\n" if name.endswith(".csv") else ""
    if header:
        path.write_bytes(header.encode() + path.read_bytes())
        message = message.replace("5000", "5001")
    with pytest.raises(DataError, match=message):
        if task == "sft":
            read_conversations(spec_for(path, "sft"), str(path), {"messages": "messages"})
        else:
            read_documents(spec_for(path, columns={"text": "text"}), str(path))
    assert not any((Path(os.environ["TUNESMITH_TOKEN_CACHE"]) / ".work").iterdir())  # the half-built table is gone


def test_a_lone_surrogate_names_its_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "half \\ud800 a pair"}\n')
    with pytest.raises(DataError, match=r"d\.jsonl, line 2: the text holds '\\ud800', a lone surrogate"):
        read_documents(spec_for(path), str(path))


def test_a_key_no_object_has_is_reported_after_the_whole_file(tmp_path):
    path = write_json(tmp_path / "d.jsonl", [{"txt": "a"}] * 50, lines=True)
    with pytest.raises(DataError, match=r"key 'text' \(data.columns.text\) not found; keys are: txt; did you mean 'txt'"):
        read_documents(spec_for(path, columns={"text": "text"}), str(path))


# --- the documents cache ----------------------------------------------------------------------------------------


def test_documents_are_read_once_and_keyed_by_the_files_content(tmp_path, monkeypatch):
    path = tmp_path / "t.txt"
    path.write_text("one\n\ntwo\n\nthree\n")
    first, _ = read_documents(spec_for(path), str(path))
    monkeypatch.setattr(lm_data, "txt_documents", lambda *a: pytest.fail("read again"))
    again, _ = read_documents(spec_for(path), str(path))
    assert again.directory == first.directory and again.column("text") == ["one", "two", "three"]
    monkeypatch.undo()
    path.write_text("one\n\ntwo\n\nfour\n")
    edited, _ = read_documents(spec_for(path), str(path))
    assert edited.key != first.key and edited.column("text") == ["one", "two", "four"]
    line_unit, _ = read_documents(spec_for(path), str(path), "line")
    assert line_unit.key not in (first.key, edited.key)  # the read settings are in the key


def test_without_the_cache_nothing_is_left_once_the_splits_are_dropped(tiny_gpt2_dir, tmp_path, _token_cache):
    path = tmp_path / "t.txt"
    path.write_text("\n\n".join(f"doc {i}" for i in range(20)))
    raw = {"model": str(tiny_gpt2_dir), "task": "causal_lm", "data": {"train": str(path), "cache_tokenized": False}}
    task = make_task(validate_recipe(raw))
    splits = task.load_data()
    encoded = encode_splits(task, splits.frames(), load_tokenizer(tiny_gpt2_dir), enabled=False)
    assert len(splits.train) == 16 and len(encoded["train"]) > 0
    assert sorted(p.name for p in _token_cache.iterdir()) == [".work"]  # no documents/, no entries
    assert len(list((_token_cache / ".work").iterdir())) == 3  # the documents, two encoded splits
    del splits, encoded, task
    gc.collect()
    assert not any((_token_cache / ".work").iterdir())


def test_a_pipe_is_read_once(tmp_path):
    fifo = tmp_path / "docs.txt"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text("first\n\nsecond\nline\n"))
    writer.start()
    table, _ = read_documents(spec_for(fifo), str(fifo))
    writer.join()
    assert table.column("text") == ["first", "second\nline"] and table.column("line") == [1, 3]


# --- memory ------------------------------------------------------------------------------------------------------


def _probe(corpus: Path, tokenizer: Path, cache: Path, mode: str = "stream") -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(HERE / "lm_memory_probe.py"), str(corpus), str(tokenizer), str(cache),
                           mode], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_peak_memory_is_the_same_for_a_20_mb_and_a_200_mb_corpus(tmp_path):
    """Reading, tokenizing (2 worker processes) and packing 200 MB of text peaks within 50 MB of doing it for
    20 MB, in the training process and in the largest worker; the control (the same run holding the file in
    memory first) shows the probe sees a file held in memory. Each run is a fresh process (lm_memory_probe.py:
    VmHWM for itself, ru_maxrss for its workers)."""
    tokenizer = word_level_tokenizer(tmp_path / "tokenizer")
    peaks = {}
    for megabytes in (20, 200):
        corpus = generated_corpus(tmp_path / f"corpus{megabytes}.txt", megabytes)
        peaks[megabytes] = _probe(corpus, tokenizer, tmp_path / f"cache{megabytes}")
        if megabytes == 200:
            peaks["control"] = _probe(corpus, tokenizer, tmp_path / "cache200", "whole")
        corpus.unlink()
    small, large, control = peaks[20], peaks[200], peaks["control"]
    assert 9 < large["stats"]["train"]["tokens"] / small["stats"]["train"]["tokens"] < 11  # ten times the work
    assert small["workers_mb"] > 0 and large["workers_mb"] > 0  # both tokenized in worker processes
    assert large["self_mb"] - small["self_mb"] < 50, peaks
    assert large["workers_mb"] - small["workers_mb"] < 50, peaks
    assert control["self_mb"] - large["self_mb"] > 150, peaks  # 200 MB held: seen


def test_num_proc_is_refused_where_nothing_tokenizes_in_parallel():
    from tunesmith.errors import RecipeError

    recipe = validate_recipe({"model": "x", "task": "dpo", "lm": {"num_proc": 2},
                              "data": {"train": "p.jsonl", "columns": {"prompt": "prompt", "chosen": "chosen",
                                                                      "rejected": "rejected"}}})
    with pytest.raises(RecipeError, match="lm.num_proc: dpo reads its pairs into memory"):
        make_task(recipe)
    with pytest.raises(RecipeError, match="lm.num_proc"):
        validate_recipe({"model": "x", "task": "causal_lm", "data": {"train": "t.txt"}, "lm": {"num_proc": 0}})


def test_gzip_files_stream_too(tmp_path):
    import gzip

    rows = [{"text": f"document {i}"} for i in range(3000)]
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    table, _ = read_documents(spec_for(path), str(path))
    assert table.column("text") == [r["text"] for r in rows] and table.column("line")[-1] == 3000
    path.write_bytes(path.read_bytes()[:-200])  # cut short
    with pytest.raises(DataError, match=r"d\.jsonl\.gz: cannot decompress this \.gz file"):
        read_documents(spec_for(path), str(path))
