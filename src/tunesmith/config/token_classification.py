"""The recipe's `token_classification:` section (task: token_classification: a tag for every word, e.g. NER).

    token_classification:
      label_all_tokens: false    # false: only a word's first sub-token carries its tag (the others -100);
                                 # true: every sub-token carries the word's tag (B- becomes I- after the first)
      stride: 32                 # sentences longer than train.max_length are cut into windows overlapping by
                                 # this many sub-tokens; evaluation stitches them back, so no word goes unscored
      invalid_sequences: repair  # repair: an I- tag that cannot continue an entity starts one (a finding);
                                 # error: stop with the file and line

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
