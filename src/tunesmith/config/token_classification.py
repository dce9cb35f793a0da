"""The recipe's `token_classification:` section (task: token_classification: a tag for every word, e.g. NER).

    token_classification:
      label_all_tokens: false    # false: only a word's first sub-token carries its tag (the others -100);
                                 # true: every sub-token carries the word's tag (B- becomes I- after the first)
      stride: 32                 # sentences longer than train.max_length are cut into windows overlapping by
                                 # this many sub-tokens; evaluation stitches them back, so no word goes unscored
      invalid_sequences: repair  # repair: an I- tag that cannot continue an entity starts one (a finding);
                                 # error: stop with the file and line
      context: none              # document: each sentence is read with the sub-tokens of its neighbours in the
                                 # same document around it (labels -100, never scored), as FLERT does; the
                                 # sentence's own tags and scores are unchanged. A document starts at each
                                 # -DOCSTART- line of a conll file; a jsonl/json/parquet file is one document.
      context_tokens: 64         # document: at most this many sub-tokens of context on each side

The data's own settings live in `data:`: `format: conll` (a token and its tags per line, a blank line
between sentences, -DOCSTART- lines skipped), `columns: {tokens: 0, tags: 3}` (CoNLL column indexes, or
jsonl keys holding lists), `tag_scheme: iob1 | iob2 | bioes` (the file's scheme; converted to IOB2 on read).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TokenClassificationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # inf, nan: refused

    label_all_tokens: bool = Field(False, description="every sub-token carries its word's tag, not only the first")
    stride: int = Field(32, ge=0, description="sub-tokens shared by consecutive windows of a long sentence")
    invalid_sequences: Literal["repair", "error"] = Field(
        "repair", description="an I- tag that cannot continue an entity: start one there (a finding), or stop")
    context: Literal["none", "document"] = Field(
        "none", description="document: read each sentence with its neighbouring sentences of the same document "
                            "as unlabelled context (predict --text has no document: its text is its own context)")
    context_tokens: int = Field(64, ge=1, description="document context: sub-tokens at most on each side")
