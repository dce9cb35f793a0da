"""Continued pre-training on raw text: next-token prediction over packed blocks.

Documents (see tunesmith.data.lm_data) are tokenized with the tokenizer's usual special tokens (a Llama
tokenizer starts each document with <s>), followed by EOS, concatenated and cut into blocks of
`lm.block_size` tokens (default train.max_length); see tunesmith.data.arrow_encode.encode_documents (the
blocks of tunesmith.data.packing.pack_documents, tokenized in parallel processes and written to a memory-mapped
Arrow file). Every token is a target (labels = input_ids); only the last block of a split may be shorter and is
padded per batch.
"""

from __future__ import annotations

from collections.abc import Iterator

from tunesmith.data.arrow_dataset import ArrowDataset
from tunesmith.data.arrow_encode import encode_documents
from tunesmith.data.lm_data import as_table, load_document_splits
from tunesmith.errors import ModelError
from tunesmith.tasks.lm import LMTask


class CausalLMTask(LMTask):
    name = "causal_lm"
    unit = "documents"

    def load_data(self):
        self.splits = load_document_splits(self.recipe.data, self.lm, seed=self.recipe.train.seed)
        return self.splits

    def describe_splits(self, splits) -> str:
        unit = f" ({self.lm.text_unit}s of a .txt file)" if str(self.recipe.data.train).endswith(".txt") else ""
        return super().describe_splits(splits) + unit

    def encode(self, frame, tokenizer, *, with_labels: bool = True) -> ArrowDataset:
        """The split's blocks (data/arrow_encode.py encode_documents), tokenized in lm.num_proc processes."""
        if tokenizer.eos_token_id is None:
            raise ModelError("the tokenizer has no eos token to put between documents")
        dataset, stats = encode_documents(as_table(frame, "text"), tokenizer, block_size=self.block_size,
                                          num_proc=self.num_proc)
        self.stats[self._split_of(frame)] = stats
        return dataset

    def encode_summary(self) -> dict:
        return {"splits": self.stats}

    def default_prompts(self, frame) -> Iterator[dict]:
        """The first line of each validation document (at most 60 characters, cut at a space), plus a line
        break when the document goes on; the rest of the document is the reference."""
        for text in as_table(frame, "text").rows("text"):
            first, _, rest = text.partition("\n")
            head = first.strip()
            if len(head) > 60:
                head = head[:60].rsplit(" ", 1)[0]
            if not head:
                continue
            whole_line = len(head) == len(first.strip())
            if whole_line and rest.strip():
                prompt, reference = head + "\n", rest
            else:
                prompt, reference = head, text[text.find(head) + len(head):]
            yield {"prompt": prompt, "reference": reference[:300]}
