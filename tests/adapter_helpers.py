"""Tiny LoRA runs on one base for the adapter tests (continue, switch, merge): a 2-label sentiment task and a
3-label topic task, each with its own validation file, stopping on the validation loss (tiny random models
barely learn these in one epoch; every comparison the tests make is of outputs, which the loss follows)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from pipeline_helpers import FILLER, sentiment_rows, tiny_recipe, write_csv
from tunesmith.config.recipe import validate_recipe
from tunesmith.methods.lora import load_adapter_model
from tunesmith.recipes.finetune import finetune
from tunesmith.recipes.predict import TrainedRun, prediction_columns

TOPICS = {"money": ["stocks", "bank", "price", "market"], "science": ["frog", "species", "lab", "cells"],
          "sport": ["team", "won", "match", "goal"]}
TEXTS = ["the movie was great and wonderful", "stocks fell at the bank", "a new frog species in the lab",
         "awful boring film", "the team won the match", "it was a film"]


def quiet(*_args, **_kwargs):
    pass


def topic_rows(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(sorted(TOPICS))
        words = rng.sample(FILLER, 4) + rng.sample(TOPICS[label], 2)
        rng.shuffle(words)
        rows.append((label, " ".join(words)))
    return rows


TASK_ROWS = {"sent": sentiment_rows, "topic": topic_rows}


def lora_recipe(model, root: Path, name: str, *, rows: str | None = None, method: str = "lora", **changes) -> dict:
    """A recipe for `name` (train and validation files under root/name-data), output root/name."""
    data = root / f"{name}-data"
    data.mkdir(parents=True, exist_ok=True)
    make = TASK_ROWS[rows or name]
    train = write_csv(data / "train.csv", make(48, seed=1))
    validation = write_csv(data / "validation.csv", make(24, seed=2))
    # eval_precision fp32: merge and switch re-evaluate in fp32 and compare with the run's eval.json
    raw = tiny_recipe(model, train, root / name, epochs=1, lr=5e-2, early_stopping={"metric": "loss"},
                      eval_precision="fp32")
    raw["data"]["validation"] = str(validation)
    raw.update(method={"name": method, "r": 4}, baselines=False, report={"html": False})
    raw.update(changes)
    return raw


def train_lora(model, root: Path, name: str, **options) -> Path:
    finetune(validate_recipe(lora_recipe(model, root, name, **options)), echo=quiet)
    return root / name


def alone(run: Path, texts=TEXTS) -> dict:
    """The run's prediction columns with its adapter loaded alone on the base (methods/lora.py)."""
    import pandas as pd

    model, tokenizer = load_adapter_model(run)
    task = TrainedRun(run).task
    return prediction_columns(task, model, tokenizer, pd.DataFrame({"text": texts}))


def bitwise_equal(a, b) -> bool:
    """Equal labels, or equal floats of one dtype, every bit (no tolerance)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind not in "fc" or b.dtype.kind not in "fc":
        return a.tolist() == b.tolist()
    return a.dtype == b.dtype and a.shape == b.shape and bool((a == b).all())


def adapter_tensors(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(run) / "adapter" / "adapter_model.safetensors"))


def lora_delta(state: dict, layer: str, scaling: float) -> torch.Tensor:
    """scaling * B @ A of one adapted layer (key prefix up to the module name)."""
    return scaling * state[f"{layer}.lora_B.weight"] @ state[f"{layer}.lora_A.weight"]
