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
