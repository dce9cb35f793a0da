"""Supervised fine-tuning on instructions and chats: the loss covers the assistant's answers only.

Each conversation (Alpaca rows become one user turn and one assistant turn) is rendered with the chat
template (the model's own, else tunesmith's documented default: tunesmith.data.chat) and tokenized segment
by segment; labels are -100 on every prompt token and the token ids on every assistant answer, for every
assistant turn of a multi-turn chat. Conversations longer than train.max_length are cut on the right;
one with no answer token left is dropped (both counted in eval.json "lm"). With `lm.packing`, short
examples share blocks of lm.block_size tokens (position ids restart per example, so attention stays inside
each one; a model that would attend across them is refused: models/packed_attention.py). The template used
is saved with the model's tokenizer, so the run directory's model renders prompts exactly as in training
(`tunesmith generate`, or `tokenizer.apply_chat_template`). Conversations are tokenized in parallel
processes into a memory-mapped Arrow file (tunesmith.data.arrow_encode).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

from tunesmith.data.arrow_dataset import ArrowDataset
from tunesmith.data.arrow_encode import encode_conversations
from tunesmith.data.chat import choose_template
from tunesmith.data.lm_data import as_table, load_conversation_splits
from tunesmith.errors import DataError
from tunesmith.models.packed_attention import check_packing
from tunesmith.tasks.lm import LMTask

log = logging.getLogger("tunesmith.tasks")


class SFTTask(LMTask):
    name = "sft"
    unit = "conversations"
    chat = True
    one_packed_row = False  # with lm.packing: blocks, several rows a batch (dpo: one row a batch)

    def __init__(self, recipe):
        super().__init__(recipe)
        self.template: str | None = None
        self.columns: dict | None = None  # the columns found in the file (Alpaca or messages)

    def load_data(self):
        self.splits, self.columns = load_conversation_splits(self.recipe.data, seed=self.recipe.train.seed)
        return self.splits

    def derived_settings(self) -> dict:
        """The resolved recipe records the columns found in the file."""
        found = {"data.columns": self.columns} if self.columns is not None else {}
        return {**super().derived_settings(), **found}

    def load_model(self, model_dir):
        model, tokenizer = super().load_model(model_dir)
        if self.lm.packing:  # refused where packed sequences would attend to each other
            check_packing(model, one_row=self.one_packed_row)
        self.template = choose_template(tokenizer, self.lm.chat_template)
        tokenizer.chat_template = self.template  # saved with the model: generation renders as training did
        return model, tokenizer

    def chat_template(self, tokenizer) -> str | None:
        return self.template or choose_template(tokenizer, "auto")

    @property
    def limit(self) -> int:
        """Tokens kept per conversation: train.max_length (and at most a block when packing)."""
        return min(self.recipe.train.max_length, self.block_size) if self.lm.packing else self.recipe.train.max_length

    def encode_settings(self, tokenizer) -> dict | None:
        return {**super().encode_settings(tokenizer), "packing": self.lm.packing,
                "chat_template": self.chat_template(tokenizer)}

    def restore_encode_extras(self, split: str, extras: dict) -> None:
        super().restore_encode_extras(split, extras)
        if split in self.stats:  # the same warning as when the split was encoded
            self._warn_truncated(split, self.stats[split])

    def _warn_truncated(self, split: str, stats: dict) -> None:
        truncated, dropped = stats["truncated"], stats["dropped"]
        if truncated:
            log.warning("%s: %d of %d conversations are longer than %d tokens and were cut on the right%s",
                        split, truncated, stats["conversations"], self.limit,
                        f"; {dropped} kept no answer token and were dropped" if dropped else "")

    def encode(self, frame, tokenizer, *, with_labels: bool = True) -> ArrowDataset:
        """The split's examples (or packed blocks): data/arrow_encode.py encode_conversations, tokenized in
        lm.num_proc processes."""
        limit = self.limit
        dataset, stats = encode_conversations(as_table(frame, "messages"), tokenizer,
                                              template=self.chat_template(tokenizer), limit=limit,
                                              packing=self.lm.packing, block_size=self.block_size,
                                              num_proc=self.num_proc)
        split = self._split_of(frame)
        if not stats["examples"]:
            raise DataError(f"{split}: no conversation keeps any answer token within train.max_length={limit}; "
                            f"raise train.max_length")
        self.stats[split] = stats
        self._warn_truncated(split, stats)
        return dataset

    def encode_summary(self) -> dict:
        return {"packing": self.lm.packing, "splits": self.stats}

    def default_prompts(self, frame) -> Iterator[dict]:
        """The first user message of each validation conversation; its first answer is the reference."""
        for text in as_table(frame, "messages").rows("messages"):
            messages = json.loads(text)
            user = next((m["content"] for m in messages if m["role"] == "user"), None)
            answer = next((m["content"] for m in messages if m["role"] == "assistant"), None)
            if user:
                yield {"prompt": user, "reference": answer}
