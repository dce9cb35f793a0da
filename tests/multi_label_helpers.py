"""A small, learnable multi-label data set: each row mentions the topics it is labelled with (one keyword per
topic among filler words); some rows have no topic at all."""

from __future__ import annotations

import json
import random
from pathlib import Path

from pipeline_helpers import FILLER, tiny_recipe

TOPICS = {"food": ["pizza", "bread", "cheese"], "music": ["guitar", "piano", "song"],
          "sport": ["football", "tennis", "goal"]}


def topic_rows(n: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        labels = sorted(t for t in TOPICS if rng.random() < 0.45)
        words = rng.sample(FILLER, 4) + [rng.choice(TOPICS[t]) for t in labels]
        rng.shuffle(words)
        rows.append((" ".join(words), labels))
    return rows


def write_jsonl(path: Path, rows: list[tuple[str, list[str]]]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "labels": labels}) + "\n" for t, labels in rows), encoding="utf-8")
    return path


def multi_label_recipe(model_dir: Path, train: Path, output: Path, **train_settings) -> dict:
    settings = {"epochs": 3, "early_stopping": {"metric": "micro_f1"}, **train_settings}
    raw = tiny_recipe(model_dir, train, output, **settings)
    raw["task"] = "multi_label"
    raw["data"].update(columns={"text": "text", "label": "labels"}, validation={"split": 0.25})
    return raw
