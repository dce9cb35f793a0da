"""Small data sets and recipes for the language-model task tests (causal_lm, sft)."""

from __future__ import annotations

import json
import random
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHAKESPEARE = REPO / "data" / "tiny_shakespeare" / "input.txt"


def shakespeare_slice(path: Path, chars: int) -> Path:
    """The first `chars` characters of the shipped Tiny Shakespeare, cut at the end of a speech."""
    text = SHAKESPEARE.read_text(encoding="utf-8")
    cut = text.find("\n\n", chars)
    path.write_text(text[: cut + 1 if cut > 0 else chars], encoding="utf-8")
    return path


NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def number_rows(n: int, seed: int = 0) -> list[dict]:
    """Alpaca rows a tiny model learns in a few dozen steps: the answer repeats a word of the prompt."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        word = rng.choice(NUMBERS)
        twice = i % 3 == 0
        rows.append({"instruction": f"say the word {word}", "input": "twice" if twice else "",
                     "output": f"{word} {word}" if twice else word})
    return rows


def write_json(path: Path, rows: list[dict], lines: bool = False) -> Path:
    text = "\n".join(json.dumps(r) for r in rows) + "\n" if lines else json.dumps(rows, indent=1)
    path.write_text(text, encoding="utf-8")
    return path


def lm_recipe(model_dir: Path, task: str, train: Path, output: Path, lm: dict | None = None,
              data: dict | None = None, **train_settings) -> dict:
    settings = {"epochs": 3, "batch_size": 8, "lr": 3e-3, "warmup": 0.0, "max_length": 64, "log_every": 1,
                "eval_every": 10, "seed": 0}
    settings.update(train_settings)
    return {
        "model": str(model_dir), "task": task,
        "data": {"train": str(train), "validation": {"split": 0.2}, **(data or {})},
        "train": settings, "lm": {"sample_max_new_tokens": 8, **(lm or {})},
        "output": str(output),
    }


# --- corpora larger than a test should hold in memory ------------------------------------------------------

CORPUS_WORDS = [f"word{i:03d}" + "abcdefghijklmnopqrstuvwxyz"[:16 + i % 10] for i in range(220)]  # few tokens per MB


def word_level_tokenizer(path: Path) -> Path:
    """A fast tokenizer saved in `path`: one token per word of CORPUS_WORDS (whitespace split), `<unk>` for
    others, eos `</s>`; with words of 23 to 32 characters a generated corpus tokenizes quickly."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(["<unk>", "</s>", *CORPUS_WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>", unk_token="<unk>",
                                        model_max_length=1 << 20)
    tokenizer.save_pretrained(path)
    return path


def generated_corpus(path: Path, megabytes: float, seed: int = 0) -> Path:
    """A .txt file of about `megabytes` MB: blank-line separated paragraphs of 1 to 8 lines of CORPUS_WORDS.
    A block of 2,500 paragraphs is drawn once and written again and again (quick to write)."""
    rng = random.Random(seed)
    paragraphs = ["\n".join(" ".join(rng.choices(CORPUS_WORDS, k=rng.randint(5, 15)))
                            for _ in range(rng.randint(1, 8))) for _ in range(2500)]
    target, written, number = int(megabytes * 2**20), 0, 0
    with open(path, "w", encoding="utf-8") as handle:
        while written < target:
            block = "".join(f"{CORPUS_WORDS[(number + i) % 220]} {text}\n\n" for i, text in enumerate(paragraphs))
            number += 1
            handle.write(block)
            written += len(block)
    return path
