"""Tokenize a DocumentTable in parallel processes and pack it, as a stream, into an ArrowDataset.

Each part of the table (data/doc_table.py, about 32 MB of text) is tokenized by one worker process
(`num_proc` of them, forked: they share the parent's tokenizer), which writes its tokens to a file of its own;
the parent reads those files in part order and packs them. Nothing depends on how many workers ran, or on
where the parts begin and end: the result is the one a single process gives (the tests check it).

- causal_lm (`encode_documents`): every document's tokens followed by EOS (none added when a document already
  ends with it), one stream cut into blocks of `block_size`; only the last block may be shorter. The blocks are
  those of data/packing.py `pack_documents` over the documents in table order.
- sft (`encode_conversations`): each conversation rendered and tokenized (data/chat.py), cut to `limit`
  tokens, dropped when no answer token is left; packed greedily in order (`iter_packed_examples`) with
  `packing`.

Memory: a worker holds one record batch (about 1 MB of text) and its tokens; the parent one piece of token
stream, or one block being packed. Disk: the parts' tokens are deleted once packed.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from tunesmith.data.arrow_dataset import DATA_FILE, ArrowDataset
from tunesmith.data.arrow_files import StreamWriter, TemporaryTree, new_work_dir, remove_tree, stream_batches
from tunesmith.data.chat import encode_conversation, renderer
from tunesmith.data.doc_table import Chunk, DocumentTable
from tunesmith.data.packing import IGNORE_INDEX, iter_packed_examples
from tunesmith.errors import DataError

MAX_DEFAULT_PROCESSES = 8
PIECE_TOKENS = 2**20  # tokens the parent reads at a time while cutting blocks
BLOCK_BATCH_TOKENS = 2**20  # tokens per record batch of the result


class TokenizingError(DataError):
    """A tokenizing worker process died (killed for memory, or crashed)."""


def default_num_proc() -> int:
    """The CPUs this process may run on, at most MAX_DEFAULT_PROCESSES."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_DEFAULT_PROCESSES))


# ---- running one job per chunk, in worker processes ----------------------------------------------------------

_JOB: Callable | None = None


def _start_worker(job: Callable) -> None:
    global _JOB
    _JOB = job


def _run_job(chunk: Chunk) -> dict:
    return _JOB(chunk)


def run_chunks(job: Callable[[Chunk], dict], chunks: list[Chunk], num_proc: int) -> Iterator[dict]:
    """job(chunk) for each chunk, in chunk order: in this process for a single chunk (or num_proc 1), else in
    up to `num_proc` forked worker processes."""
    workers = min(num_proc, len(chunks))
    if workers <= 1:
        yield from map(job, chunks)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(job,))
    try:
        yield from pool.map(_run_job, chunks)
    except BrokenProcessPool:
        raise TokenizingError(f"a tokenizing process died (out of memory?); set lm.num_proc to fewer processes "
                              f"(now {workers}), or 1 to tokenize in the training process") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ---- causal_lm -----------------------------------------------------------------------------------------------

class DocumentTokens:
    """Job: the EOS-terminated token stream of one chunk's documents, written as int32 to a file of its own."""

    def __init__(self, tokenizer, eos_id: int, directory: Path):
        self.tokenizer, self.eos_id, self.directory = tokenizer, eos_id, directory

    def __call__(self, chunk: Chunk) -> dict:
        path = self.directory / f"tokens-{chunk.index:05d}.bin"
        documents = tokens = 0
        with open(path, "wb") as sink:
            for batch in chunk.batches(["text"]):
                texts = batch.column(0).to_pylist()
                stream: list[int] = []
                encoded = self.tokenizer(texts, verbose=False, return_attention_mask=False, return_token_type_ids=False)
                for ids in encoded["input_ids"]:  # the ids of tokenizer(texts): the masks are not needed here
                    stream.extend(ids)
                    if not ids or ids[-1] != self.eos_id:
                        stream.append(self.eos_id)
                array = np.asarray(stream, dtype=np.int32)
                array.tofile(sink)
                documents += len(texts)
                tokens += array.size
        return {"path": str(path), "documents": documents, "tokens": tokens}


def _token_pieces(paths: Iterator[dict]) -> Iterator[np.ndarray]:
    for result in paths:
        with open(result["path"], "rb") as source:
            while (piece := np.fromfile(source, dtype=np.int32, count=PIECE_TOKENS)).size:
                yield piece
        os.unlink(result["path"])


