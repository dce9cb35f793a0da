"""Does a model directory hang together? Its position limit, and a tokenizer that fits its embeddings.

- `position_limit(config)`: the most tokens one example may have, or None for models without a fixed position
  table (T5, XLNet, DeBERTa with relative positions only). Classification clamps train.max_length to it
  (tasks/classification.py); the language-model tasks refuse a longer block (tasks/lm.py).
- `check_tokenizer_files(model_dir, tokenizer)`: transformers v5 builds an *empty* tokenizer (a BERT one holds
  its 5 special tokens) from a directory without vocabulary files instead of failing; every word then becomes
  [UNK]. Refused here, naming the files looked for.
- `check_vocabulary(tokenizer, rows, model_dir)`: the tokenizer's size against the rows of the model's input
  embedding. More tokens than rows: ids past the table (an index error deep in the forward pass). Far fewer:
  another model's tokenizer, or none. Decoders often pad their embedding to a multiple of 64 or 128 rows
  beyond the vocabulary, so a smaller tokenizer is accepted down to MIN_VOCAB_SHARE of the rows.
"""

from __future__ import annotations

from pathlib import Path

from tunesmith.errors import ModelError

POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length")

# models whose position ids start after the padding index (RoBERTa's scheme): pad_token_id + 1 rows of the
# position table are never used by a token, so 514 positions hold 512 tokens
PADDING_OFFSET_MODELS = frozenset({
    "roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "roberta-prelayernorm", "data2vec-text",
    "longformer", "mpnet", "ibert", "xmod", "luke", "markuplm",
})

# files any tokenizer may load from, whatever its class (the fast tokenizer file, Mistral's and tiktoken's)
ANY_CLASS_FILES = ("tokenizer.json", "tekken.json", "tiktoken.model", "tokenizer.model")

MIN_VOCAB_SHARE = 0.5  # a tokenizer below half the embedding rows is not this model's


def position_limit(config) -> int | None:
    """Tokens one example may hold: the position table of `config` (less RoBERTa's padding offset), or None
    when the model has no such table (DeBERTa with relative positions only, T5, XLNet)."""
    if getattr(config, "position_biased_input", True) is False:  # DeBERTa: relative positions only
        return None
    for name in POSITION_KEYS:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            if getattr(config, "model_type", None) in PADDING_OFFSET_MODELS:
                value -= (getattr(config, "pad_token_id", None) or 0) + 1
            return value if value > 0 else None
    return None


def tokenizer_files(tokenizer) -> list[str]:
    """The files this tokenizer's class reads its vocabulary from, tokenizer.json first; [] for a class
    without any (ByT5's bytes)."""
    own = [name for name in (getattr(tokenizer, "vocab_files_names", None) or {}).values()
           if isinstance(name, str) and name != "tokenizer_config.json"]
    return list(dict.fromkeys(["tokenizer.json", *own])) if own else []


def check_tokenizer_files(model_dir: Path, tokenizer) -> None:
    """ModelError when `model_dir` holds none of the files the tokenizer's vocabulary comes from."""
    model_dir = Path(model_dir)
    names = tokenizer_files(tokenizer)
    if not names or any((model_dir / name).is_file() for name in (*ANY_CLASS_FILES, *names)):
        return
    raise ModelError(f"cannot load the tokenizer of {model_dir}: it has no tokenizer files "
                     f"(looked for {', '.join(names)}); copy them from the original model")


def embedding_rows(model) -> int | None:
    """Rows of the model's input-embedding table (its config's vocab_size when the model does not say)."""
    getter = getattr(model, "get_input_embeddings", None)
    try:
        embedding = getter() if callable(getter) else None
    except (NotImplementedError, AttributeError):
        embedding = None
    weight = getattr(embedding, "weight", None)
    if weight is not None and weight.ndim == 2:
        return int(weight.shape[0])
    rows = getattr(getattr(model, "config", None), "vocab_size", None)
    return rows if isinstance(rows, int) and not isinstance(rows, bool) and rows > 0 else None


def check_vocabulary(tokenizer, rows: int | None, model_dir: Path) -> None:
    """ModelError when the tokenizer has more tokens than the embedding has rows, or far fewer."""
    if rows is None:
        return
    tokens = len(tokenizer)
    if tokens > rows:
        raise ModelError(f"the tokenizer has {tokens:,} tokens but the model's embedding has {rows:,} rows: "
                         f"token ids from {rows:,} up would be out of range; wrong tokenizer files in {model_dir}, "
                         f"or tokens added without resizing the embeddings")
    if tokens < MIN_VOCAB_SHARE * rows:
        raise ModelError(f"the tokenizer has {tokens:,} tokens but the model's embedding has {rows:,} rows: "
                         f"wrong or missing tokenizer files in {model_dir}")
