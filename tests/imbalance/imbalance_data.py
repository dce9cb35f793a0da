"""Small imbalanced data sets and recipes for the imbalance tests (tiny models learn them in seconds)."""

from __future__ import annotations

import random
from pathlib import Path

POSITIVE = ["great", "excellent", "wonderful", "love", "superb"]
NEGATIVE = ["awful", "terrible", "horrible", "hate", "boring"]
FILLER = ["the", "movie", "was", "a", "film", "story", "and", "it", "really", "very", "plot"]


def skewed_rows(n: int, positive_every: int = 5, seed: int = 0) -> list[tuple[str, str]]:
    """(label, text) rows, one in `positive_every` labelled pos; the label shows in two words."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % positive_every == 0 else "neg"
        words = rng.sample(FILLER, 5) + rng.sample(POSITIVE if label == "pos" else NEGATIVE, 2)
        rng.shuffle(words)
        rows.append((label, " ".join(words) + f" n{i}"))  # the number keeps every text distinct
    return rows


def write_csv(path: Path, rows) -> Path:
    path.write_text("label,text\n" + "".join(f"{label},{text}\n" for label, text in rows), encoding="utf-8")
    return path


def recipe(model_dir: Path, train: Path, output: Path, *, imbalance: dict | None = None, validation=None,
           **train_settings) -> dict:
    settings = {"epochs": 3, "batch_size": 8, "lr": 2e-3, "warmup": 0.0, "max_length": 32, "log_every": 5,
                "early_stopping": {"metric": "macro_f1"}, "seed": 0}
    settings.update(train_settings)
    return {
        "model": str(model_dir),
        "data": {"train": str(train), "validation": validation or {"split": 0.25, "stratify": True}},
        "train": settings,
        "imbalance": imbalance or {},
        "output": str(output),
    }


def quiet(*_args, **_kwargs):
    pass