def _write_blocks(writer: StreamWriter, tokens: np.ndarray, block_size: int) -> None:
    import pyarrow as pa

    offsets = np.arange(0, len(tokens) + block_size, block_size, dtype=np.int64)
    offsets[-1] = len(tokens)
    offsets = np.unique(offsets).astype(np.int32)
    writer.write({"input_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(tokens, type=pa.int32()))})


def encode_documents(table: DocumentTable, tokenizer, *, block_size: int, num_proc: int) -> tuple[ArrowDataset, dict]:
    """(blocks of `block_size` tokens, {documents, tokens, blocks}); see the module docstring."""
    import pyarrow as pa

    if block_size < 2:
        raise ValueError("block_size must be at least 2")
    work = new_work_dir()
    temporary = TemporaryTree(work)
    results = run_chunks(DocumentTokens(tokenizer, tokenizer.eos_token_id, work), table.chunks(), num_proc)
    stats = {"documents": 0, "tokens": 0}

    def counted() -> Iterator[dict]:
        for result in results:
            stats["documents"] += result["documents"]
            stats["tokens"] += result["tokens"]
            yield result

    carry = np.zeros(0, dtype=np.int32)
    per_batch = max(block_size, BLOCK_BATCH_TOKENS // block_size * block_size)
    with StreamWriter(work / DATA_FILE, pa.schema([("input_ids", pa.list_(pa.int32()))])) as writer:
        for piece in _token_pieces(counted()):
            carry = np.concatenate([carry, piece])
            while len(carry) >= per_batch:
                _write_blocks(writer, carry[:per_batch], block_size)
                carry = carry[per_batch:]
        if len(carry):
            _write_blocks(writer, carry, block_size)
    stats["blocks"] = -(-stats["tokens"] // block_size)
    return ArrowDataset(work, temporary=temporary), stats


# ---- sft -----------------------------------------------------------------------------------------------------

def example_schema(packed: bool):
    import pyarrow as pa

    ids = pa.list_(pa.int32())
    return pa.schema([("input_ids", ids), ("labels", ids)] + ([("position_ids", ids)] if packed else []))


class ConversationTokens:
    """Job: one chunk's conversations as {input_ids, labels} (cut to `limit`, dropped without an answer token),
    written to an Arrow file of its own; returns the counts eval.json reports."""

    def __init__(self, tokenizer, template: str, limit: int, directory: Path):
        self.tokenizer, self.template, self.limit, self.directory = tokenizer, template, limit, directory

    def __call__(self, chunk: Chunk) -> dict:
        import json

        path = self.directory / f"examples-{chunk.index:05d}.arrow"
        render = renderer(self.tokenizer, self.template)
        counts = {"conversations": 0, "examples": 0, "truncated": 0, "dropped": 0, "tokens": 0, "answer_tokens": 0}
        with StreamWriter(path, example_schema(False)) as writer:
            for batch in chunk.batches(["messages"]):
                kept = {"input_ids": [], "labels": []}
                for text in batch.column(0).to_pylist():
                    counts["conversations"] += 1
                    example = encode_conversation(self.tokenizer, render, json.loads(text))
                    if len(example["input_ids"]) > self.limit:
                        counts["truncated"] += 1
                        example = {key: value[:self.limit] for key, value in example.items()}
                    if all(label == IGNORE_INDEX for label in example["labels"][1:]):
                        counts["dropped"] += 1
                        continue
                    counts["examples"] += 1
                    counts["tokens"] += len(example["input_ids"])
                    counts["answer_tokens"] += sum(1 for x in example["labels"] if x != IGNORE_INDEX)
                    kept["input_ids"].append(example["input_ids"])
                    kept["labels"].append(example["labels"])
                if kept["input_ids"]:
                    writer.write(kept)
        return {"path": str(path), **counts}


def _examples(results: Iterator[dict], stats: dict) -> Iterator[dict]:
    """The examples of each chunk's file, in order (each file deleted once read); counts added to `stats`."""
    for result in results:
        for key, value in result.items():
            if key != "path":
                stats[key] = stats.get(key, 0) + value
        for batch in stream_batches(Path(result["path"])):
            yield from batch.to_pylist()
        os.unlink(result["path"])


def encode_conversations(table: DocumentTable, tokenizer, *, template: str, limit: int, packing: bool,
                         block_size: int, num_proc: int) -> tuple[ArrowDataset, dict]:
    """(examples, or packed blocks of them; the counts of eval.json "lm"); see the module docstring."""
    work = new_work_dir()
    temporary = TemporaryTree(work)
    stats = {"conversations": 0, "examples": 0, "truncated": 0, "dropped": 0, "tokens": 0, "answer_tokens": 0}
    try:
        results = run_chunks(ConversationTokens(tokenizer, template, limit, work), table.chunks(), num_proc)
        examples = _examples(results, stats)
        rows = iter_packed_examples(examples, block_size) if packing else examples
        written = 0
        with StreamWriter(work / DATA_FILE, example_schema(packing)) as writer:
            batch: list[dict] = []
            for row in rows:
                batch.append(row)
                if len(batch) >= 1024:
                    writer.write({name: [r[name] for r in batch] for name in writer.schema.names})
                    written, batch = written + len(batch), []
            if batch:
                writer.write({name: [r[name] for r in batch] for name in writer.schema.names})
                written += len(batch)
    except BaseException:
        remove_tree(work)
        raise
    if packing:
        stats["blocks"] = written
    return ArrowDataset(work, temporary=temporary), stats
