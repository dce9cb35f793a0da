"""Small labelled datasets and recipes for pipeline tests (tiny models learn them in a few dozen steps)."""

from __future__ import annotations

import random
from pathlib import Path

POSITIVE = ["great", "excellent", "wonderful", "love", "superb", "fantastic", "happy", "best"]
NEGATIVE = ["awful", "terrible", "horrible", "hate", "worst", "bad", "boring", "sad"]
FILLER = ["the", "movie", "was", "a", "film", "story", "and", "it", "really", "very", "plot", "acting"]


def sentiment_rows(n: int, seed: int = 0, positive_share: float = 0.5) -> list[tuple[str, str]]:
    """(label, text) rows where the label is given away by one or two sentiment words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = "pos" if rng.random() < positive_share else "neg"
        words = rng.sample(FILLER, 5) + rng.sample(POSITIVE if label == "pos" else NEGATIVE, 2)
        rng.shuffle(words)
        rows.append((label, " ".join(words)))
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    lines = ["label,text"] + [f"{label},{text}" for label, text in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tiny_recipe(model_dir: Path, train: Path, output: Path, **train_settings) -> dict:
    settings = {
        "epochs": 4, "batch_size": 8, "lr": 2e-3, "warmup": 0.0, "max_length": 32, "log_every": 1,
        "early_stopping": {"metric": "macro_f1"}, "seed": 0,
    }
    settings.update(train_settings)
    return {
        "model": str(model_dir),
        "data": {"train": str(train), "validation": {"split": 0.25, "stratify": True}},
        "train": settings,
        "output": str(output),
    }
